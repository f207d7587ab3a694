"""``python -m orchestration_client``: the ``orch`` command."""

from .cli import main

main()
