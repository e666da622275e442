"""The server's torch thread budget and its share per busy session (cnnvis_ui/threads.py)."""

from __future__ import annotations

import threading

import pytest
import torch

from cnnvis_ui import threads


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_the_budget_is_one_core_fewer_or_the_environment_s(monkeypatch):
    monkeypatch.setattr(threads, "cores", lambda: 16)
    assert threads.budget({}) == 15
    assert threads.budget({threads.ENV: "4"}) == 4
    assert threads.budget({threads.ENV: "0"}) == 15 and threads.budget({threads.ENV: "lots"}) == 15
    monkeypatch.setattr(threads, "cores", lambda: 2)
    assert threads.budget({}) == 1
    monkeypatch.setattr(threads, "cores", lambda: 1)
    assert threads.budget({}) == 1


def test_each_busy_session_gets_an_equal_share_and_at_least_one():
    assert [threads.share(busy, 15) for busy in (0, 1, 2, 4, 16, 40)] == [15, 15, 7, 3, 1, 1]


def test_concurrent_sessions_split_the_budget_and_give_it_back():
    policy = threads.ThreadPolicy(total=8)
    inside, release, seen = threading.Barrier(5), threading.Event(), []

    def session() -> None:
        with policy.computing() as threads_given:
            inside.wait(timeout=10)
            release.wait(timeout=10)
            seen.append(threads_given)

    workers = [threading.Thread(target=session) for _ in range(4)]
    for worker in workers:
        worker.start()
    inside.wait(timeout=10)  # all four are computing
    assert policy.busy == 4
    release.set()
    for worker in workers:
        worker.join(timeout=10)
    assert policy.busy == 0
    assert sorted(seen) == [2, 2, 4, 8]  # 8 // 1, 8 // 2, 8 // 3, 8 // 4 as they joined
    with policy.computing() as alone:
        assert alone == 8 and torch.get_num_threads() == 8  # alone again: the whole budget


def test_nested_heavy_calls_count_their_session_once():
    policy = threads.ThreadPolicy(total=6)
    with policy.computing() as outer:
        with policy.computing() as inner:
            assert policy.busy == 1 and outer == inner == 6
        assert policy.busy == 1
    assert policy.busy == 0


def test_a_failing_call_still_gives_its_share_back():
    policy = threads.ThreadPolicy(total=4)
    with pytest.raises(ValueError), policy.computing():
        raise ValueError("boom")
    assert policy.busy == 0


def test_sized_keeps_the_function_s_name_and_signature():
    @threads.sized
    def work(x: int, _unhashed: object = None) -> int:
        return x + 1

    assert work(1) == 2 and work.__name__ == "work"
    assert list(__import__("inspect").signature(work).parameters) == ["x", "_unhashed"]
