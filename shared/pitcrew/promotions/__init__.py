"""Promotions: a release steps dev -> staging -> prod through the ``promotion`` state machine
(``infra/statemachines/promotion.asl.json``), one ``promotion_steps`` task per step.

``store`` keeps promotions, locks, environment versions and task tokens in
``PROMOTIONS_TABLE``; ``steps`` is what each Task state does; ``start`` starts executions;
``approvals`` resumes the ones that wait for a human; ``updates`` reacts to GitHub;
``health`` is the scheduled check of every environment.
"""
