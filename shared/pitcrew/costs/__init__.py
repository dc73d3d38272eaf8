"""Cost watch: daily cost history per provider and group, spikes, budgets and forecasts.

``tracker.CostTracker`` is what the ``cost_tracker`` function runs once a day; ``history``
keeps what it learns in the costs table (``CostHistory``); ``report`` turns that history into
the ``GET /costs`` answer, the ``GET /metrics`` exposition and the ``pitcrew costs`` table.
The providers (``aws``, ``azure``, ``gcp``) fetch daily costs behind one interface.
"""
