"""A persistent store of generated rewrites, so that re-running a rewriter makes no second model call."""
import contextlib
import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Dict, Iterable, Iterator, Optional, Tuple, Union

from .._errors import DiscoError
from .._utils import cache_dir


def default_cache_path() -> Path:
    return cache_dir("rewrites") / "rewrites.sqlite"


def cache_key(*parts) -> str:
    """A stable key for any json-serialisable parts (model id, settings, the full model input)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


class RewriteCache:
    """An sqlite table ``key -> generation`` (raw model output, before junk checks and rewrite policy).

    Each call opens its own connection, so the cache is safe to share between processes.
    """

    def __init__(self, path: Union[str, Path, None] = None):
        self.path = Path(path) if path is not None else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS rewrites (key TEXT PRIMARY KEY, generation TEXT NOT NULL)")
            columns = {row[1] for row in db.execute("PRAGMA table_info(rewrites)")}
            if "seconds" not in columns:  # model time per generation, so cached rewrites still report their cost
                db.execute("ALTER TABLE rewrites ADD COLUMN seconds REAL")

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            db = sqlite3.connect(str(self.path), timeout=60)
        except sqlite3.Error as e:
            raise _cache_error(self.path, e) from e
        try:
            with db:  # commits on success, rolls back on error
                yield db
        except sqlite3.DatabaseError as e:  # not a database, damaged, locked, read-only, disk full...
            raise _cache_error(self.path, e) from e
        finally:
            db.close()

    def get_many(self, keys: Iterable[str]) -> Dict[str, str]:
        """Cached generations of ``keys`` (those present)."""
        return {k: generation for k, (generation, _) in self.get_many_timed(keys).items()}

    def get_many_timed(self, keys: Iterable[str]) -> Dict[str, Tuple[str, Optional[float]]]:
        """Cached ``(generation, seconds the model took)`` of ``keys`` (seconds is None if not recorded)."""
        keys = list(dict.fromkeys(keys))
        found: Dict[str, Tuple[str, Optional[float]]] = {}
        with self._connect() as db:
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                rows = db.execute("SELECT key, generation, seconds FROM rewrites WHERE key IN "
                                  f"({','.join('?' * len(chunk))})", chunk)
                found.update((k, (g, sec)) for k, g, sec in rows.fetchall())
        return found

    def put_many(self, items: Dict[str, str], seconds: Optional[float] = None) -> None:
        """Store generations; ``seconds``: the model time of each one."""
        with self._connect() as db:
            db.executemany("INSERT OR REPLACE INTO rewrites (key, generation, seconds) VALUES (?, ?, ?)",
                           [(k, g, seconds) for k, g in items.items()])

    def __len__(self) -> int:
        with self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM rewrites").fetchone()[0]


def _cache_error(path: Path, e: sqlite3.Error) -> DiscoError:
    damaged = "not a database" in str(e) or "malformed" in str(e)
    what = ("move it away (it is not deleted for you) or pass another cache file" if damaged else
            "check that the file and its folder are writable and the disk has space")
    return DiscoError(f"the rewrite cache {path} cannot be used ({e}): {what}")


def open_cache(cache: Union[bool, str, Path, RewriteCache, None]) -> Optional[RewriteCache]:
    """``True`` -> the user cache file, ``False``/``None`` -> no cache, a path -> that sqlite file."""
    if cache is None or cache is False:
        return None
    if cache is True:
        return RewriteCache()
    if isinstance(cache, RewriteCache):
        return cache
    return RewriteCache(cache)
