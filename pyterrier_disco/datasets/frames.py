"""Conversation frames: one row per turn (``qid, conversation_id, turn, query, history`` + rewrites/response)."""
from typing import List, Optional

import pandas as pd

from . import cast

FRAME_COLUMNS = ["qid", "conversation_id", "turn", "query", "history"]
BUILTIN_CAST_2020 = "trec-cast/v1/2020"


def known_ids() -> List[str]:
    from . import REGISTERED_IDS
    return sorted([BUILTIN_CAST_2020, *REGISTERED_IDS])


def _unknown(what) -> ValueError:
    return ValueError(f"{what} is not a known conversational dataset; known ids: {', '.join(known_ids())}")


def _resolve(dataset_or_id, split: Optional[str]):
    import ir_datasets
    from . import register
    register()
    if isinstance(dataset_or_id, str):
        ds_id = dataset_or_id[len("irds:"):] if dataset_or_id.startswith("irds:") else dataset_or_id
        ds_id = ds_id.rstrip("/")
        if split:
            ds_id = f"{ds_id}/{split}"
        if ds_id not in known_ids():
            raise _unknown(repr(ds_id))
        return ir_datasets.load(ds_id)
    if split is not None:
        raise ValueError("split= only applies to a dataset id string")
    if hasattr(dataset_or_id, "irds_ref"):  # pyterrier's pt.get_dataset('irds:...')
        return dataset_or_id.irds_ref()
    return dataset_or_id


def conversations(dataset_or_id, split: Optional[str] = None) -> pd.DataFrame:
    """The conversation frame of a dataset: an ir_datasets id (``"ikat/2023/train"``, ``"irds:..."``, or a prefix
    with ``split=``), an ir_datasets Dataset, or a PyTerrier dataset from ``pt.get_dataset('irds:...')``.

    One row per turn: ``qid`` (as in the qrels), ``conversation_id``, ``turn`` (0 first), ``query`` (the raw
    utterance), ``history`` (earlier ``{"role", "text"}`` turns, chronological; responses where the dataset has
    them; CAsT 2022 follows its own branch), rewrite columns (``human_rewrite``, ``automatic_rewrite``),
    ``response`` and, for iKAT, ``ptkb``. Turns with a missing utterance are skipped with a warning; turns with an
    empty utterance are kept with a warning.
    """
    ds = _resolve(dataset_or_id, split)
    if hasattr(ds, "disco_conversation_rows"):
        rows = ds.disco_conversation_rows()
    elif hasattr(ds, "dataset_id") and ds.dataset_id() == BUILTIN_CAST_2020:
        rows = cast.rows_2020(ds)
    else:
        name = ds.dataset_id() if hasattr(ds, "dataset_id") else repr(ds)
        raise _unknown(name)
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=FRAME_COLUMNS)
    df["qid"] = df["qid"].astype(str)
    df["conversation_id"] = df["conversation_id"].astype(str)
    df["turn"] = df["turn"].astype(int)
    return df[FRAME_COLUMNS + [c for c in df.columns if c not in FRAME_COLUMNS]].reset_index(drop=True)


def qrels(dataset_or_id, split: Optional[str] = None) -> pd.DataFrame:
    """The dataset's qrels as ``qid, docno, label`` (str ids)."""
    ds = _resolve(dataset_or_id, split)
    if not ds.has_qrels():
        raise ValueError(f"{ds.dataset_id()} has no qrels")
    df = pd.DataFrame([(q.query_id, q.doc_id, int(q.relevance)) for q in ds.qrels_iter()],
                      columns=["qid", "docno", "label"])
    return df.astype({"qid": str, "docno": str})


def doc_lookup(dataset_or_id, split: Optional[str] = None):
    """A function mapping a list of docnos to their texts, through the dataset's docstore."""
    ds = _resolve(dataset_or_id, split)
    if not ds.has_docs():
        raise ValueError(f"{ds.dataset_id()} has no documents")
    store = ds.docs_store()

    def lookup(docnos: List[str]) -> List[str]:
        found = store.get_many(docnos)
        missing = [d for d in docnos if d not in found]
        if missing:
            raise KeyError(missing[0])
        return [found[d].default_text() for d in docnos]
    return lookup
