"""Minimal ir_datasets handlers over python callables, and the constituent that carries conversation frames."""
from typing import Callable, Iterable, List, NamedTuple, Optional

from ir_datasets.formats import BaseDocs, BaseQrels, BaseQueries, TrecQrel

from ._files import DocsUnavailableError


class TextDoc(NamedTuple):
    """A passage with an id and its text."""
    doc_id: str
    text: str

    def default_text(self):
        return self.text


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


class UnavailableDocs(IterDocs):
    """A docs handler whose every access raises :class:`DocsUnavailableError` with ``message``."""

    def __init__(self, cls, message: str, namespace: str):
        super().__init__(cls, self._unavailable, namespace)
        self._message = message

    def _unavailable(self):
        raise DocsUnavailableError(self._message)

    def docs_store(self, field="doc_id"):
        self._unavailable()


class ConversationSource:
    """Dataset constituent that lets :func:`~pyterrier_disco.datasets.conversations` build frames from any
    dataset built here. ``corpus`` names the document collection: datasets that share one (the splits of a
    collection) share the name, which namespaces their docnos when datasets are pooled."""

    def __init__(self, rows: Callable[[], List[dict]], corpus: str):
        self._rows, self._corpus = rows, corpus

    def disco_conversation_rows(self) -> List[dict]:
        return self._rows()

    def disco_corpus(self) -> str:
        return self._corpus
