"""The canary's routing and judgment on recorded outcomes (serve/canary.py); the rollout through a live server is in
tests/test_fleet.py."""

from __future__ import annotations

import pytest

from fmnist_edge.serve.canary import MIN_REQUESTS, Canary, CanaryPolicy


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _trial(percent=25.0, requests=100, seconds=60.0):
    clock = Clock()
    return Canary(CanaryPolicy(percent, requests, seconds), "1", "2", clock=clock), clock


def _serve(canary, n, fail=(), ms=None):
    """Route n requests; the versions in `fail` fail them; latency ms[version] (default 1 ms)."""
    for _ in range(n):
        v = canary.route()
        canary.record(v, v not in fail, (ms or {}).get(v, 1.0) / 1e3)


@pytest.mark.parametrize("percent", [1, 10, 25, 33.3, 50, 100])
def test_the_canary_gets_exactly_its_share_of_requests(percent):
    canary, _ = _trial(percent)
    routed = [canary.route() for _ in range(3000)]
    assert abs(routed.count("2") - 3000 * percent / 100) <= 1


def test_it_undecided_until_its_requests_then_promoted_when_no_worse():
    canary, _ = _trial(25, requests=100)
    _serve(canary, 396)
    assert canary.verdict() is None and canary.status()["requests"] == 99
    _serve(canary, 4)
    verdict = canary.verdict()
    assert verdict.promote and "100 requests" in verdict.reason


def test_a_canary_that_fails_requests_is_rolled_back():
    canary, _ = _trial(25, requests=100)
    _serve(canary, 400, fail={"2"})
    verdict = canary.verdict()
    assert not verdict.promote and "failed 100 of 100" in verdict.reason


def test_a_few_errors_within_the_margin_of_the_current_version_pass():
    canary, _ = _trial(50, requests=200)
    for i in range(400):
        v = canary.route()
        canary.record(v, not (i % 100 == 0), 0.001)  # both versions fail 1 in 100 of theirs
    assert canary.verdict().promote


def test_a_slower_canary_is_rolled_back_but_one_stall_is_not():
    slow, _ = _trial(50, requests=100)
    _serve(slow, 200, ms={"1": 1.0, "2": 12.0})
    verdict = slow.verdict()
    assert not verdict.promote and "slower" in verdict.reason
    stalled, _ = _trial(50, requests=100)
    for i in range(200):
        v = stalled.route()
        stalled.record(v, True, (80.0 if v == "2" and i % 40 == 1 else 1.0) / 1e3)  # a few stalls move its p99 only
    assert stalled.verdict().promote


def test_the_deadline_decides_with_what_it_has_and_an_idle_canary_is_promoted_on_its_gates():
    canary, clock = _trial(10, requests=1000, seconds=30)
    _serve(canary, 10 * MIN_REQUESTS, fail={"2"})
    assert canary.verdict() is None
    clock.now = 30.0
    assert not canary.verdict().promote  # enough requests to judge: rolled back
    idle, clock = _trial(10, requests=1000, seconds=30)
    _serve(idle, 50)
    clock.now = 31.0
    verdict = idle.verdict()
    assert verdict.promote and "on its gates alone" in verdict.reason


def test_a_policy_out_of_range_is_refused():
    for bad in ({"percent": 0}, {"percent": 101}, {"percent": 5, "requests": 0}, {"percent": 5, "seconds": 0}):
        with pytest.raises(ValueError):
            CanaryPolicy(**bad)
