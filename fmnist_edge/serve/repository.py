"""A versioned model repository served with hot reload: <root>/fmnist/<N>/, the newest version that verifies.

A thread polls the repository; a new version folder (renamed into place, as `fmnist-edge publish` does) is
verified against its own manifest.json, compiled and warmed up (batch 1 and a batch) in that thread, and only
then swapped in, so no request waits for it or fails. Requests take the current classifier when they start and
keep it to their end: an old version is released when its last request is done. The newest `KEEP` versions stay
loaded for explicit /versions/N requests. The gates, in order: hashes (and the signature, with --trust),
compile and warm-up, then the golden set (golden.py: >= 99% of golden.json's answers, or refused; a version
without golden.json serves "not gated", as said in the log and /health). A version that fails a gate is logged
once with its reason, kept in `refused()` (shown by /health) and tried again only if its folder changes; the
current one keeps serving.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .. import faults, golden
from ..contract import INPUT_SHAPE, MODEL_NAME
from ..errors import FmnistEdgeError, ModelFileError, first_line

KEEP = 2  # versions kept loaded: the current one and the one before it
POLL_S = 1.0


class UnknownVersion(LookupError):
    """A version that is not loaded (never was, was refused, or was released)."""


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

    def close(self) -> None:
        pass


class Repository(ServedModel):
    """The versions of `root`/fmnist/ (or of `root` itself when it is that folder), newest verified first."""

    def __init__(self, root, load: Callable[[Path], object], log: Callable[[str], None] = print,
                 poll_s: float = POLL_S, on_swap: Callable[[str, object], None] | None = None):
        root = Path(root)
        self.base = root if root.name == MODEL_NAME and not (root / MODEL_NAME).is_dir() else root / MODEL_NAME
        self._load, self._log, self._poll_s = load, log, poll_s
        self._swap_listeners = [] if on_swap is None else [on_swap]
        self._lock = threading.Lock()
        self._loaded: dict[str, object] = {}  # version -> classifier, oldest first
        self._current: str | None = None
        self._refused: dict[str, float] = {}  # version -> folder mtime when refused
        self._reasons: dict[str, str] = {}  # version -> why it was refused
        self._gates: dict[str, str | None] = {}  # version -> its golden set's summary (None: not gated)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if not self.base.is_dir():
            raise ModelFileError(f"{root} is not a model repository: it has no {MODEL_NAME}/<version>/ folders "
                                 "(`fmnist-edge publish ARTIFACTS REPOSITORY` makes one; an artifact folder's serving/ is one)")
        for version in reversed(self._versions_on_disk()):
            if self._try(version):
                break
        if self._current is None:
            raise ModelFileError(f"no version in {self.base} verifies and loads"
                                 + (f" (refused: {', '.join(self._refused)})" if self._refused else " (it is empty)"))

    # ---------------------------------------------------------------- requests

    def get(self, version: str | None = None):
        """(version, classifier): the current one, or the loaded `version`; UnknownVersion otherwise."""
        with self._lock:
            key = self._current if version is None else version
            if key not in self._loaded:
                raise UnknownVersion(version)
            return key, self._loaded[key]

    def served_versions(self) -> list[str]:
        with self._lock:
            return list(self._loaded)

    def refused(self) -> dict[str, str]:
        with self._lock:
            return dict(self._reasons)

    def gate(self, version: str) -> str | None:
        with self._lock:
            return self._gates.get(version)

    @property
    def current(self) -> str:
        return self._current

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
        """Load every version newer than the current one that appeared since the last poll (newest wins)."""
        for version in self._versions_on_disk():
            if int(version) > int(self._current):
                self._try(version)

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
            if self._current is None or int(version) > int(self._current):
                self._current = version
            for old in sorted(self._loaded, key=int)[:-KEEP]:
                del self._loaded[old]  # released when the last request holding it ends
                self._gates.pop(old, None)
        said = gated or f"not gated: no {golden.GOLDEN}"
        self._log(f"repository: serving version {self._current} ({clf.precision}, {said}, {time.strftime('%H:%M:%S')})")
        for listener in self._swap_listeners:
            listener(self._current, self._loaded[self._current])
        return True
