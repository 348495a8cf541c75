"""Remote model repositories (s3://, file://) through fsspec: versions go up with their marker last and come down whole.

The layout is the local one, <uri>/fmnist/<N>/, plus a marker file READY written after every other file of the
version, so a version without READY does not exist for a kiosk. `upload` sends a locally staged version folder
under a hidden prefix (.staging-HOST-PID-*), copies it into <N>/ (READY last) and removes the staging prefix;
the next upload removes what a killed one left. `Mirror` keeps a local cache folder that `Repository` serves:
the newest remote version with READY is downloaded under a hidden name and renamed into place, then verified
by the Repository exactly like a local version. s3fs takes its endpoint and credentials from the standard AWS
variables (AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from .atomic import _owner_dead, owner_tag, sweep
from .contract import INSTALL_FLEET, MODEL_NAME
from .errors import ArtifactError, FmnistEdgeError, StoreError, first_line, require

READY = "READY"  # a version's marker: written last, lists the version's files
STAGE = ".staging-"  # a version being uploaded; kiosks only look at numbered prefixes with READY
DOWNLOAD = ".download-"  # a version being downloaded into the cache
STALE_S = 3600  # a staging prefix of another host counts as abandoned after this long
SCHEMES = ("s3", "file")


def is_remote(uri) -> bool:
    """True for a URI with a scheme (s3://, file://) rather than a local path."""
    return isinstance(uri, str) and "://" in uri


def check_scheme(uri: str) -> str:
    """The scheme of `uri`; StoreError for one not supported."""
    scheme = uri.split("://", 1)[0]
    if scheme not in SCHEMES:
        raise StoreError(f"{uri}: unsupported store {scheme}://; use one of {', '.join(s + '://' for s in SCHEMES)} or a folder")
    return scheme


def _filesystem(uri: str):
    """(fsspec filesystem, the repository's root path in it) for `uri`; s3 from the standard AWS variables."""
    scheme = check_scheme(uri)
    fsspec = require("fsspec", INSTALL_FLEET)
    options: dict = {"skip_instance_cache": True}
    if scheme == "s3":
        require("s3fs", INSTALL_FLEET)
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        options.update(use_listings_cache=False, config_kwargs={
            "connect_timeout": 3, "read_timeout": 10, "retries": {"total_max_attempts": 2}})
        if endpoint:
            options["client_kwargs"] = {"endpoint_url": endpoint}
    fs, root = fsspec.core.url_to_fs(uri, **options)
    return fs, root.rstrip("/")


def _fail(uri: str, what: str, exc: BaseException) -> StoreError:
    return StoreError(f"cannot {what} {uri}: {type(exc).__name__}: {first_line(exc)}")


def _names(fs, path: str) -> list[str]:
    try:
        return [e.rstrip("/").rsplit("/", 1)[-1] for e in fs.ls(path, detail=False)]
    except FileNotFoundError:
        return []


def ready_versions(fs, base: str) -> list[int]:
    """The numbered versions under `base` that have their READY marker, oldest first."""
    numbers = sorted(int(n) for n in _names(fs, base) if n.isdigit())
    return [n for n in numbers if fs.exists(f"{base}/{n}/{READY}")]


def _sweep_remote(fs, base: str) -> list[str]:
    """Remove the staging prefixes a killed upload left: this host's with a dead writer, any host's after STALE_S."""
    gone = []
    for name in _names(fs, base):
        if not name.startswith(STAGE):
            continue
        path = f"{base}/{name}"
        stale = _owner_dead(name, STAGE)
        if not stale:
            try:
                times = [info.get("LastModified") or info.get("mtime") for info in fs.find(path, detail=True).values()]
                newest = max((t.timestamp() if hasattr(t, "timestamp") else float(t) for t in times if t), default=0)
                stale = time.time() - newest > STALE_S
            except (OSError, ValueError):
                stale = False
        if stale:
            fs.rm(path, recursive=True)
            gone.append(name)
    return gone


def upload(version_dir: Path, uri: str) -> str:
    """Put the local version folder `version_dir` into the store at `uri` as its next version; returns its URI.
    The files go under a hidden staging prefix first, then are copied into <N>/ with READY last."""
    fs, root = _filesystem(uri)
    base = f"{root}/{MODEL_NAME}"
    files = sorted(p.name for p in Path(version_dir).iterdir() if p.is_file())
    try:
        fs.makedirs(base, exist_ok=True)
        _sweep_remote(fs, base)
        stage = f"{base}/{STAGE}{owner_tag()}-{uuid.uuid4().hex[:8]}"
        fs.makedirs(stage, exist_ok=True)  # a folder for file://; nothing on S3
        for name in files:
            fs.put_file(str(Path(version_dir) / name), f"{stage}/{name}")
        taken = [int(n) for n in _names(fs, base) if n.isdigit()]
        number = max(taken, default=0) + 1
        target = f"{base}/{number}"
        fs.makedirs(target, exist_ok=True)
        for name in files:
            fs.copy(f"{stage}/{name}", f"{target}/{name}")
        fs.pipe_file(f"{target}/{READY}", ("\n".join(files) + "\n").encode())  # last: now kiosks see it
        fs.rm(stage, recursive=True)
    except FmnistEdgeError:
        raise
    except Exception as exc:  # noqa: BLE001 - fsspec back ends raise their own types; one line for the user
        raise _fail(uri, "publish to", exc) from None
    return f"{uri.split('://', 1)[0]}://{target}"


def default_cache(uri: str) -> Path:
    """~/.cache/fmnist-edge/<the URI, made a folder name> (XDG_CACHE_HOME respected)."""
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return home / "fmnist-edge" / re.sub(r"[^A-Za-z0-9._-]+", "_", uri).strip("_")


class Mirror:
    """A local cache of the store at `uri`: cache/fmnist/<N>/ holds the versions downloaded whole."""

    def __init__(self, uri: str, cache: str | os.PathLike | None = None):
        check_scheme(uri)
        self.uri = uri
        self.cache = Path(cache) if cache is not None else default_cache(uri)
        self.base = self.cache / MODEL_NAME
        self._fs = None
        try:
            self.base.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArtifactError(f"cannot create the cache {self.base}: {exc.strerror or exc}; choose another --cache") from None
        sweep(self.base, (DOWNLOAD,))

    def cached(self) -> list[int]:
        return sorted(int(p.name) for p in self.base.iterdir() if p.name.isdigit() and p.is_dir())

    def sync(self) -> int | None:
        """Download the newest remote version with READY if it is newer than every cached one; returns its
        number, or None when there was nothing new. StoreError when the store cannot be read."""
        try:
            if self._fs is None:
                self._fs, self._root = _filesystem(self.uri)
            fs, remote = self._fs, f"{self._root}/{MODEL_NAME}"
            ready = ready_versions(fs, remote)
            if not ready or ready[-1] <= max(self.cached(), default=0):
                return None
            number = ready[-1]
            files = [n for n in fs.cat_file(f"{remote}/{number}/{READY}").decode().split() if n and "/" not in n]
            tmp = Path(tempfile.mkdtemp(prefix=f"{DOWNLOAD}{owner_tag()}-", dir=self.base))
            try:
                for name in files:
                    fs.get_file(f"{remote}/{number}/{name}", str(tmp / name))
                os.chmod(tmp, 0o755)
                os.rename(tmp, self.base / str(number))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            return number
        except FmnistEdgeError:
            raise
        except Exception as exc:  # noqa: BLE001 - a store that is down raises its client's own types
            self._fs = None  # a fresh client next time
            raise _fail(self.uri, "read", exc) from None
