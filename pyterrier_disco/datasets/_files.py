"""Official data files found in ``$IR_DATASETS_HOME/<folder>/`` or downloaded there, checked against
``downloads.json`` (official name, URLs, size and sha256, like ir_datasets' own ``downloads.json``)."""
import contextlib
import hashlib
import json
import os
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import List, Optional, Sequence

from .._errors import CorruptFileError
from .._utils import atomic_file

DOWNLOADS = Path(__file__).with_name("downloads.json")


class MissingOfficialFileError(FileNotFoundError):
    """An official data file is neither in its folder nor downloadable."""


class ChecksumError(ValueError):
    """An official data file (a local copy or a download) is not the expected one."""


class DocsUnavailableError(RuntimeError):
    """The document collection of a dataset cannot be provided by this package."""


def _flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")


def _offline() -> bool:
    return _flag("DISCO_OFFLINE")


@lru_cache(maxsize=None)
def downloads() -> dict:
    """``{folder: {official name: {"urls", "size", "sha256" | "md5", ...}}}`` from ``downloads.json``."""
    with open(DOWNLOADS, encoding="utf-8") as f:
        return {k: v for k, v in json.load(f).items() if not k.startswith("_")}


@lru_cache(maxsize=256)
def _digest(path: str, algorithm: str, size: int, mtime_ns: int) -> str:
    # keyed on size and mtime: a file is hashed once per process unless it changes
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class OfficialFile:
    """One official file, kept as ``$IR_DATASETS_HOME/<folder>/<name>`` and described in ``downloads.json``.

    When absent, it is downloaded from its URLs (first that works) to a temporary name, checked, then renamed,
    so a failed or wrong download leaves nothing behind. ``DISCO_OFFLINE=1`` skips the download attempt. A
    local copy is checked (size, then sha256 or md5, where ``downloads.json`` knows them) before its first use
    in a process; ``DISCO_SKIP_CHECKSUMS=1`` accepts a copy that differs (an edited or sliced file).
    """

    def __init__(self, folder: str, name: str, urls: Optional[Sequence[str]] = None,
                 expected: Optional[dict] = None):
        entry = downloads().get(folder, {}).get(name)
        if entry is None and (urls is None or expected is None):
            raise KeyError(f"{folder}/{name} is not described in {DOWNLOADS}")
        entry = entry or {}
        self.folder, self.name = folder, name
        self.urls = list(entry.get("urls", ()) if urls is None else urls)
        self.expected = {k: entry.get(k) for k in ("size", "sha256", "md5")} if expected is None else expected

    @property
    def local_path(self) -> Path:
        # computed on each use: IR_DATASETS_HOME may change after import (tests, notebooks)
        return Path(os.environ.get("IR_DATASETS_HOME", Path.home() / ".ir_datasets")) / self.folder / self.name

    def exists(self) -> bool:
        return self.local_path.exists()

    def path(self, force: bool = True) -> Path:
        target = self.local_path
        if target.exists():
            self.verify(target, "local copy")
            return target
        if not force:
            return target
        errors, wrong = [], []
        if not _offline():
            for url in self.urls:
                try:
                    return self._download(url, target)
                except ChecksumError as e:
                    wrong.append(str(e))
                except Exception as e:  # noqa: BLE001 - any failure means "try the next source"
                    errors.append(f"{url}: {e}")
        if wrong:
            raise ChecksumError("; ".join(wrong))
        raise MissingOfficialFileError(self.missing_message(errors))

    def _download(self, url: str, target: Path) -> Path:
        from ir_datasets.util import RequestsDownload

        with atomic_file(target, "wb") as out, RequestsDownload(url).stream() as src:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                out.write(chunk)
            out.flush()
            self.verify(Path(out.name), f"download from {url}")  # before the rename: a bad file never lands
        return target

    def verify(self, path: Path, what: str) -> None:
        """Raise :class:`ChecksumError` when ``path`` is not the expected file (unless checks are skipped)."""
        if _flag("DISCO_SKIP_CHECKSUMS"):
            return
        stat = path.stat()
        size = self.expected.get("size")
        if size is not None and stat.st_size != size:
            raise self._mismatch(path, what, "size", size, stat.st_size)
        for algorithm in ("sha256", "md5"):
            want = self.expected.get(algorithm)
            if want:
                got = _digest(str(path), algorithm, stat.st_size, stat.st_mtime_ns)
                if got != want:
                    raise self._mismatch(path, what, algorithm, want, got)
                return

    def _mismatch(self, path, what, field, want, got) -> ChecksumError:
        return ChecksumError(
            f"{self.name}: the {what} at {path} is not the official file ({field} expected {want}, got {got}); "
            f"replace it with the official file from {', '.join(self.urls) or 'its official source'} "
            "(or set DISCO_SKIP_CHECKSUMS=1 to use an edited copy)")

    def missing_message(self, errors: List[str] = ()) -> str:
        where = ", ".join(self.urls) if self.urls else "its official source"
        msg = (f"official file {self.name!r} not found: put it in the folder {self.local_path.parent} "
               f"(i.e. {self.local_path}); it can be downloaded from {where}")
        if errors:
            msg += " (download failed: " + "; ".join(errors) + ")"
        elif _offline():
            msg += " (DISCO_OFFLINE is set, no download attempted)"
        return msg

    @contextlib.contextmanager
    def stream(self):
        with open(self.path(), "rb") as f:
            yield f

    def load_json(self):
        with self.stream() as f:
            return _parse_json(f, self.path())

    def lines(self):
        """The file's non-empty lines, decoded."""
        with self.stream() as f:
            for line in f:
                line = line.decode("utf-8")
                if line.strip():
                    yield line


class ZipMemberFile:
    """A file inside an official zip archive; an already-extracted copy named ``name`` in the same folder wins."""

    def __init__(self, archive: OfficialFile, name: str):
        self.archive, self.name = archive, name
        self.extracted = OfficialFile(archive.folder, name)

    @contextlib.contextmanager
    def stream(self):
        if self.extracted.exists():
            with self.extracted.stream() as f:
                yield f
            return
        try:
            archive_path = self.archive.path()
        except MissingOfficialFileError as e:
            raise MissingOfficialFileError(
                f"official file {self.name!r} not found: put it (or the archive {self.archive.name!r} that holds it) "
                f"in the folder {self.extracted.local_path.parent}. {e}") from None
        with zipfile.ZipFile(archive_path) as zf:
            members = [m for m in zf.namelist() if Path(m).name == self.name]
            if not members:
                raise MissingOfficialFileError(f"{self.name!r} is not in the archive {archive_path}")
            with zf.open(members[0]) as f:
                yield f

    def load_json(self):
        with self.stream() as f:
            return _parse_json(f, f"{self.name} (in {self.archive.name})")


def _parse_json(stream, where):
    try:
        return json.load(stream)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptFileError(f"{where} is not valid JSON ({e}): replace it with the official file") from e
