"""Early polls (``workers.follow_ups``): a job its submission left queued is asked about again
soon and its RUNNING sent at once; the list stays short and bounded. The target here is a
stand-in whose answers the test sets; tests/executors/test_slurm.py follows real Slurm jobs."""

from __future__ import annotations

import threading
import time

import pytest

from workers import follow_ups
from workers.contract import PollItem, State
from workers.executors.base import Status


class Target:
    """Answers ``statuses`` from ``states`` (handle -> Status), counting the calls."""

    def __init__(self):
        self.states: dict[str, Status] = {}
        self.calls: list[list[str]] = []
        self.lock = threading.Lock()

    def __call__(self, target, pool, settings):
        return self

    def statuses(self, items):
        with self.lock:
            self.calls.append([item.handle for item in items])
            return {item.handle: self.states[item.handle] for item in items
                    if item.handle in self.states}


@pytest.fixture
def followed(monkeypatch):
    monkeypatch.setenv("ORCH_POLL_INTERVAL_S", "30")
    target, sent = Target(), []
    return follow_ups.FollowUps(send=sent.extend, executor=target), target, sent


def follow(followups, handle, process_id=None):
    return followups.follow(pool="p", target="slurm", settings={}, source="worker:w",
                            item=PollItem(process_id or f"proc-{handle}", handle, attempt=2))


def wait_for(check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.02)


def test_a_queued_job_is_reported_running_once_it_runs_then_no_longer_asked(followed):
    followups, target, sent = followed
    target.states["1"] = Status(State.SUBMITTED, message="waiting in the Slurm queue")
    follow(followups, "1")
    wait_for(lambda: len(target.calls) >= 2)  # asked again while queued
    target.states["1"] = Status(State.RUNNING)
    wait_for(lambda: sent)
    (event,) = sent
    assert (event.process_id, event.state, event.attempt) == ("proc-1", State.RUNNING, 2)
    wait_for(lambda: len(followups) == 0)
    asked = len(target.calls)
    time.sleep(0.6)
    assert len(target.calls) == asked  # followed no more


def test_due_jobs_of_a_pool_are_asked_about_in_one_call(followed):
    followups, target, _sent = followed
    for handle in ("1", "2", "3"):
        target.states[handle] = Status(State.SUBMITTED)
    with followups._wake:  # all three due at the same step
        for handle in ("1", "2", "3"):
            follow(followups, handle)
    wait_for(lambda: target.calls)
    assert sorted(target.calls[0]) == ["1", "2", "3"]


@pytest.mark.parametrize("status", [Status(State.SUCCEEDED, 0), Status(missing=True),
                                    Status(State.FAILED, 3)])
def test_an_end_or_an_unknown_job_stops_the_follow_up_and_sends_nothing(followed, status):
    """Its end goes out with the beat's poll, with its last log bytes and its outputs."""
    followups, target, sent = followed
    target.states["1"] = status
    follow(followups, "1")
    wait_for(lambda: target.calls and len(followups) == 0)
    time.sleep(0.4)
    assert len(target.calls) == 1
    assert sent == []


def test_following_ends_with_the_poll_interval(monkeypatch):
    monkeypatch.setenv("ORCH_POLL_INTERVAL_S", "0.6")
    monkeypatch.setattr(follow_ups, "FOLLOW_AT_LEAST_S", 0)
    target, sent = Target(), []
    followups = follow_ups.FollowUps(send=sent.extend, executor=target)
    target.states["1"] = Status(State.SUBMITTED)
    follow(followups, "1")
    wait_for(lambda: len(followups) == 0)
    assert 1 <= len(target.calls) <= 3  # 0.25 s steps within 0.6 s, then the beat's
    assert sent == []


def test_the_list_is_bounded(followed, monkeypatch):
    followups, _target, _sent = followed
    monkeypatch.setattr(follow_ups, "MAX_FOLLOWED", 3)
    with followups._wake:  # nothing is taken off meanwhile
        taken = [follow(followups, str(n)) for n in range(5)]
    assert taken == [True, True, True, False, False]


def test_a_target_that_cannot_be_asked_is_asked_again(followed):
    followups, _target, sent = followed
    calls = []

    class Failing(Target):
        def statuses(self, items):
            calls.append(1)
            if len(calls) < 3:
                raise OSError("squeue did not answer")
            return {item.handle: Status(State.RUNNING) for item in items}

    failing = Failing()
    followups._executor = failing
    follow(followups, "1")
    wait_for(lambda: sent)
    assert len(calls) == 3
    assert sent[0].state == State.RUNNING
