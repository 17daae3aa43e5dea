"""Conversation frames for ir_datasets' built-in CAsT ids ``trec-cast/v1/2019`` and ``trec-cast/v1/2020``.

ir_datasets' own ids fit these years: their topics, qrels (``2019qrels.txt``, ``2020qrels.txt``) and the CAsT v1
collection (MS MARCO passages + TREC CAR) are the official ones, downloaded and checked by ir_datasets into its
folders ``$IR_DATASETS_HOME/trec-cast/2019/`` and ``.../2020/``. This module adds what their query records lack:

- CAsT 2019: the manual rewrites, from the official ``evaluation_topics_annotated_resolved_v1.0.tsv``
  (``qid<TAB>rewrite``), looked up beside ir_datasets' topics in ``$IR_DATASETS_HOME/trec-cast/2019/``. CAsT 2019
  has no system responses: the history holds the earlier user utterances only.
- CAsT 2020: the history's system turns are the earlier turns' manual canonical result passages, read from
  ir_datasets' ``msmarco-passage`` / ``car/v2.0`` docstores when they are already on disk (this never starts a
  download of those multi-GB collections). Where they are not, the history holds the user utterances only: the
  frame says so in its ``response_available`` column (False) and a warning names the missing collection.
"""
import warnings
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence

from ._files import OfficialFile
from ._turns import Turn, check_utterance, frame_rows

ID_2019, ID_2020 = "trec-cast/v1/2019", "trec-cast/v1/2020"
CORPUS = "trec-cast/v1"
REWRITES_2019 = OfficialFile("trec-cast/2019", "evaluation_topics_annotated_resolved_v1.0.tsv")
# prefix of a CAsT v1 docno -> the ir_datasets collection that holds the passage without it
CANONICAL_SOURCES = {"MARCO_": "msmarco-passage", "CAR_": "car/v2.0"}

Lookup = Callable[[Sequence[str]], Dict[str, str]]


def rewrites_2019() -> Dict[str, str]:
    out = {}
    for line in REWRITES_2019.lines():
        qid, _, rewrite = line.rstrip("\r\n").partition("\t")
        out[qid.strip()] = rewrite.strip()
    return out


def _turns(queries: Iterable, label: str, system_text: Callable[[object], str],
           extra: Callable[[object], dict]) -> List[Turn]:
    turns, history, topic = [], [], None
    for q in queries:
        if q.topic_number != topic:
            topic, history = q.topic_number, []
        utterance = check_utterance(q.raw_utterance, f"{q.query_id} ({label})")
        if utterance is None:
            continue
        turns.append(Turn(q.query_id, str(q.topic_number), sum(r == "user" for r, _ in history), utterance,
                          tuple(history), extra(q)))
        answer = system_text(q)
        history = history + [("user", utterance)] + ([("system", answer)] if answer else [])
    return turns


def rows_2019(dataset) -> List[dict]:
    """Frame rows of ``trec-cast/v1/2019`` with ``human_rewrite`` from the official resolved-topics file."""
    rewrites = rewrites_2019()
    turns = _turns(dataset.queries_iter(), "CAsT 2019", lambda q: "",
                   lambda q: {"human_rewrite": rewrites.get(q.query_id, "")})
    missing = [t.qid for t in turns if t.qid not in rewrites]
    if missing:
        warnings.warn(f"CAsT 2019: {len(missing)} turn(s) have no manual rewrite in {REWRITES_2019.name} "
                      f"(first: {missing[0]}); their human_rewrite is empty", stacklevel=4)
    return frame_rows(turns, ("human_rewrite",))


def _local_store(ds_id: str):
    """ir_datasets' docstore of ``ds_id`` when the collection (or its docstore) is on disk, else None."""
    import ir_datasets

    handler = ir_datasets.load(ds_id).docs_handler()
    store = handler.docs_store()
    candidates = [getattr(store, "path", None)]
    if hasattr(handler, "docs_path"):
        candidates.append(handler.docs_path(force=False))
    return store if any(p and Path(p).exists() for p in candidates) else None


def canonical_lookup() -> Optional[Lookup]:
    """Texts of CAsT v1 docnos (``MARCO_<id>``, ``CAR_<id>``) from the local collections, or None (with a
    warning naming what is missing) when they are not all on disk."""
    stores = {prefix: _local_store(ds_id) for prefix, ds_id in CANONICAL_SOURCES.items()}
    missing = [CANONICAL_SOURCES[p] for p, s in stores.items() if s is None]
    if missing:
        warnings.warn(f"CAsT 2020 frames: the canonical response passages are not available (ir_datasets "
                      f"collection(s) {', '.join(missing)} not on disk), so the history holds the user utterances "
                      "only and response_available is False; download them with ir_datasets to add the responses",
                      stacklevel=5)
        return None

    def lookup(docnos):
        out = {}
        for prefix, store in stores.items():
            ids = [d[len(prefix):] for d in docnos if d.startswith(prefix)]
            out.update({prefix + k: doc.text for k, doc in store.get_many(ids).items()})
        return out
    return lookup


def rows_2020(dataset, lookup: Optional[Lookup] = None) -> List[dict]:
    """Frame rows of ``trec-cast/v1/2020``: manual and automatic rewrites, ``canonical_result_id``, and the
    canonical passage as ``response`` and as the system turn of later histories when ``lookup`` (default:
    :func:`canonical_lookup`) finds it; ``response_available`` says whether it did."""
    lookup = lookup if lookup is not None else canonical_lookup()
    queries = list(dataset.queries_iter())
    texts = lookup([q.manual_canonical_result_id for q in queries if q.manual_canonical_result_id]) if lookup else {}

    def extra(q):
        text = texts.get(q.manual_canonical_result_id, "")
        return {"human_rewrite": q.manual_rewritten_utterance or "",
                "automatic_rewrite": q.automatic_rewritten_utterance or "",
                "canonical_result_id": q.manual_canonical_result_id or "", "response": text,
                "response_available": bool(text)}

    turns = _turns(queries, "CAsT 2020", lambda q: texts.get(q.manual_canonical_result_id, ""), extra)
    return frame_rows(turns, ("human_rewrite", "automatic_rewrite", "canonical_result_id", "response",
                              "response_available"))


ROWS = {ID_2019: rows_2019, ID_2020: rows_2020}
