"""Faults that tests inject into a real process, as SQLite's crash tests do.

`FMNIST_EDGE_KILL_AT=NAME` makes the process SIGKILL itself when it reaches point NAME: no cleanup, no
finally blocks, exactly what a power cut or the OOM killer leaves. Unset (always, outside tests), a point
costs one dictionary lookup.

`FMNIST_EDGE_FAIL_VERSION=N` makes every inference a server runs on model version N fail with a server error
(`InjectedFault`), after N passed its gates: a version that is broken in service, for the canary's tests. Read
once at start; unset, a check costs one comparison.
"""

from __future__ import annotations

import os
import signal

ENV = "FMNIST_EDGE_KILL_AT"
FAIL_ENV = "FMNIST_EDGE_FAIL_VERSION"
_FAILING = os.environ.get(FAIL_ENV) or None

POINTS = (
    "atomic-dir-staged",  # a folder fully written under its staging name, not yet swapped in
    "atomic-dir-swapped",  # swapped in; the previous folder not yet removed
    "atomic-dir-half-renamed",  # two-rename commit: the previous folder moved aside, the new one not yet in place
    "train-epoch-saved",  # training: the state after an epoch written beside the artifact folder (train/resume.py)
    "publish-staged",  # a repository version copied under its hidden name, not yet renamed to its number
    "repository-loading",  # a server part-way through loading a newly published version
    "store-staged",  # a remote publish: the files uploaded under the hidden staging prefix, no number claimed yet
    "store-copied",  # ... the number claimed and the files copied into <N>/, READY not yet written
)


def point(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


class InjectedFault(RuntimeError):
    """The server error FMNIST_EDGE_FAIL_VERSION injects."""


def serving(version: str) -> None:
    """Raise InjectedFault when FMNIST_EDGE_FAIL_VERSION names `version`."""
    if _FAILING is not None and version == _FAILING:
        raise InjectedFault(f"injected fault: version {version} fails ({FAIL_ENV})")
