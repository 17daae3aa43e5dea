"""TREC iKAT: ``ikat/2023/train``, ``ikat/2023/test`` (official topics, provenance passages, provenance qrels),
``ikat/2024/test`` (official topics and provenance qrels; its ClueWeb22-B collection is not built here) and
their ``/topic-passages`` variants (see :mod:`.topic_passages`)."""
import json
import warnings
from typing import List, NamedTuple, Tuple

from . import topic_passages
from ._files import MissingOfficialFileError, OfficialFile
from ._handlers import IterDocs, TextDoc, UnavailableDocs
from ._turns import Turn, exchange_turns, positive_qrels, split_ids, turn_dataset

NAME = "ikat"
SPLITS = {"2023": ("train", "test"), "2024": ("test",)}
COLUMNS = ("human_rewrite", "response", "ptkb")
QRELS_DEFS = {1: "passage used to build the response (provenance)"}
DOCS_2024_MESSAGE = (
    "The TREC iKAT 2024 collection (ClueWeb22-B passages) is not available offline and is not built by this "
    "package: get it under the ClueWeb22 licence (https://www.trecikat.com/data/) and index it yourself. The "
    "queries, provenance qrels and conversation frames of ikat/2024/test work without it, and "
    "ikat/2024/test/topic-passages holds its responses as a small corpus.")


class IkatQuery(NamedTuple):
    query_id: str
    utterance: str
    resolved_utterance: str
    response: str
    ptkb: Tuple[str, ...]
    ptkb_provenance: Tuple[int, ...]
    response_provenance: Tuple[str, ...]
    topic_number: str
    turn_number: int
    title: str

    def default_text(self):
        return self.utterance


IkatPassage = TextDoc

def topics_file(split: str, year: str = "2023") -> OfficialFile:
    return OfficialFile(NAME, f"{year}_{split}_topics.json")


def passages_file(split: str) -> OfficialFile:
    return OfficialFile(NAME, f"2023_{split}_topics_psg_text.jsonl")


def _ptkb(topic: dict) -> Tuple[str, ...]:
    ptkb = topic.get("ptkb") or {}
    if isinstance(ptkb, dict):  # {"1": "...", "2": "..."}: keep numeric order
        def order(k):
            return (0, int(k), "") if str(k).isdigit() else (1, 0, str(k))
        return tuple(ptkb[k] for k in sorted(ptkb, key=order))
    return tuple(ptkb)


def load_turns(split: str, year: str = "2023") -> List[Turn]:
    turns = []
    for topic in topics_file(split, year).load_json():
        number, ptkb = str(topic["number"]), list(_ptkb(topic))

        def extra(t, topic=topic, ptkb=ptkb):
            return {"human_rewrite": t.get("resolved_utterance") or "", "response": t.get("response") or "",
                    "ptkb": ptkb, "ptkb_provenance": tuple(t.get("ptkb_provenance") or ()),
                    "response_provenance": tuple(t.get("response_provenance") or ()), "title": topic.get("title", "")}
        turns += exchange_turns(number, topic.get("turns", []), f"iKAT {year} {split}",
                                lambda i, t, number=number: f"{number}_{t.get('turn_id', i + 1)}",
                                "utterance", "response", extra)
    return turns


def _query(t: Turn) -> IkatQuery:
    x = t.extra
    return IkatQuery(t.qid, t.query, x["human_rewrite"], x["response"], tuple(x["ptkb"]), x["ptkb_provenance"],
                     x["response_provenance"], t.conversation_id, int(t.qid.rsplit("_", 1)[1]), x["title"])


def _provenance(t: Turn):
    return t.extra["response_provenance"]


def read_passages(files) -> List[IkatPassage]:
    """Passages of iKAT ``_psg_text.jsonl`` files (docno ``<doc_id>:<passage_id>``), first occurrence kept."""
    seen = {}
    for f in files:
        for line in f.lines():
            rec = json.loads(line)
            docno = f"{rec['doc_id']}:{rec['passage_id']}"
            seen.setdefault(docno, IkatPassage(docno, rec["passage_text"].strip()))
    return list(seen.values())


def _passages() -> List[IkatPassage]:
    """Passages of both 2023 splits: the train and test qrels point into one shared collection. A split whose
    passage file cannot be found (or downloaded) is left out with a warning naming the file; with neither file,
    a MissingOfficialFileError."""
    files, errors = [], []
    for f in (passages_file(s) for s in SPLITS["2023"]):
        try:
            f.path()
            files.append(f)
        except MissingOfficialFileError as e:
            errors.append(e)
    if not files:
        raise MissingOfficialFileError("the iKAT 2023 passage collection is the union of the train and test "
                                       "provenance passages; " + "; ".join(map(str, errors)))
    for e in errors:
        warnings.warn(f"iKAT 2023 documents: only part of the collection is available ({e})")
    return read_passages(files)


def _variant(year: str, split: str) -> dict:
    def turns():
        return load_turns(split, year)

    def positives(t):
        return [f"{t.qid}:response", *_provenance(t)] if year == "2023" else [f"{t.qid}:response"]

    extra = (lambda: read_passages([passages_file(split)])) if year == "2023" else None
    return topic_passages.variant(f"{NAME}/{year}/{split}", turns, _query, IkatQuery,
                                  passages=topic_passages.response_passage, positives=positives, columns=COLUMNS,
                                  namespace=NAME, extra_docs=extra)


def datasets() -> dict:
    docs = {"2023": IterDocs(IkatPassage, _passages, NAME, in_memory=True),
            "2024": UnavailableDocs(IkatPassage, DOCS_2024_MESSAGE, NAME)}
    out = {}
    for year, splits in SPLITS.items():
        def build(split, year=year):
            def turns():
                return load_turns(split, year)
            return turn_dataset(turns, _query, IkatQuery, docs=docs[year],
                                qrels=positive_qrels(turns, _provenance, QRELS_DEFS), columns=COLUMNS,
                                corpus=f"{NAME}/{year}", namespace=NAME)
        out.update(split_ids(f"{NAME}/{year}", splits, build))
        for split in splits:
            out.update(_variant(year, split))
    return out
