"""Official data files found in ``$IR_DATASETS_HOME/<dataset>/`` or downloaded there, and small ir_datasets handlers."""
import contextlib
import json
import os
import warnings
import zipfile
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, NamedTuple, Optional, Sequence

from ir_datasets.formats import BaseDocs, BaseQrels, BaseQueries, TrecQrel
from ir_datasets.util import Cache, RequestsDownload

from .._errors import CorruptFileError


class MissingOfficialFileError(FileNotFoundError):
    """An official data file is neither in its folder nor downloadable."""


class DocsUnavailableError(RuntimeError):
    """The document collection of a dataset cannot be provided by this package."""


def _offline() -> bool:
    return os.environ.get("DISCO_OFFLINE", "").lower() in ("1", "true", "yes")


class OfficialFile:
    """One official file, kept as ``$IR_DATASETS_HOME/<folder>/<name>``.

    When absent, it is downloaded from ``urls`` (first that works) through ir_datasets'
    :class:`~ir_datasets.util.Cache` (a temporary file renamed on success, so a failed download
    leaves nothing behind). ``DISCO_OFFLINE=1`` skips the download attempt.
    """

    def __init__(self, folder: str, name: str, urls: Sequence[str] = ()):
        self.folder, self.name, self.urls = folder, name, list(urls)

    @property
    def local_path(self) -> Path:
        # computed on each use: IR_DATASETS_HOME may change after import (tests, notebooks)
        return Path(os.environ.get("IR_DATASETS_HOME", Path.home() / ".ir_datasets")) / self.folder / self.name

    def exists(self) -> bool:
        return self.local_path.exists()

    def path(self, force: bool = True) -> Path:
        target = self.local_path
        if target.exists() or not force:
            return target
        errors = []
        if not _offline():
            for url in self.urls:
                try:
                    return Cache(RequestsDownload(url), target).path()
                except Exception as e:  # noqa: BLE001 - any failure means "try the next source"
                    errors.append(f"{url}: {e}")
        raise MissingOfficialFileError(self.missing_message(errors))

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


# ---- minimal ir_datasets handlers over python callables -------------------------------------------------------

class ListQueries(BaseQueries):
    def __init__(self, cls, records: Callable[[], Iterable], namespace: str):
        self._cls, self._records, self._namespace = cls, records, namespace

    def queries_iter(self):
        return iter(self._records())

    def queries_cls(self):
        return self._cls

    def queries_namespace(self):
        return self._namespace

    def queries_lang(self):
        return "en"


class ListQrels(BaseQrels):
    def __init__(self, records: Callable[[], Iterable[TrecQrel]], defs: dict):
        self._records, self._defs = records, defs

    def qrels_iter(self):
        return iter(self._records())

    def qrels_cls(self):
        return TrecQrel

    def qrels_defs(self):
        return self._defs


class _DictDocstore:
    def __init__(self, docs):
        self._docs = {d.doc_id: d for d in docs}

    def get(self, doc_id, field=None):
        doc = self._docs[doc_id]
        return doc if field is None else getattr(doc, field)

    def get_many(self, doc_ids, field=None):
        return {d: self.get(d, field) for d in doc_ids if d in self._docs}

    def get_many_iter(self, doc_ids):
        return (self._docs[d] for d in doc_ids if d in self._docs)

    def __iter__(self):
        return iter(self._docs.values())

    def count(self):
        return len(self._docs)


class IterDocs(BaseDocs):
    """Documents from a generator function; ``in_memory`` collections also get a dict docstore and exact count."""

    def __init__(self, cls, records: Callable[[], Iterable], namespace: str, count: Optional[int] = None,
                 in_memory: bool = False):
        self._cls, self._records, self._namespace = cls, records, namespace
        self._count, self._in_memory = count, in_memory

    def docs_iter(self):
        return iter(self._records())

    def docs_cls(self):
        return self._cls

    def docs_count(self):
        if self._in_memory:
            return sum(1 for _ in self._records())
        return self._count

    def docs_store(self, field="doc_id"):
        if not self._in_memory:
            raise NotImplementedError(f"{self._namespace}: no docstore for this large collection; iterate docs_iter()")
        return _DictDocstore(self._records())

    def docs_namespace(self):
        return self._namespace

    def docs_lang(self):
        return "en"


class UnavailableDocs(BaseDocs):
    """A docs handler whose every access raises :class:`DocsUnavailableError` with ``message``."""

    def __init__(self, cls, message: str, namespace: str):
        self._cls, self._message, self._namespace = cls, message, namespace

    def docs_iter(self):
        raise DocsUnavailableError(self._message)

    def docs_store(self, field="doc_id"):
        raise DocsUnavailableError(self._message)

    def docs_count(self):
        return None

    def docs_cls(self):
        return self._cls

    def docs_namespace(self):
        return self._namespace

    def docs_lang(self):
        return "en"


class ConversationSource:
    """Dataset constituent that lets :func:`conversations` build frames from any dataset built here."""

    def __init__(self, rows: Callable[[], List[dict]]):
        self._rows = rows

    def disco_conversation_rows(self) -> List[dict]:
        return self._rows()


class Turn(NamedTuple):
    """Parsed turn shared by the query records and the conversation frames."""
    qid: str
    conversation_id: str
    turn: int
    query: str
    history: tuple  # of (role, text)
    extra: dict     # dataset-specific columns: rewrites, response, ptkb, ...


def history_dicts(history) -> List[dict]:
    return [{"role": role, "text": text} for role, text in history]


def check_utterance(value, where: str) -> Optional[str]:
    """The utterance as str, or None (with a warning naming ``where``) when the turn is malformed."""
    if not isinstance(value, str):
        warnings.warn(f"skipping malformed turn {where}: missing or non-text utterance ({value!r})", stacklevel=3)
        return None
    if not value.strip():
        warnings.warn(f"turn {where} has an empty utterance; kept (its history still carries context)", stacklevel=3)
    return value


def binary_qrels(pairs: Iterable) -> Iterator[TrecQrel]:
    seen = set()
    for qid, docno in pairs:
        if (qid, docno) not in seen:
            seen.add((qid, docno))
            yield TrecQrel(qid, docno, 1, "0")


def context_history(context) -> tuple:
    """History from a QReCC/TopiOCQA ``Context`` list: ``[q1, a1, q2, a2, ...]`` alternates user and system."""
    return tuple(("user" if i % 2 == 0 else "system", str(text)) for i, text in enumerate(context or ()))


def qa_turns(records, label: str, extra) -> List[Turn]:
    """Turns of a TopiOCQA/QReCC-style file (``Conversation_no``, ``Turn_no``, ``Question``, ``Context``);
    ``extra(record)`` gives the dataset's other fields. Malformed turns are skipped with a warning."""
    turns = []
    for t in records:
        qid = f"{t.get('Conversation_no')}_{t.get('Turn_no')}"
        question = check_utterance(t.get("Question"), f"{qid} ({label})")
        if question is None:
            continue
        history = context_history(t.get("Context"))
        turns.append(Turn(qid, str(t.get("Conversation_no")), len(history) // 2, question, history, extra(t)))
    return turns
