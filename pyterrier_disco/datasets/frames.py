"""Conversation frames, qrels, documents and document lookup of one dataset or of several pooled together.

Every function takes a dataset id (``"ikat/2023/train"``, ``"irds:..."``, or a prefix with ``split=``), an
ir_datasets Dataset, a PyTerrier dataset from ``pt.get_dataset('irds:...')``, or **several ids** (a list, or one
comma-separated string). Several ids are pooled: qids become ``"<dataset id>::<qid>"`` and docnos
``"<corpus>::<docno>"``, where the corpus is the document collection the dataset uses (the splits of one
collection share it, e.g. ``ikat/2023`` for both iKAT 2023 splits, so a pooled corpus holds each document once;
a ``/topic-passages`` variant is its own corpus). :func:`split_id` reverses either. A single dataset keeps its
own ids unless ``namespace=True``; ``namespace=False`` keeps them in a pool (then they may collide).
"""
from typing import Iterator, List, Optional, Tuple

import pandas as pd

from . import cast_builtin

FRAME_COLUMNS = ["qid", "conversation_id", "turn", "query", "history"]
SEP = "::"


def known_ids() -> List[str]:
    from . import REGISTERED_IDS
    return sorted([*cast_builtin.ROWS, *REGISTERED_IDS])


def split_id(namespaced: str) -> Tuple[str, str]:
    """``("ikat/2023/train", "12-1_3")`` from ``"ikat/2023/train::12-1_3"`` (a pooled qid or docno)."""
    prefix, sep, rest = str(namespaced).partition(SEP)
    if not sep:
        raise ValueError(f"{namespaced!r} is not a namespaced id ('<dataset or corpus>{SEP}<id>')")
    return prefix, rest


def _unknown(what, any_collection: bool = False) -> ValueError:
    other = " (or any ir_datasets id, for its documents)" if any_collection else ""
    return ValueError(f"{what} is not a known conversational dataset; known ids: {', '.join(known_ids())}{other}")


def _check(parts: List[str], any_collection: bool) -> None:
    known = set(known_ids())
    if any_collection:  # documents can come from any ir_datasets collection
        import ir_datasets
        from . import register
        register()
        known |= set(ir_datasets.registry)
    unknown = [p for p in parts if p not in known]
    if unknown:
        raise _unknown(", ".join(map(repr, unknown)), any_collection)


def _clean(ds_id: str) -> str:
    ds_id = ds_id.strip()
    return (ds_id[len("irds:"):] if ds_id.startswith("irds:") else ds_id).rstrip("/")


def dataset_ids(ids, any_collection: bool = False) -> List[str]:
    """The ids of a pool (a list, or a comma-separated string), checked: unknown or repeated ids are an error
    (``any_collection``: any ir_datasets id is known, as for documents)."""
    parts = [_clean(i) for i in (ids.split(",") if isinstance(ids, str) else ids)]
    if not parts or not all(parts):
        raise ValueError(f"empty dataset id in {ids!r}; known ids: {', '.join(known_ids())}")
    _check(parts, any_collection)
    repeated = sorted({p for p in parts if parts.count(p) > 1})
    if repeated:
        raise ValueError(f"dataset id(s) {', '.join(repeated)} listed more than once in {ids!r}")
    return parts


def _load(ds_id: str):
    import ir_datasets
    from . import register
    register()
    return ir_datasets.load(ds_id)


def _members(dataset_or_ids, split: Optional[str],
             any_collection: bool = False) -> List[Tuple[Optional[str], object]]:
    """``[(dataset id or None, dataset)]`` of the argument."""
    is_pool = isinstance(dataset_or_ids, (list, tuple)) or (isinstance(dataset_or_ids, str) and "," in dataset_or_ids)
    if is_pool:
        if split is not None:
            raise ValueError("split= only applies to a single dataset id")
        return [(i, _load(i)) for i in dataset_ids(dataset_or_ids, any_collection)]
    if isinstance(dataset_or_ids, str):
        ds_id = _clean(dataset_or_ids) + (f"/{split}" if split else "")
        _check([ds_id], any_collection)
        return [(ds_id, _load(ds_id))]
    if split is not None:
        raise ValueError("split= only applies to a dataset id string")
    ds = dataset_or_ids.irds_ref() if hasattr(dataset_or_ids, "irds_ref") else dataset_or_ids  # pt.get_dataset
    return [(ds.dataset_id() if hasattr(ds, "dataset_id") else None, ds)]


def _namespaced(members, namespace: Optional[bool]) -> bool:
    namespace = len(members) > 1 if namespace is None else namespace
    if namespace and any(ds_id is None for ds_id, _ in members):
        raise ValueError("namespaced ids need dataset ids: pass ids, not dataset objects")
    return namespace


def corpus_name(ds_id: Optional[str], ds) -> str:
    """The name of the document collection ``ds`` uses (shared by the splits of one collection)."""
    if hasattr(ds, "disco_corpus"):
        return ds.disco_corpus()
    return cast_builtin.CORPUS if ds_id in cast_builtin.ROWS else str(ds_id)


def _frame(ds_id: Optional[str], ds) -> pd.DataFrame:
    if hasattr(ds, "disco_conversation_rows"):
        rows = ds.disco_conversation_rows()
    elif hasattr(ds, "dataset_id") and ds.dataset_id() in cast_builtin.ROWS:
        rows = cast_builtin.ROWS[ds.dataset_id()](ds)
    else:
        raise _unknown(ds.dataset_id() if hasattr(ds, "dataset_id") else repr(ds))
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=FRAME_COLUMNS + ["dataset"])
    df = df.astype({"qid": str, "conversation_id": str, "turn": int})
    df["dataset"] = ds_id
    return df[FRAME_COLUMNS + [c for c in df.columns if c not in FRAME_COLUMNS]].reset_index(drop=True)


def conversations(dataset_or_ids, split: Optional[str] = None, namespace: Optional[bool] = None) -> pd.DataFrame:
    """The conversation frame of a dataset, or of several pooled (see the module docstring).

    One row per turn: ``qid`` (as in the qrels), ``conversation_id``, ``turn`` (0 first), ``query`` (the raw
    utterance), ``history`` (earlier ``{"role", "text"}`` turns, chronological; responses where the dataset has
    them; CAsT 2022 follows its own branch), rewrite columns (``human_rewrite``, ``automatic_rewrite``),
    ``response`` (the turn's own answer: never a model input) and, for iKAT, ``ptkb``; last, ``dataset`` (the id
    of the row's dataset). A pool's ``conversation_id`` is namespaced like its qids. Turns with a missing
    utterance are skipped with a warning; turns with an empty utterance are kept with a warning.
    """
    members = _members(dataset_or_ids, split)
    namespace = _namespaced(members, namespace)
    frames = []
    for ds_id, ds in members:
        df = _frame(ds_id, ds)
        if namespace:
            df["qid"] = ds_id + SEP + df["qid"]
            df["conversation_id"] = ds_id + SEP + df["conversation_id"]
        frames.append(df)
    if len(frames) == 1:
        return frames[0]
    df = pd.concat(frames, ignore_index=True)
    return df[FRAME_COLUMNS + [c for c in df.columns if c not in FRAME_COLUMNS + ["dataset"]] + ["dataset"]]


def qrels(dataset_or_ids, split: Optional[str] = None, namespace: Optional[bool] = None) -> pd.DataFrame:
    """The qrels as ``qid, docno, label`` (str ids), pooled and namespaced for several datasets."""
    members = _members(dataset_or_ids, split)
    namespace = _namespaced(members, namespace)
    frames = []
    for ds_id, ds in members:
        if not ds.has_qrels():
            raise ValueError(f"{ds_id or ds} has no qrels")
        df = pd.DataFrame([(q.query_id, q.doc_id, int(q.relevance)) for q in ds.qrels_iter()],
                          columns=["qid", "docno", "label"]).astype({"qid": str, "docno": str})
        if namespace:
            df["qid"] = ds_id + SEP + df["qid"]
            df["docno"] = corpus_name(ds_id, ds) + SEP + df["docno"]
        frames.append(df)
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def _corpora(members) -> List[Tuple[str, object]]:
    """``[(corpus, dataset)]``, one dataset per corpus; nested corpora (a collection and a topic-passages
    variant of it) would index the same documents twice: an error."""
    corpora = {}
    for ds_id, ds in members:
        if not ds.has_docs():
            raise ValueError(f"{ds_id or ds} has no documents")
        corpora.setdefault(corpus_name(ds_id, ds), ds)
    for a in corpora:
        for b in corpora:
            if b.startswith(a + "/"):
                raise ValueError(f"the corpora {a} and {b} hold the same passages: pool either the datasets of {a} "
                                 f"or their topic-passages variants, not both")
    return list(corpora.items())


def docs_iter(dataset_or_ids, namespace: Optional[bool] = None) -> Iterator[dict]:
    """``{"docno", "text"}`` records of the dataset's documents; for several datasets, of their pooled corpus
    (each collection once, docnos namespaced by corpus). This is what ``disco index`` encodes; any ir_datasets
    collection is accepted here. The ids are checked on the call, before the first record."""
    members = _members(dataset_or_ids, None, any_collection=True)
    namespace = _namespaced(members, namespace)
    return _records(_corpora(members), namespace)


def _records(corpora, namespace: bool) -> Iterator[dict]:
    for corpus, ds in corpora:
        prefix = corpus + SEP if namespace else ""
        for doc in ds.docs_iter():
            yield {"docno": prefix + doc.doc_id, "text": doc.default_text()}


def doc_lookup(dataset_or_ids, split: Optional[str] = None, namespace: Optional[bool] = None):
    """A function mapping a list of docnos to their texts, through the datasets' docstores (namespaced docnos
    for several datasets)."""
    members = _members(dataset_or_ids, split)
    namespace = _namespaced(members, namespace)
    stores = {corpus: ds.docs_store() for corpus, ds in _corpora(members)}

    def lookup(docnos: List[str]) -> List[str]:
        keys = [split_id(d) for d in docnos] if namespace else [(None, d) for d in docnos]
        for corpus, _ in keys:
            if namespace and corpus not in stores:
                raise KeyError(f"no corpus {corpus!r} in this pool (corpora: {', '.join(stores)})")
        found = {}
        for corpus, store in stores.items():
            wanted = [d for c, d in keys if c in (None, corpus)]
            for k, doc in store.get_many(wanted).items():
                found.setdefault((corpus if namespace else None, k), doc)
        missing = [d for d, key in zip(docnos, keys) if key not in found]
        if missing:
            raise KeyError(missing[0])
        return [found[key].default_text() for key in keys]
    return lookup
