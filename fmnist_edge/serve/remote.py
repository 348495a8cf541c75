"""A model repository served from a remote store: a `Repository` over the local cache that a `store.Mirror` fills.

The store is s3://, gs://, file:// or a read-only https:// server (store.py says how each is configured). Each
poll first asks the store for a newer version (downloaded whole into the cache, see store.py), then the
Repository verifies, gates and swaps it in as it does any local version. A poll that cannot reach the store is
logged in one line and the kiosk goes on serving; the next polls back off exponentially with jitter up to
BACKOFF_CAP_S, so a fleet does not stampede a store that comes back. A kiosk whose cache holds a version starts
serving it without waiting for the store (a store that is down can take seconds to say so); its first poll, at
once, brings anything newer. An empty cache waits for the store; when every version it has is refused by the
gates, the kiosk fetches the one before them (up to OLDER_TRIES times) rather than not starting.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from ..errors import ModelFileError, StoreError
from ..store import Mirror
from .repository import Repository

BACKOFF_CAP_S = 60.0
OLDER_TRIES = 3  # a kiosk whose cached versions are all refused at start tries this many older ones from the store
REMOTE_POLL_S = 10.0  # a store is asked for news every ~10 s (one small read): 6 requests a minute per kiosk


class RemoteRepository(Repository):
    """The versions of the store at `uri`, through the cache folder `cache` (None: store.default_cache);
    `policies`: Repository's `policy` and `canary`."""

    def __init__(self, uri: str, load: Callable[[Path], object], cache=None, log: Callable[[str], None] = print,
                 poll_s: float = REMOTE_POLL_S, on_swap: Callable[[str, object], None] | None = None,
                 backoff_cap_s: float = BACKOFF_CAP_S, **policies):
        self.uri, self._cap = uri, max(backoff_cap_s, poll_s)
        self.mirror = Mirror(uri, cache)
        self.failures = 0  # polls in a row that could not reach the store
        self._poll_now = bool(self.mirror.cached())  # serve the cache first, then ask the store at once
        if not self._poll_now:
            self._sync(log)
        for _ in range(OLDER_TRIES):
            try:
                super().__init__(self.mirror.cache, load, log=log, poll_s=poll_s, on_swap=on_swap, **policies)
                return
            except ModelFileError:  # every cached version refused: a first start on a store whose newest fails
                older = self._older(log)
                if older is None:
                    raise
                log(f"repository: trying version {older}, the one before those refused")
        super().__init__(self.mirror.cache, load, log=log, poll_s=poll_s, on_swap=on_swap, **policies)

    def _older(self, log) -> int | None:
        try:
            return self.mirror.sync(older_than=min(self.mirror.cached(), default=None))
        except StoreError as exc:
            log(f"repository: {exc}")
            return None

    def _sync(self, log) -> None:
        try:
            self.mirror.sync()
        except StoreError as exc:
            self.failures += 1
            log(f"repository: {exc}; serving from the cache {self.mirror.base}")
        else:
            if self.failures:
                log(f"repository: {self.uri} answers again")
            self.failures = 0

    def poll(self) -> None:
        self._sync(self._log)
        super().poll()

    def delay(self) -> float:
        """Seconds to the next poll: poll_s (+-10%, so kiosks started together drift apart) while the store
        answers, then doubling per failure up to the cap, with full jitter in its upper half."""
        if not self.failures:
            return random.uniform(0.9, 1.1) * self._poll_s
        ceiling = min(self._cap, self._poll_s * 2 ** self.failures)
        return random.uniform(ceiling / 2, ceiling)

    def _watch(self) -> None:
        first, self._poll_now = (0.0 if self._poll_now else None), False
        while not self._stop.wait(self.delay() if first is None else first):
            first = None
            try:
                self.poll()
            except Exception as exc:  # noqa: BLE001 - the watcher must outlive any surprise; say it and go on
                self._log(f"repository: poll failed ({type(exc).__name__}: {exc})")
