"""The behaviour every executor shares, written once and run against each target.

A target's test module subclasses :class:`ExecutorContract` and provides two fixtures:

- ``executor``: an Executor of that target, ready to use;
- ``make_spec``: a function ``make_spec(kind)`` returning a fresh JobSpec (new process id) for
  ``kind`` in ``"ok"`` (prints ``hello from <process id>`` and exits 0), ``"fail"`` (exits 3)
  and ``"sleep"`` (runs for a minute unless stopped).

Each test talks to the real target through the executor's public methods only.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from workers.contract import Event, JobSpec, PollItem, State, is_terminal
from workers.executors.base import Executor

TIMEOUT_S = 60


def item_for(spec: JobSpec, handle: str, **extra) -> PollItem:
    return PollItem(
        process_id=spec.process_id, handle=handle, submitted_at=time.time(),
        time_limit_s=spec.resources.time_limit_s, **extra,
    )


def poll_until(executor: Executor, item: PollItem, done, timeout: float = TIMEOUT_S) -> list[Event]:
    """Poll ``item`` until ``done(event)``, carrying the log offset forward as the control
    plane does. Returns every event seen; fails the test on timeout."""
    seen: list[Event] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (event,) = executor.poll([item])
        seen.append(event)
        if event.log_end is not None:
            item.log_offset = event.log_end
        if event.log_cursor:
            item.log_cursor = event.log_cursor
        if done(event):
            return seen
        time.sleep(0.3)
    pytest.fail(f"no matching event within {timeout} s; last: {seen[-1:]}")


def ended(event: Event) -> bool:
    return event.state is not None and is_terminal(event.state)


def full_log(events: list[Event]) -> str:
    return "".join(e.log for e in events)


class ExecutorContract:
    def test_job_succeeds_and_its_output_is_shipped(self, executor, make_spec):
        spec = make_spec("ok")
        sub = executor.submit(spec)
        events = poll_until(executor, item_for(spec, sub.handle), ended)
        assert events[-1].state == State.SUCCEEDED
        assert events[-1].exit_code == 0
        assert f"hello from {spec.process_id}" in full_log(events)

    def test_nonzero_exit_fails_with_its_code(self, executor, make_spec):
        spec = make_spec("fail")
        sub = executor.submit(spec)
        events = poll_until(executor, item_for(spec, sub.handle), ended)
        assert events[-1].state == State.FAILED
        assert events[-1].exit_code == 3

    def test_submitting_one_spec_twice_gives_one_job(self, executor, make_spec):
        spec = make_spec("sleep")
        first = executor.submit(spec)
        second = executor.submit(spec)
        assert second.handle == first.handle
        executor.cancel(first.handle)

    def test_a_retry_is_a_job_of_its_own_found_by_its_attempts_name(self, executor,
                                                                     make_spec):
        """Attempt 2 of a process whose first job ran and was released: submission finds
        nothing of attempt 1 (a new job starts), twice gives one job, and its events name
        their attempt."""
        first = make_spec("ok")
        handle = executor.submit(first).handle
        events = poll_until(executor, item_for(first, handle), ended)
        assert events[-1].attempt == 1
        executor.release(handle)
        second = replace(first, attempt=2)
        retried = executor.submit(second)
        assert retried.handle != handle
        assert executor.submit(second).handle == retried.handle
        events = poll_until(executor, item_for(second, retried.handle, attempt=2), ended)
        assert events[-1].state == State.SUCCEEDED
        assert {e.attempt for e in events} == {2}
        assert f"hello from {first.process_id}" in full_log(events)

    def test_stop_requested_in_a_poll_stops_a_running_job(self, executor, make_spec):
        spec = make_spec("sleep")
        sub = executor.submit(spec)
        item = item_for(spec, sub.handle)
        poll_until(executor, item, lambda e: e.state == State.RUNNING)
        item.stop_requested = True
        events = poll_until(executor, item, ended)
        assert events[-1].state == State.STOPPED

    def test_cancel_of_a_finished_job_is_a_noop(self, executor, make_spec):
        spec = make_spec("ok")
        sub = executor.submit(spec)
        item = item_for(spec, sub.handle)
        poll_until(executor, item, ended)
        executor.cancel(sub.handle)
        executor.cancel(sub.handle)
        item.log_offset = 0
        (event,) = executor.poll([item])
        assert event.missing or event.state == State.SUCCEEDED

    def test_poll_of_an_unknown_handle_says_missing(self, executor, make_spec, unknown_handle):
        spec = make_spec("ok")
        (event,) = executor.poll([item_for(spec, unknown_handle)])
        assert event.missing
        assert event.state is None

    def test_one_poll_answers_for_many_jobs(self, executor, make_spec):
        specs = [make_spec("ok") for _ in range(5)]
        items = [item_for(s, executor.submit(s).handle) for s in specs]
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            events = executor.poll(items)
            assert [e.process_id for e in events] == [s.process_id for s in specs]
            if all(e.state == State.SUCCEEDED for e in events):
                return
            time.sleep(0.3)
        pytest.fail(f"not all jobs succeeded: {[e.state for e in events]}")
