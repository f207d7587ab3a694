"""What the tests, the fault drills and the benchmark run the product on: its processes, each
a subprocess they own (started with an environment and a log file, in a process group of its
own, stopped by its pid, never by name), and the waits around them.

- ``services``: one owned subprocess (:class:`~testbed.services.Service`), free ports, waits;
- ``parts``: the product's parts as services, started as deploy/stack.sh starts them
  (``python -m orchestration web|control|beat``, ``python -m workers``).

Importable from the checkout's root (pytest, ``python -m bench``); it imports no Django.
"""
