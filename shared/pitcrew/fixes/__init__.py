"""Fixes delivered as reviewable GitOps pull requests, and the GitHub loop around them: the
fix flow (``flow.FixFlow``, run by ``fix_pr``), GitHub deliveries (``deliveries``, run by
``github_events``), ``/pitcrew`` commands, promotion triggers, and closing the loop when the
alert resolves or fires again after a merge (``loop``).
"""
