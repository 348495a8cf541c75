"""Named points where a fault test kills this process, as SQLite's crash tests do.

`FMNIST_EDGE_KILL_AT=NAME` makes the process SIGKILL itself when it reaches point NAME: no cleanup, no
finally blocks, exactly what a power cut or the OOM killer leaves. Unset (always, outside tests), a point
costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "FMNIST_EDGE_KILL_AT"

POINTS = (
    "atomic-dir-staged",  # a folder fully written under its staging name, not yet swapped in
    "atomic-dir-swapped",  # swapped in; the previous folder not yet removed
    "atomic-dir-half-renamed",  # two-rename commit: the previous folder moved aside, the new one not yet in place
    "train-epoch-saved",  # training: the state after an epoch written beside the artifact folder (train/resume.py)
    "publish-staged",  # a repository version copied under its hidden name, not yet renamed to its number
    "repository-loading",  # a server part-way through loading a newly published version
)


def point(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
