"""A versioned model repository served with hot reload: <root>/fmnist/<N>/, the versions its policy serves.

A thread polls the repository; a new version folder (renamed into place, as `fmnist-edge publish` does) is
verified against its own manifest.json, compiled and warmed up (batch 1 and a batch) in that thread, and only
then swapped in, so no request waits for it or fails. Requests take the current classifier when they start and
keep it to their end: an old version is released when its last request is done. The gates, in order: hashes
(and the signature, with --trust), compile and warm-up, then the golden set (golden.py: >= 99% of golden.json's
answers, or refused; a version without golden.json serves "not gated", as said in the log and /health). A version
that fails a gate is logged once with its reason, kept in `refused()` (shown by /health) and tried again only if
its folder changes (or an operator loads it); the current one keeps serving.

Which versions serve is the `VersionPolicy` (OVMS' model_version_policy: the latest N that pass the gates,
specific ones, or all); they are loaded and requestable as /versions/N, and the newest of them is current (what
a request without a version gets). An operator steers it through the protocol's repository extension:
`load(version)` pins a version as current (loading and gating it first), `load()` unpins, `unload()` stops
serving until the next load, `index()` lists every version with its state and reason.

With a `CanaryPolicy` (`serve --canary P`) a new version that passes the gates does not become current at once:
it answers P% of the requests that name no version until canary.py's verdict, then it is promoted, or rolled back
and refused with the reason (never retried until its folder changes) while the current version never stopped
serving. Requests report their outcome through `record`. A pin by an operator ends a running canary.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import faults, golden
from ..contract import INPUT_SHAPE, MODEL_NAME
from ..errors import ConfigError, ControlError, FmnistEdgeError, ModelFileError, first_line
from .canary import Canary, CanaryPolicy

POLL_S = 1.0
READY, UNAVAILABLE = "READY", "UNAVAILABLE"  # the states of the repository extension's index
FIXED = ("this server serves one fixed model (serve --model): it cannot load or unload versions; "
         "serve --repository DIR to control them")


class UnknownVersion(LookupError):
    """A version that is not loaded (never was, was refused, or was released)."""


class Unloaded(LookupError):
    """The model was unloaded on request (the repository extension's unload): nothing serves until the next load."""


@dataclass(frozen=True)
class VersionPolicy:
    """Which versions of a repository serve, as OpenVINO Model Server's model_version_policy says it: the `latest`
    `count` versions that pass the gates, the `specific` `versions` that do, or `all` that do."""

    kind: str = "latest"
    count: int = 1
    versions: tuple[str, ...] = ()

    SYNTAX = "latest:N, specific:A,B,... or all"

    @classmethod
    def parse(cls, text: str) -> VersionPolicy:
        """`latest:N` | `specific:A,B` | `all` -> the policy; ConfigError (one line) otherwise."""
        text = str(text).strip()
        if text == "all":
            return cls("all", 0)
        m = re.fullmatch(r"latest:(\d+)", text)
        if m and int(m.group(1)) >= 1:
            return cls("latest", int(m.group(1)))
        m = re.fullmatch(r"specific:(\d+(?:,\d+)*)", text)
        if m:
            return cls("specific", 0, tuple(sorted({str(int(v)) for v in m.group(1).split(",")}, key=int)))
        raise ConfigError(f"{text!r} is not a version policy; give {cls.SYNTAX} (e.g. latest:1, specific:3,4)")

    def __str__(self) -> str:
        return {"latest": f"latest:{self.count}", "all": "all"}.get(self.kind) or f"specific:{','.join(self.versions)}"

    def select(self, passing: list[str]) -> list[str]:
        """The versions of `passing` (versions that passed the gates, oldest first) that this policy serves."""
        if self.kind == "latest":
            return passing[-self.count:]
        if self.kind == "specific":
            return [v for v in passing if v in self.versions]
        return list(passing)


LATEST = VersionPolicy()  # the newest version that passes the gates, alone


class ServedModel:
    """The model a server serves, by version: here one fixed classifier as version `version` (what `serve --model`
    serves); `Repository` serves the versions of a folder, hot reloaded."""

    def __init__(self, classifier, version: str):
        self._version, self._classifier = version, classifier
        self._swap_listeners: list[Callable[[str, object], None]] = []

    def get(self, version: str | None = None):
        if version is not None and version != self._version:
            raise UnknownVersion(version)
        return self._version, self._classifier

    def served_versions(self) -> list[str]:
        """The versions a request may ask for, oldest first."""
        return [self._version]

    def refused(self) -> dict[str, str]:
        """{version: why it was refused} (a fixed model never is)."""
        return {}

    def gate(self, version: str) -> str | None:
        """What the golden set said of a loaded version (None: not gated; a fixed model is not)."""
        return None

    def add_swap_listener(self, listener: Callable[[str, object], None]) -> None:
        """Call `listener(version, classifier)` after each new version is swapped in (a fixed model never is)."""
        self._swap_listeners.append(listener)

    def record(self, version: str, ok: bool, seconds: float) -> None:
        """A request served by `version` succeeded (`ok`) or failed by a server fault, in `seconds` (what a canary
        is judged on; a fixed model has none)."""

    def canary(self) -> dict | None:
        """The running canary's status for /health (None: none runs)."""
        return None

    def index(self, ready: bool = False) -> list[dict]:
        """The repository extension's index: one {name, version, state, reason} per version (`ready`: READY ones only)."""
        return [{"name": MODEL_NAME, "version": self._version, "state": READY, "reason": "the fixed --model"}]

    def load(self, version: str | None = None) -> str:
        """The repository extension's load: a fixed model has nothing to load (ControlError)."""
        raise ControlError(FIXED)

    def unload(self) -> None:
        """The repository extension's unload: a fixed model cannot be unloaded (ControlError)."""
        raise ControlError(FIXED)

    def close(self) -> None:
        pass


class Repository(ServedModel):
    """The versions of `root`/fmnist/ (or of `root` itself when it is that folder) that `policy` serves, newest current."""

    def __init__(self, root, load: Callable[[Path], object], log: Callable[[str], None] = print,
                 poll_s: float = POLL_S, on_swap: Callable[[str, object], None] | None = None,
                 policy: VersionPolicy = LATEST, canary: CanaryPolicy | None = None):
        root = Path(root)
        self.base = root if root.name == MODEL_NAME and not (root / MODEL_NAME).is_dir() else root / MODEL_NAME
        self._load, self._log, self._poll_s, self.policy = load, log, poll_s, policy
        self.canary_policy = canary
        self._canary: Canary | None = None  # the trial of a new version, while one runs
        self._swap_listeners = [] if on_swap is None else [on_swap]
        self._lock = threading.Lock()  # guards what requests read: _loaded, _current, _unloaded, _reasons, _gates
        self._busy = threading.RLock()  # one change at a time: a poll, a load or an unload
        self._loaded: dict[str, object] = {}  # version -> classifier
        self._current: str | None = None
        self._pinned: str | None = None  # the version an operator's load made current, whatever the policy says
        self._unloaded = False  # an operator's unload: nothing serves until the next load
        self._refused: dict[str, float] = {}  # version -> folder mtime when refused
        self._reasons: dict[str, str] = {}  # version -> why it was refused
        self._gates: dict[str, str | None] = {}  # version -> its golden set's summary (None: not gated)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if not self.base.is_dir():
            raise ModelFileError(f"{root} is not a model repository: it has no {MODEL_NAME}/<version>/ folders "
                                 "(`fmnist-edge publish ARTIFACTS REPOSITORY` makes one; an artifact folder's serving/ is one)")
        self._refresh()
        if self._current is None:
            policy = "" if policy == LATEST else f" that --versions {policy} serves"
            raise ModelFileError(f"no version in {self.base}{policy} verifies and loads"
                                 + (f" (refused: {', '.join(self._refused)})" if self._refused else " (it is empty)"))

    # ---------------------------------------------------------------- requests

    def get(self, version: str | None = None):
        """(version, classifier): the current one, or the loaded `version`; UnknownVersion otherwise (Unloaded
        after an operator's unload)."""
        with self._lock:
            if self._unloaded:
                raise Unloaded(version)
            if version is not None:
                key = version
            elif self._canary is not None:
                key = self._canary.route()
            else:
                key = self._current
            if key not in self._loaded:
                raise UnknownVersion(version)
            return key, self._loaded[key]

    def served_versions(self) -> list[str]:
        with self._lock:
            return sorted(self._loaded, key=int)

    def refused(self) -> dict[str, str]:
        with self._lock:
            return dict(self._reasons)

    def gate(self, version: str) -> str | None:
        with self._lock:
            return self._gates.get(version)

    @property
    def current(self) -> str | None:
        return self._current

    # ---------------------------------------------------------------- the canary

    def record(self, version: str, ok: bool, seconds: float) -> None:
        trial = self._canary
        if trial is None:
            return
        trial.record(version, ok, seconds)
        if version == trial.candidate:
            self._judge(trial)

    def canary(self) -> dict | None:
        trial = self._canary
        return None if trial is None else trial.status()

    def _judge(self, trial: Canary) -> None:
        """Promote or roll back `trial`'s version once its verdict is in (from a request or from a poll)."""
        verdict = trial.verdict()
        if verdict is None:
            return
        with self._lock:
            if self._canary is not trial:
                return  # decided already, or ended by an operator
            self._canary = None
            version = trial.candidate
            if verdict.promote:
                self._current = version
            else:
                self._loaded.pop(version, None)
                self._gates.pop(version, None)
                self._reasons[version] = verdict.reason
                try:
                    self._refused[version] = (self.base / version).stat().st_mtime
                except OSError:
                    self._refused[version] = 0.0
            current, clf = self._current, self._loaded.get(self._current)
        if verdict.promote:
            self._log(f"repository: canary of version {version} promoted ({verdict.reason}); serving version {version}")
            for listener in self._swap_listeners:
                listener(current, clf)
        else:
            self._log(f"repository: canary of version {version} rolled back ({verdict.reason}); "
                      f"still serving version {current}")

    @property
    def pinned(self) -> str | None:
        return self._pinned

    # ---------------------------------------------------------------- the repository extension

    def index(self, ready: bool = False) -> list[dict]:
        """Every version in the repository, loaded or refused, oldest first: {name, version, state (READY or
        UNAVAILABLE), reason} (`ready`: READY ones only)."""
        with self._lock:
            loaded, reasons, current, pinned = set(self._loaded), dict(self._reasons), self._current, self._pinned
        rows = []
        for version in sorted(set(self._versions_on_disk()) | loaded | set(reasons), key=int):
            if version in loaded:
                state, reason = READY, ("current, pinned by a load request" if version == pinned
                                        else "current" if version == current else "")
            elif version in reasons:
                state, reason = UNAVAILABLE, f"refused: {reasons[version]}"
            elif self._unloaded:
                state, reason = UNAVAILABLE, "unloaded by request; a load request serves it again"
            else:
                state, reason = UNAVAILABLE, f"not served: the version policy is {self.policy}"
            if state == READY or not ready:
                rows.append({"name": MODEL_NAME, "version": version, "state": state, "reason": reason})
        return rows

    def load(self, version: str | None = None) -> str:
        """Serve again (after an unload) -> the current version. With `version`: pin it as current whatever the
        policy says (a version of the repository; loaded and put through the gates first if it is not loaded, even
        if it was refused before); ControlError if it is not there or fails a gate, and what served goes on
        serving. Without: unpin, back to the policy's newest version."""
        with self._busy:
            if version is not None:
                version = str(version)
                if not version.isdigit() or not (self.base / version).is_dir():
                    raise ControlError(f"{MODEL_NAME} has no version {version!r} in {self.base}; it has "
                                       f"{', '.join(self._versions_on_disk()) or 'none'}")
                if version not in self._loaded:
                    self._refused.pop(version, None)  # asked for by name: its gates run again
                    if not self._try(version):
                        raise ControlError(f"version {version} cannot serve: "
                                           f"{self._reasons.get(version, 'its folder went away')}")
            self._end_canary("a load request")
            self._pinned, self._unloaded = version, False
            self._refresh()
            if self._current is None:
                raise ControlError(f"no version in {self.base} that --versions {self.policy} serves verifies and loads")
            return self._current

    def use_policy(self, policy: VersionPolicy) -> None:
        """Serve what `policy` says from now on (for a subclass that does not take one at construction)."""
        with self._busy:
            self.policy = policy
            self._refresh()
            if self._current is None:
                raise ModelFileError(f"no version in {self.base} that --versions {policy} serves verifies and loads")

    def unload(self) -> None:
        """Stop serving: every version is released, requests are refused as unloaded, polls load nothing, until
        the next `load`. The pin goes with it."""
        with self._busy:
            self._end_canary("an unload request")
            with self._lock:
                self._unloaded, self._pinned, self._current = True, None, None
                self._loaded.clear()
                self._gates.clear()
            self._log("repository: unloaded by request; nothing serves until a load request")

    # ---------------------------------------------------------------- watching

    def start(self) -> Repository:
        self._thread = threading.Thread(target=self._watch, name="fmnist-repository", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def poll(self) -> None:
        """Load the versions that appeared since the last poll and that the policy serves (the latest N: newest first,
        until N pass the gates), then release the ones it no longer serves."""
        self._refresh()

    def _end_canary(self, by: str) -> None:
        with self._lock:
            trial, self._canary = self._canary, None
        if trial is not None:
            self._log(f"repository: canary of version {trial.candidate} ended by {by}")

    def _refresh(self) -> None:
        with self._busy:
            if self._unloaded:
                return
            trial = self._canary
            if trial is not None:
                self._judge(trial)  # its time may be up with no request to say so
            if self._canary is None:  # new versions wait for a running canary's verdict
                self._load_wanted()
            self._settle()

    def _load_wanted(self) -> None:
        versions = sorted(set(self._versions_on_disk()) | set(self._loaded), key=int)
        if self.policy.kind == "latest":
            serving = 0
            for version in reversed(versions):
                if serving == self.policy.count:
                    break
                serving += version in self._loaded or self._try(version)
        else:
            for version in versions:
                if version not in self._loaded and (self.policy.kind == "all" or version in self.policy.versions):
                    self._try(version)

    def _settle(self) -> None:
        """Release what neither the policy, the pin nor a canary serves; make the pinned version, else the newest,
        current -- or, with a canary policy, put a newer version on trial beside the current one."""
        started = None
        with self._lock:
            served = self.policy.select(sorted(self._loaded, key=int))
            if self._pinned in self._loaded and self._pinned not in served:
                served.append(self._pinned)
            before = self._current
            want = self._pinned if self._pinned in self._loaded else max(served, key=int, default=None)
            if (self._canary is None and self.canary_policy is not None and before in self._loaded and want is not None
                    and want != self._pinned and int(want) > int(before)):
                self._canary = started = Canary(self.canary_policy, before, want)
            if self._canary is not None:
                served = sorted({*served, self._canary.current, self._canary.candidate}, key=int)
                want = self._canary.current
            for old in [v for v in self._loaded if v not in served]:
                del self._loaded[old]  # released when the last request holding it ends
                self._gates.pop(old, None)
            self._current = want
            current = self._current
        if started is not None:
            p = self.canary_policy
            self._log(f"repository: canary: version {started.candidate} takes {p.percent:g}% of the requests for "
                      f"{p.requests} of them or {p.seconds:g} s; version {before} serves the rest")
        if current is None or current == before:
            return
        clf = self._loaded[current]
        said = self._gates.get(current) or f"not gated: no {golden.GOLDEN}"
        pinned = ", pinned" if current == self._pinned else ""
        others = "" if served == [current] else f"; versions {', '.join(sorted(served, key=int))} loaded"
        self._log(f"repository: serving version {current} ({clf.precision}, {said}{pinned}, "
                  f"{time.strftime('%H:%M:%S')}){others}")
        for listener in self._swap_listeners:
            listener(current, clf)

    def _watch(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                self.poll()
            except Exception as exc:  # noqa: BLE001 - the watcher must outlive any surprise; say it and go on
                self._log(f"repository: poll failed ({type(exc).__name__}: {exc})")

    def _versions_on_disk(self) -> list[str]:
        try:
            return sorted((p.name for p in self.base.iterdir() if p.name.isdigit() and p.is_dir()), key=int)
        except OSError:
            return []

    def _try(self, version: str) -> bool:
        """Put `version` through the gates; True (and loaded, not yet current) if it passes."""
        folder = self.base / version
        try:
            mtime = folder.stat().st_mtime
        except OSError:
            return False
        if self._refused.get(version) == mtime:
            return False
        try:
            clf = self._load(folder)
            if self._current is not None:
                faults.point("repository-loading")
            for batch in (1, 2):  # warm up both compiles (batch 1, dynamic batch) before serving
                clf.predict_tensor(np.zeros((batch, *INPUT_SHAPE[1:]), np.float32))
            gated = golden.check(folder, clf)
        except FmnistEdgeError as exc:
            self._refused[version] = mtime
            with self._lock:
                self._reasons[version] = first_line(exc)
            self._log(f"repository: refused version {version} ({exc}); still serving version {self._current}")
            return False
        with self._lock:
            self._reasons.pop(version, None)
            self._gates[version] = gated
            self._loaded[version] = clf
        return True
