"""Output folders: what wrote them, one writer at a time, a commit that never replaces, no deletion of others' files.

- marker: every folder the project creates holds ``.pyterrier_disco.json`` (``{"type": kind, "files": [...]}``):
  a folder is *ours* when its marker names the expected kind and it holds nothing but the entries the marker
  lists (or the caller's patterns allow). Only such a folder is ever replaced or emptied; a user's note put
  inside it, or any folder without the marker, is refused with ``FileExistsError``.
- lock: ``.<name>.lock`` beside the output is held with ``flock`` while a process writes the output (the kernel
  releases it when the process dies, even by ``kill -9``); a second writer fails at once, naming the output.
- commit: the finished temporary folder is renamed onto the output with ``RENAME_NOREPLACE`` (Linux), so a
  folder that appeared at the output meanwhile is never replaced.
- stale: ``.<name>.*.tmp`` folders beside the output that hold our marker are leftovers of an interrupted
  writer; they are removed under the lock.
"""
import contextlib
import ctypes
import errno
import glob
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

try:
    import fcntl
except ImportError:  # not on Windows: no locking there
    fcntl = None

MARKER = ".pyterrier_disco.json"
_HELD: Dict[str, int] = {}  # locks this process holds (path -> depth), so nested writers of one output nest


def write_marker(folder, kind: str, **info) -> None:
    tmp = Path(folder, MARKER + ".tmp")
    tmp.write_text(json.dumps({"type": kind, **info}, sort_keys=True))
    os.replace(tmp, Path(folder, MARKER))


def read_marker(folder) -> Optional[dict]:
    try:
        marker = json.loads(Path(folder, MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def foreign_entries(folder, allowed: Optional[Callable[[str], bool]] = None) -> Optional[List[str]]:
    """The entries of ``folder`` the project did not write (``[]``: all ours), or None when it has no marker."""
    marker = read_marker(folder)
    if marker is None:
        return None
    listed = set(marker.get("files") or ()) | {MARKER}
    return sorted(p.name for p in Path(folder).iterdir()
                  if p.name not in listed and not (allowed is not None and allowed(p.name)))


def is_ours(folder, kinds, allowed: Optional[Callable[[str], bool]] = None) -> bool:
    """True when ``folder`` carries our marker of one of ``kinds`` and holds only what we wrote."""
    marker = read_marker(folder)
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    return marker is not None and marker.get("type") in kinds and foreign_entries(folder, allowed) == []


def refuse_foreign(path: Path, what: str) -> None:
    """The error for an existing output that is not ours to replace."""
    foreign = foreign_entries(path) if path.is_dir() else None
    if foreign:
        detail = f"it holds files pyterrier_disco did not write ({', '.join(foreign[:5])})"
    elif path.is_dir() and any(path.iterdir()):
        detail = f"it was not written by pyterrier_disco as {what}"
    else:
        detail = "it is not a folder pyterrier_disco wrote"
    raise FileExistsError(f"{path} exists and {detail}: it is never deleted; choose another output or remove "
                          "it yourself")


@contextlib.contextmanager
def output_lock(path, wait: bool = False) -> Iterator[None]:
    """Hold ``.<name>.lock`` beside ``path`` (exclusive ``flock``). Busy: ``FileExistsError`` naming the
    output, or with ``wait`` block until the other writer is done. Nested uses in one process nest."""
    path = Path(os.path.abspath(path))
    lock = path.parent / f".{path.name}.lock"
    key = str(lock)
    if fcntl is None or key in _HELD:
        _HELD[key] = _HELD.get(key, 0) + 1
        try:
            yield
        finally:
            _HELD[key] -= 1
            if not _HELD[key]:
                del _HELD[key]
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            raise FileExistsError(f"{path} is being written by another process (it holds {lock}); wait for it "
                                  "to finish or choose another output") from None
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:  # the previous holder removed it after we opened it: take a fresh one
            same = False
        if same:
            break
        os.close(fd)
    _HELD[key] = 1
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        del _HELD[key]
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


def _libc_renameat2():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn


_RENAMEAT2 = _libc_renameat2()
_AT_FDCWD, _RENAME_NOREPLACE = -100, 1


def rename_noreplace(src, dst) -> None:
    """Rename ``src`` to ``dst``; ``FileExistsError`` if ``dst`` exists, even as an empty folder (atomically
    with Linux's ``renameat2``; elsewhere a check just before the rename)."""
    if _RENAMEAT2 is not None:
        if _RENAMEAT2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):  # else: the file system lacks the flag
            raise OSError(err, os.strerror(err), str(dst))
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst))
    os.rename(src, dst)


def remove_stale(path) -> None:
    """Remove ``.<name>.*.tmp`` folders beside ``path`` that hold our marker (call under the lock)."""
    path = Path(os.path.abspath(path))
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        if tmp.is_dir() and not tmp.is_symlink() and read_marker(tmp) is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_dir(path, overwrite: bool = False, *, kind: str = "folder",
               ours: Optional[Callable[[Path], bool]] = None) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``, renamed to ``path`` only when the block succeeds.

    The output's lock is held throughout. An existing ``path`` (other than an empty folder) raises
    ``FileExistsError`` unless ``overwrite`` and it is ours (``ours(path)``, default: our marker of ``kind`` and
    nothing else in it); it is then replaced at the commit. Something that appears at ``path`` while the block
    runs is never replaced: the commit fails naming it and where the new folder was left. The marker (listing the
    entries written) is added at the end.
    """
    path = Path(os.path.abspath(path))
    ours = ours or (lambda p: is_ours(p, kind))
    with output_lock(path):
        empty = path.is_dir() and not path.is_symlink() and not any(path.iterdir())  # nothing to lose: used
        if os.path.lexists(path) and not empty:  # before any work
            if not overwrite:
                raise FileExistsError(f"{path} already exists; pass overwrite=True (--overwrite) to replace it")
            if not path.is_dir() or path.is_symlink() or not ours(path):
                refuse_foreign(path, kind)
        remove_stale(path)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        committed = False
        try:
            os.chmod(tmp, 0o777 & ~_umask())
            write_marker(tmp, kind, writing=True)
            yield tmp
            info = {k: v for k, v in (read_marker(tmp) or {}).items() if k not in ("type", "writing")}
            write_marker(tmp, kind, **{**info, "files": sorted(p.name for p in tmp.iterdir() if p.name != MARKER)})
            old = None
            if empty:
                with contextlib.suppress(OSError):  # still empty: it goes; filled meanwhile: kept, see below
                    os.rmdir(path)
            elif os.path.lexists(path) and overwrite and path.is_dir() and not path.is_symlink() and ours(path):
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
                write_marker(old, kind)  # remove_stale recognises it if we die before deleting it
                os.rename(path, old / "replaced")
            try:
                rename_noreplace(tmp, path)
            except FileExistsError:
                kept = Path(tempfile.mkdtemp(prefix=f"{path.name}.new-", dir=path.parent))
                os.rename(tmp, kept / path.name)
                raise FileExistsError(f"{path} appeared while it was being written and was not replaced; the new "
                                      f"output is in {kept / path.name}" +
                                      (f" (the one it replaced is in {old / 'replaced'})" if old else "")) from None
            committed = True
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            if not committed and tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
