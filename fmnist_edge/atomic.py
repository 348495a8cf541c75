"""Atomic writes: a file or folder appears complete under its final name or not at all, whatever kills the writer.

A folder is filled under a hidden staging name beside it and swapped in with one rename(2) call (renameat2's
RENAME_EXCHANGE where the kernel has it), after its files are fsync'ed. One writer at a time holds a folder
(an flock on `.NAME.lock` beside it); a second one is refused in one line. Staging names carry the host and the
writer's pid (`.NAME.tmp-HOST-PID-*`), so the next writer removes what a killed one left, and only that.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from . import faults
from .errors import ArtifactError, first_line

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _host() -> str:
    return "".join(c if c.isalnum() else "_" for c in socket.gethostname())[:32] or "host"


def owner_tag() -> str:
    """HOST-PID: who owns a staging name (sweep() removes it once that process is gone)."""
    return f"{_host()}-{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _owner_dead(name: str, prefix: str) -> bool:
    """True for `prefix` + 'HOST-PID-...' names written on this host by a process that no longer runs."""
    rest = name[len(prefix):]
    host, _, rest = rest.partition("-")
    pid = rest.split("-", 1)[0]
    return host == _host() and pid.isdigit() and not _alive(int(pid))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def sweep(folder: Path, prefixes: tuple[str, ...]) -> list[Path]:
    """Remove the entries of `folder` named `prefix`HOST-PID-* whose writer is dead; returns what went."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        for prefix in prefixes:
            if entry.name.startswith(prefix) and _owner_dead(entry.name, prefix):
                _remove(Path(entry.path))
                removed.append(Path(entry.path))
                break
    return removed


def reason(exc: OSError) -> str:
    """What an OSError of a write means to a user, with the fix."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on the device; free some space or choose another --out"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"{exc.strerror}; choose a writable --out"
    return exc.strerror or str(exc)


def write_error(path, exc: BaseException) -> ArtifactError:
    """The one-line error for a failed write of `path` by any library (TensorFlow, OpenVINO and ONNX report a
    full disk in their own exception types, with the OS's words inside)."""
    if isinstance(exc, OSError):
        return ArtifactError(f"cannot write {path}: {reason(exc)}")
    text = str(exc)
    for err in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
        if os.strerror(err) in text:
            return ArtifactError(f"cannot write {path}: {reason(OSError(err, os.strerror(err)))}")
    return ArtifactError(f"cannot write {path}: {first_line(exc)}")


def _check_parent(path: Path) -> None:
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise ArtifactError(f"cannot write {path}: {parent} is a file, not a folder; choose another --out")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArtifactError(f"cannot create folder {parent}: {reason(exc)}") from None


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            if not os.path.islink(os.path.join(folder, name)):
                _fsync(Path(folder, name))
        _fsync(Path(folder))


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it is fsync'ed and renamed onto `path`, on error removed."""
    path = Path(path)
    _check_parent(path)
    prefix = f".{path.name}.tmp-"
    sweep(path.parent, (prefix,))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{prefix}{owner_tag()}-", suffix=suffix or path.suffix, dir=path.parent)
    except OSError as exc:
        raise ArtifactError(f"cannot write in {path.parent}: {reason(exc)}") from None
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a finished file gets the usual mode
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _fsync(tmp_path)
        os.replace(tmp_path, path)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        raise ArtifactError(f"cannot write {path}: {reason(exc)}") from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


@contextlib.contextmanager
def writer_lock(path: Path) -> Iterator[None]:
    """Hold `.NAME.lock` beside `path` (flock, released by the kernel when the holder dies); a folder that
    another process is writing is refused in one line, naming that process."""
    import fcntl

    lock = path.parent / f".{path.name}.lock"
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
    except OSError as exc:
        raise ArtifactError(f"cannot write in {path.parent}: {reason(exc)}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise ArtifactError(f"cannot lock {lock}: {exc.strerror or exc}") from None
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            raise ArtifactError(f"{path} is being written by {holder}; wait for it to finish, or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"fmnist-edge (pid {os.getpid()} on {socket.gethostname()})\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one system call (Linux renameat2 RENAME_EXCHANGE); False where that is not available."""
    fn = getattr(_libc(), "renameat2", None) if EXCHANGE else None
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):  # old kernel, or a file system without it
        return False
    raise OSError(err, os.strerror(err), str(b))


EXCHANGE = True  # False: always the two-rename commit (what a system without renameat2 gets)


def _libc():
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _carry(src: Path, dst: Path, keep: Callable[[str], bool]) -> None:
    """Hard-link (copy where links fail) the entries of `src` that `keep` names into `dst`."""

    def link(s, d):
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    for entry in os.scandir(src):
        if not keep(entry.name):
            continue
        target = dst / entry.name
        if entry.is_dir(follow_symlinks=False):
            shutil.copytree(entry.path, target, symlinks=True, copy_function=link)
        elif entry.is_symlink():
            os.symlink(os.readlink(entry.path), target)
        else:
            link(entry.path, target)


def _recover(path: Path, old_prefix: str) -> None:
    """A writer killed between the two renames of the fallback commit left `path` missing and the previous
    folder under its old name: put it back."""
    if path.exists():
        return
    for name in sorted(os.listdir(path.parent)):
        if name.startswith(old_prefix) and _owner_dead(name, old_prefix):
            os.replace(path.parent / name, path)
            return


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, keep: Callable[[str], bool] | None = None) -> Iterator[Path]:
    """Yield a staging folder next to `path`; on success it replaces `path` whole, on error it is removed.

    `keep(name)`: entries of the current `path` to carry into the staging folder first (hard links), so a
    writer can replace some entries of a folder and leave the rest as they were."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ArtifactError(f"cannot write folder {path}: a file of that name exists; remove it or choose another --out")
    _check_parent(path)
    tmp_prefix, old_prefix = f".{path.name}.tmp-", f".{path.name}.old-"
    with writer_lock(path):
        _recover(path, old_prefix)
        sweep(path.parent, (tmp_prefix, old_prefix))
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f"{tmp_prefix}{owner_tag()}-", dir=path.parent))
            os.chmod(tmp, 0o777 & ~_umask())
            if keep is not None and path.is_dir():
                _carry(path, tmp, keep)
        except OSError as exc:
            if "tmp" in locals():
                shutil.rmtree(tmp, ignore_errors=True)
            raise ArtifactError(f"cannot write in {path.parent}: {reason(exc)}") from None
        try:
            yield tmp
            faults.point("atomic-dir-staged")
            _fsync_tree(tmp)
            _commit(tmp, path, old_prefix)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if exc.errno == errno.EXDEV:
                raise ArtifactError(f"cannot write {path}: it is a mount point; give a folder inside it") from None
            raise ArtifactError(f"cannot write {path}: {reason(exc)}") from None
        except ArtifactError as exc:  # a write inside the folder: name the folder the user asked for
            shutil.rmtree(tmp, ignore_errors=True)
            raise ArtifactError(str(exc).replace(str(tmp), str(path))) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _commit(tmp: Path, path: Path, old_prefix: str) -> None:
    """Put `tmp` at `path`. With an existing `path`: one exchange, or two renames that _recover() completes."""
    if not path.exists():
        os.rename(tmp, path)
    elif exchange(tmp, path):
        faults.point("atomic-dir-swapped")
        shutil.rmtree(tmp, ignore_errors=True)  # now the previous folder
    else:
        old = Path(tempfile.mkdtemp(prefix=f"{old_prefix}{owner_tag()}-", dir=path.parent))
        os.replace(path, old)
        faults.point("atomic-dir-half-renamed")
        os.rename(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    _fsync(path.parent)
