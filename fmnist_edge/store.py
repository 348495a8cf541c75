"""Remote model repositories (s3://, gs://, file://, https://) through fsspec: versions go up whole, come down whole.

The layout is the local one, <uri>/fmnist/<N>/, plus a marker file READY written after every other file of the
version, so a version without READY does not exist for a kiosk. `upload` sends a locally staged version folder
under a hidden prefix (.staging-HOST-PID-*), then claims the next number N by creating .claims/<N> only if it
does not exist yet (S3's If-None-Match, GCS's ifGenerationMatch=0, O_EXCL for file://): two publishers racing for
one number get two numbers, and no number is used twice. It copies the files into <N>/, checks that its claim
still holds (on a store that ignores create-if-absent a racing publish fails here, or the kiosks' hash gate
refuses the mixed version; it never serves), writes READY last, removes the staging prefix and rewrites
<uri>/fmnist/index.json, the list of READY versions that plain HTTP servers need because they cannot list. The
index is written whole (a temporary name renamed into place for file://) and re-read until a listing agrees with
it, so a racing publisher cannot leave it short. The next upload removes what a killed one left: staging
prefixes of a dead writer on this host, and any staging prefix or numbered prefix without READY whose newest
object is older than STALE_S (a publish killed between its claim and its READY).

`Mirror` keeps a local cache folder that `Repository` serves: the newest remote version with READY (found through
index.json, one read per poll; by listing on a listable store without one) is downloaded under a hidden name and renamed into place, then
verified by the Repository exactly like a local version.

Where the stores take their settings, all standard variables of their own libraries:
- s3:// (s3fs): AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (MinIO, Ceph), AWS_ACCESS_KEY_ID,
  AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION.
- gs:// (gcsfs): Google's application default credentials (GOOGLE_APPLICATION_CREDENTIALS); STORAGE_EMULATOR_HOST
  points it at an emulator (then anonymous, over the JSON API only).
- https:// and http:// (fsspec's HTTP filesystem on aiohttp): read-only, any static file server or CDN serving a
  folder or bucket that `publish` wrote (a folder as file://PATH: a plain path gets no READY or index.json).
  A private CA: SSL_CERT_FILE=ca.pem (or SSL_CERT_DIR), OpenSSL's own
  variables, read each time the store is opened. They replace the system's CA bundle, so a kiosk
  that also reaches public servers points SSL_CERT_FILE at the system bundle with the private CA appended.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from . import faults
from .atomic import _owner_dead, owner_tag, sweep
from .contract import INSTALL_FLEET, MODEL_NAME
from .errors import ArtifactError, FmnistEdgeError, StoreError, first_line, require

READY = "READY"  # a version's marker: written last, lists the version's files
CLAIMS = ".claims"  # <uri>/fmnist/.claims/<N>: number N taken by one publisher, created only if absent, kept
INDEX = "index.json"  # <uri>/fmnist/index.json: {"model": ..., "versions": [the READY versions, oldest first]}
STAGE = ".staging-"  # a version being uploaded; kiosks only look at numbered prefixes with READY
DOWNLOAD = ".download-"  # a version being downloaded into the cache
STALE_S = 3600  # a staging prefix of another host, or a numbered one without READY, counts as abandoned after this
CLAIM_TRIES = 20  # numbers tried in a row before a publish gives up
SCHEMES = ("s3", "gs", "file", "https", "http")
READ_ONLY = ("https", "http")  # served by plain HTTP servers: read through index.json, never written
HTTP_CONNECT_S, HTTP_READ_S = 3, 30  # seconds: connecting, and waiting for the next bytes of an answer


def is_remote(uri) -> bool:
    """True for a URI with a scheme (s3://, gs://, file://, https://) rather than a local path."""
    return isinstance(uri, str) and "://" in uri


def check_scheme(uri: str) -> str:
    """The scheme of `uri`; StoreError for one not supported."""
    scheme = uri.split("://", 1)[0]
    if scheme not in SCHEMES:
        raise StoreError(f"{uri}: unsupported store {scheme}://; use one of {', '.join(s + '://' for s in SCHEMES)} or a folder")
    return scheme


def check_writable(uri: str) -> str:
    """The scheme of `uri` if `publish` can write there; StoreError for an HTTP server, which is read-only."""
    scheme = check_scheme(uri)
    if scheme in READ_ONLY:
        raise StoreError(f"{uri} is read-only: publish to the folder or bucket the server serves")
    return scheme


def _filesystem(uri: str):
    """(fsspec filesystem, the repository's root path in it) for `uri`, configured from the standard variables."""
    scheme = check_scheme(uri)
    fsspec = require("fsspec", INSTALL_FLEET)
    options: dict = {"skip_instance_cache": True}
    if scheme in READ_ONLY:
        aiohttp = require("aiohttp", INSTALL_FLEET)
        if scheme == "https":
            import ssl

            options["ssl"] = ssl.create_default_context()  # now, so SSL_CERT_FILE is read whenever aiohttp was imported
        options["client_kwargs"] = {"timeout": aiohttp.ClientTimeout(sock_connect=HTTP_CONNECT_S, sock_read=HTTP_READ_S)}
        return fsspec.filesystem(scheme, **options), uri.rstrip("/")
    if scheme == "s3":
        require("s3fs", INSTALL_FLEET)
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        options.update(use_listings_cache=False, config_kwargs={
            "connect_timeout": 3, "read_timeout": 10, "retries": {"total_max_attempts": 2}})
        if endpoint:
            options["client_kwargs"] = {"endpoint_url": endpoint}
    elif scheme == "gs":
        require("gcsfs", INSTALL_FLEET)
        options["use_listings_cache"] = False
        if os.environ.get("STORAGE_EMULATOR_HOST"):
            from gcsfs.core import GCSFileSystem  # the plain JSON-API client: emulators answer no gRPC bucket lookups

            fs = GCSFileSystem(token="anon", **options)
            return fs, fs._strip_protocol(uri).rstrip("/")
    fs, root = fsspec.core.url_to_fs(uri, **options)
    return fs, root.rstrip("/")


def _is_local(fs) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocols


def _fail(uri: str, what: str, exc: BaseException) -> StoreError:
    return StoreError(f"cannot {what} {uri}: {type(exc).__name__}: {first_line(exc)}")


def _names(fs, path: str) -> list[str]:
    try:
        return [e.rstrip("/").rsplit("/", 1)[-1] for e in fs.ls(path, detail=False)]
    except FileNotFoundError:
        return []


def ready_versions(fs, base: str) -> list[int]:
    """The numbered versions under `base` that have their READY marker, oldest first (one listing)."""
    found = (p.rstrip("/").rsplit("/", 2)[-2] for p in fs.glob(f"{base}/*/{READY}"))
    return sorted(int(n) for n in found if n.isdigit())


def _age_s(fs, path: str) -> float | None:
    """Seconds since the newest object under `path` was written; None when the store does not say."""
    stamps = []
    for info in fs.find(path, withdirs=True, detail=True).values():
        stamp = info.get("LastModified") or info.get("mtime")  # s3fs: datetime; local: float; gcsfs: datetime
        stamp = stamp.timestamp() if hasattr(stamp, "timestamp") else stamp
        if isinstance(stamp, (int, float)):
            stamps.append(float(stamp))
    return time.time() - max(stamps) if stamps else None


def _abandoned(fs, path: str) -> bool:
    try:
        age = _age_s(fs, path)
    except (OSError, ValueError):
        return False
    return age is not None and age > STALE_S


def _sweep_remote(fs, base: str) -> list[str]:
    """Remove what killed uploads left: staging prefixes of a dead writer on this host, and staging prefixes or
    numbered prefixes without READY (killed between claim and READY) whose newest object is older than STALE_S."""
    ready = set(ready_versions(fs, base))
    gone = []
    for name in _names(fs, base):
        path = f"{base}/{name}"
        if name.startswith(STAGE):
            stale = _owner_dead(name, STAGE) or _abandoned(fs, path)
        elif name.isdigit() and int(name) not in ready:
            stale = _abandoned(fs, path)
        else:
            continue
        if stale:
            fs.rm(path, recursive=True)
            gone.append(name)
    return gone


def _create(fs, path: str, data: bytes) -> None:
    """Write `path` only if nothing is there yet, in one step of the store; FileExistsError otherwise."""
    if _is_local(fs):
        with fs.open(path, "xb") as f:  # O_EXCL
            f.write(data)
    else:
        fs.pipe_file(path, data, mode="create")  # S3: If-None-Match: *; GCS: ifGenerationMatch=0


def _claim(fs, base: str, token: bytes) -> int:
    """Take the first version number above every version and claim so far, by creating its claim."""
    taken = [*_names(fs, base), *_names(fs, f"{base}/{CLAIMS}")]
    number = max((int(n) for n in taken if n.isdigit()), default=0) + 1
    fs.makedirs(f"{base}/{CLAIMS}", exist_ok=True)  # a folder for file://; nothing on object stores
    for _ in range(CLAIM_TRIES):
        try:
            _create(fs, f"{base}/{CLAIMS}/{number}", token)
            return number
        except FileExistsError:  # another publisher took it first
            number += 1
    raise StoreError(f"{base}: found no free version number in {CLAIM_TRIES} tries; is a publish looping?")


def _write_index(fs, base: str) -> list[int]:
    """(Re)write index.json with every READY version, until a listing after the write agrees with it: then a
    publisher whose READY came later writes after this one, so the last index written misses no version."""
    versions = ready_versions(fs, base)
    for _ in range(5):
        body = (json.dumps({"model": MODEL_NAME, "versions": versions}) + "\n").encode()
        if _is_local(fs):  # a temporary name renamed into place: a reader never sees half of it
            tmp = f"{base}/.{INDEX}.tmp-{owner_tag()}-{uuid.uuid4().hex[:8]}"
            fs.pipe_file(tmp, body)
            os.replace(tmp, f"{base}/{INDEX}")
        else:  # one PUT: objects appear whole
            fs.pipe_file(f"{base}/{INDEX}", body)
        now = ready_versions(fs, base)
        if now == versions:
            break
        versions = now
    return versions


def upload(version_dir: Path, uri: str) -> str:
    """Put the local version folder `version_dir` into the store at `uri` as its next version; returns its URI.
    The files go under a hidden staging prefix first, then are copied into <N>/ (N claimed first) with READY
    last; index.json is rewritten after it."""
    check_writable(uri)
    fs, root = _filesystem(uri)
    base = f"{root}/{MODEL_NAME}"
    files = sorted(p.name for p in Path(version_dir).iterdir() if p.is_file())
    token = f"{owner_tag()}-{uuid.uuid4().hex}\n".encode()
    try:
        fs.makedirs(base, exist_ok=True)
        _sweep_remote(fs, base)
        stage = f"{base}/{STAGE}{owner_tag()}-{uuid.uuid4().hex[:8]}"
        fs.makedirs(stage, exist_ok=True)  # a folder for file://; nothing on object stores
        for name in files:
            fs.put_file(str(Path(version_dir) / name), f"{stage}/{name}")
        faults.point("store-staged")
        number = _claim(fs, base, token)
        target = f"{base}/{number}"
        fs.makedirs(target, exist_ok=True)
        for name in files:
            fs.copy(f"{stage}/{name}", f"{target}/{name}")
        faults.point("store-copied")
        if fs.cat_file(f"{base}/{CLAIMS}/{number}") != token:  # only on a store that ignores create-if-absent
            raise StoreError(f"{uri}: another publish took version {number} while this one copied its files; publish again")
        fs.pipe_file(f"{target}/{READY}", ("\n".join(files) + "\n").encode())  # last: now kiosks see it
        fs.rm(stage, recursive=True)
        _write_index(fs, base)
    except FmnistEdgeError:
        raise
    except Exception as exc:  # noqa: BLE001 - fsspec back ends raise their own types; one line for the user
        raise _fail(uri, "publish to", exc) from None
    return f"{uri.split('://', 1)[0]}://{target}"


def default_cache(uri: str) -> Path:
    """~/.cache/fmnist-edge/<the URI, made a folder name> (XDG_CACHE_HOME respected)."""
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return home / "fmnist-edge" / re.sub(r"[^A-Za-z0-9._-]+", "_", uri).strip("_")


def _indexed_versions(fs, base: str) -> list[int]:
    """The versions index.json lists: how a kiosk finds them on a server that cannot list."""
    try:
        body = fs.cat_file(f"{base}/{INDEX}")
    except FileNotFoundError:
        raise StoreError(f"{base}/{INDEX} is missing: publish writes it; is this the folder publish wrote to?") from None
    try:
        return sorted(int(n) for n in json.loads(body)["versions"])
    except (ValueError, TypeError, KeyError) as exc:
        raise StoreError(f"{base}/{INDEX} is not a version index ({type(exc).__name__}: {first_line(exc)})") from None


class Mirror:
    """A local cache of the store at `uri`: cache/fmnist/<N>/ holds the versions downloaded whole."""

    def __init__(self, uri: str, cache: str | os.PathLike | None = None):
        self.indexed = check_scheme(uri) in READ_ONLY  # versions from index.json, not from a listing
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

    def _versions(self, fs, remote: str) -> list[int]:
        """The store's READY versions from index.json: one small read per poll, however many versions the store
        holds (a listing costs a request per page, and s3fs' glob more); a listable store without an index (one
        that publishes older than the index wrote) is listed."""
        try:
            return _indexed_versions(fs, remote)
        except StoreError:
            if self.indexed:
                raise
            return ready_versions(fs, remote)

    def sync(self, older_than: int | None = None) -> int | None:
        """Download the newest remote version with READY if it is newer than every cached one (with `older_than`:
        the newest below that number that is not cached); returns its number, or None when there was nothing to
        download. StoreError when the store cannot be read."""
        try:
            if self._fs is None:
                self._fs, self._root = _filesystem(self.uri)
            fs, remote = self._fs, f"{self._root}/{MODEL_NAME}"
            ready = self._versions(fs, remote)
            if older_than is not None:
                ready = [n for n in ready if n < older_than and n not in self.cached()]
            elif ready and ready[-1] <= max(self.cached(), default=0):
                ready = []
            if not ready:
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
