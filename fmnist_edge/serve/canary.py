"""Canary rollout: a newly gated version takes a share of the requests until it has shown it is no worse.

`serve --canary P` keeps the version that serves as it is and sends P% of the requests that name no version to
the new one, for `requests` of them or `seconds`, whichever comes first. Then the two are compared on the
requests each answered over the same stretch of time:
- errors: the new version's share of failed requests (server faults, not bad inputs) may exceed the current
  one's by at most MAX_ERROR_INCREASE;
- latency: it is worse only when both its p50 and its p99 are, by P50_RATIO and P99_RATIO (plus a few
  milliseconds of slack each): a slower model moves the whole distribution, while the one stall a busy host
  gives either version moves the p99 alone.
Worse on either: rolled back by itself (the repository records why and never retries that content); otherwise
promoted. A canary that saw fewer than MIN_REQUESTS requests when its time is up is promoted on its gates alone,
and says so. Requests are routed by a running share (every 1/P-th request, not at random), so a canary of P%
sees exactly P% of them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

MAX_ERROR_INCREASE = 0.01  # the new version may fail at most 1 point more of its requests than the current one
P50_RATIO, P50_SLACK_MS = 1.25, 1.0
P99_RATIO, P99_SLACK_MS = 1.5, 5.0
MIN_REQUESTS = 20  # fewer than this by the deadline: too few to judge; promoted on the gates alone
KEEP_LATENCIES = 20_000  # per version: the current one's latencies during a long canary are a bounded sample


@dataclass(frozen=True)
class CanaryPolicy:
    """`percent` of the requests (0 < percent <= 100) for `requests` requests or `seconds`, whichever is first."""

    percent: float
    requests: int = 200
    seconds: float = 60.0

    def __post_init__(self):
        if not 0 < self.percent <= 100:
            raise ValueError(f"a canary takes more than 0% and at most 100% of the requests, not {self.percent}%")
        if self.requests < 1 or self.seconds <= 0:
            raise ValueError("a canary needs at least one request and more than 0 seconds")


class Verdict(NamedTuple):
    promote: bool
    reason: str


@dataclass
class _Tally:
    requests: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def add(self, ok: bool, seconds: float) -> None:
        self.requests += 1
        if not ok:
            self.errors += 1
        elif len(self.latencies_ms) < KEEP_LATENCIES:
            self.latencies_ms.append(seconds * 1e3)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def percentile(self, q: float) -> float | None:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else None


class Canary:
    """One trial of version `candidate` against `current` under `policy`."""

    def __init__(self, policy: CanaryPolicy, current: str, candidate: str, clock=time.monotonic):
        self.policy, self.current, self.candidate = policy, current, candidate
        self._clock = clock
        self.started = clock()
        self._routed = self._to_candidate = 0
        self.tallies = {current: _Tally(), candidate: _Tally()}

    def route(self) -> str:
        """The version the next request that names none goes to."""
        self._routed += 1
        if int(self._routed * self.policy.percent / 100.0 + 1e-9) > self._to_candidate:
            self._to_candidate += 1
            return self.candidate
        return self.current

    def record(self, version: str, ok: bool, seconds: float) -> None:
        """One request answered (ok) or failed by a server fault, by `version`, in `seconds`."""
        tally = self.tallies.get(version)
        if tally is not None:
            tally.add(ok, seconds)

    def verdict(self) -> Verdict | None:
        """None while the trial runs; then whether to promote the candidate, and why."""
        new, old = self.tallies[self.candidate], self.tallies[self.current]
        timed_out = self._clock() - self.started >= self.policy.seconds
        if new.requests < self.policy.requests and not timed_out:
            return None
        if new.requests < MIN_REQUESTS:
            return Verdict(True, f"only {new.requests} requests in {self.policy.seconds:g} s: promoted on its gates alone")
        said = f"{new.requests} requests: errors {new.error_rate:.1%} vs {old.error_rate:.1%}"
        if new.error_rate > old.error_rate + MAX_ERROR_INCREASE:
            return Verdict(False, f"canary failed {new.errors} of {new.requests} requests ({new.error_rate:.1%}) against "
                                  f"{old.error_rate:.1%} for version {self.current}")
        p50, p99, old50, old99 = new.percentile(50), new.percentile(99), old.percentile(50), old.percentile(99)
        if None in (p50, p99, old50, old99):
            return Verdict(True, said)
        said += f", p50 {p50:.2f} vs {old50:.2f} ms, p99 {p99:.2f} vs {old99:.2f} ms"
        if p50 > P50_RATIO * old50 + P50_SLACK_MS and p99 > P99_RATIO * old99 + P99_SLACK_MS:
            return Verdict(False, f"canary slower: p50 {p50:.2f} ms and p99 {p99:.2f} ms against {old50:.2f} and "
                                  f"{old99:.2f} ms for version {self.current}")
        return Verdict(True, said)

    def status(self) -> dict:
        """What /health shows of a running canary."""
        new, old = self.tallies[self.candidate], self.tallies[self.current]
        return {"version": self.candidate, "against": self.current, "percent": self.policy.percent,
                "requests": new.requests, "errors": new.errors, "current_requests": old.requests,
                "current_errors": old.errors, "until_requests": self.policy.requests,
                "seconds_left": round(max(0.0, self.policy.seconds - (self._clock() - self.started)), 1)}
