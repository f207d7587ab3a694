"""The poll rules written once in Executor.poll, for every target: a job's end is reported
only with its last log bytes, and a stop is carried out whatever the target says."""

from __future__ import annotations

from workers.contract import LOG_CHUNK_BYTES, PollItem, State
from workers.executors.base import Executor, ExecutorError, LogChunk, Status


class FakeTarget(Executor):
    """A target whose answers the test sets."""

    target = "fake"

    def __init__(self, status: Status, log: bytes = b"", log_fails: bool = False):
        super().__init__("fake-pool")
        self.status, self.log, self.log_fails, self.cancelled = status, log, log_fails, []

    def find(self, spec):
        return None

    def start(self, spec):
        raise AssertionError("not used")

    def statuses(self, items):
        return {item.handle: self.status for item in items}

    def cancel(self, handle):
        self.cancelled.append(handle)

    def read_log(self, item, limit):
        if self.log_fails:
            raise ExecutorError("log store unreachable")
        return LogChunk(self.log[item.log_offset:item.log_offset + limit])


def poll(target: FakeTarget, **item_fields):
    (event,) = target.poll([PollItem(process_id="p1", handle="h1", **item_fields)])
    return event


def test_an_end_is_reported_with_the_last_log_bytes():
    event = poll(FakeTarget(Status(State.SUCCEEDED, 0), log=b"done\n"))
    assert event.state == State.SUCCEEDED
    assert event.log == "done\n"
    assert event.log_end == 5


def test_an_end_waits_while_more_log_is_unread():
    target = FakeTarget(Status(State.FAILED, 2), log=b"x" * (LOG_CHUNK_BYTES + 10))
    first = poll(target)
    assert first.state is None
    assert first.log_end == LOG_CHUNK_BYTES
    second = poll(target, log_offset=first.log_end)
    assert second.state == State.FAILED
    assert second.exit_code == 2
    assert second.log_end == LOG_CHUNK_BYTES + 10


def test_an_end_waits_when_the_log_read_failed():
    event = poll(FakeTarget(Status(State.SUCCEEDED, 0), log_fails=True))
    assert event.state is None


def test_a_running_job_is_reported_even_when_its_log_read_failed():
    assert poll(FakeTarget(Status(State.RUNNING), log_fails=True)).state == State.RUNNING


def test_a_stop_is_carried_out_unless_the_job_has_ended():
    running = FakeTarget(Status(State.RUNNING))
    poll(running, stop_requested=True)
    unknown_state = FakeTarget(Status(None))
    poll(unknown_state, stop_requested=True)
    ended = FakeTarget(Status(State.SUCCEEDED, 0))
    poll(ended, stop_requested=True)
    assert running.cancelled == ["h1"]
    assert unknown_state.cancelled == ["h1"]
    assert ended.cancelled == []


def test_a_handle_the_target_does_not_know_is_missing_never_ended():
    event = poll(FakeTarget(Status(missing=True, message="no such job")))
    assert event.missing
    assert event.state is None
    assert "no such job" in event.message
