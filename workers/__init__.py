"""The worker side of orchestration: Celery tasks that drive executors. It needs the broker
and its target, nothing of the control plane (no Django, no database)."""

__version__ = "0.1.0"
