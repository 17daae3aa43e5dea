"""TREC iKAT 2023 (``ikat/2023/train``, ``ikat/2023/test``): official topics, provenance passages, provenance qrels."""
import json
import warnings
from typing import List, NamedTuple, Tuple

from ir_datasets.datasets.base import Dataset

from ._files import (ConversationSource, IterDocs, ListQrels, ListQueries, MissingOfficialFileError, OfficialFile,
                     Turn, binary_qrels, check_utterance, history_dicts)

NAME = "ikat"
_BASE_URL = "https://raw.githubusercontent.com/irlabamsterdam/iKAT/main/2023/data/"
SPLITS = ("train", "test")


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


class IkatPassage(NamedTuple):
    doc_id: str
    text: str

    def default_text(self):
        return self.text


def topics_file(split: str) -> OfficialFile:
    name = f"2023_{split}_topics.json"
    return OfficialFile(NAME, name, [_BASE_URL + name])


def passages_file(split: str) -> OfficialFile:
    name = f"2023_{split}_topics_psg_text.jsonl"
    return OfficialFile(NAME, name, [_BASE_URL + name])


def _ptkb(topic: dict) -> Tuple[str, ...]:
    ptkb = topic.get("ptkb") or {}
    if isinstance(ptkb, dict):  # {"1": "...", "2": "..."}: keep numeric order
        def order(k):
            return (0, int(k), "") if str(k).isdigit() else (1, 0, str(k))
        return tuple(ptkb[k] for k in sorted(ptkb, key=order))
    return tuple(ptkb)


def load_turns(split: str) -> List[Turn]:
    turns = []
    for topic in topics_file(split).load_json():
        number, ptkb = str(topic["number"]), _ptkb(topic)
        history = []
        for i, t in enumerate(topic.get("turns", [])):
            qid = f"{number}_{t.get('turn_id', i + 1)}"
            utterance = check_utterance(t.get("utterance"), f"{qid} (iKAT 2023 {split})")
            if utterance is None:
                continue
            response = t.get("response") or ""
            extra = {"human_rewrite": t.get("resolved_utterance") or "", "response": response, "ptkb": list(ptkb),
                     "ptkb_provenance": tuple(t.get("ptkb_provenance") or ()),
                     "response_provenance": tuple(t.get("response_provenance") or ()),
                     "title": topic.get("title", "")}
            turns.append(Turn(qid, number, len(history) // 2, utterance, tuple(history), extra))
            history += [("user", utterance), ("system", response)]
    return turns


def _queries(split):
    for t in load_turns(split):
        x = t.extra
        yield IkatQuery(t.qid, t.query, x["human_rewrite"], x["response"], tuple(x["ptkb"]), x["ptkb_provenance"],
                        x["response_provenance"], t.conversation_id, int(t.qid.rsplit("_", 1)[1]), x["title"])


def _qrels(split):
    return binary_qrels((t.qid, docno) for t in load_turns(split) for docno in t.extra["response_provenance"])


def _passages():
    """Passages of both splits (docno ``<doc_id>:<passage_id>``): the train and test qrels point into one shared
    collection. A split whose passage file cannot be found (or downloaded) is left out with a warning naming the
    file; with neither file, a MissingOfficialFileError."""
    files, errors = [], []
    for f in (passages_file(s) for s in SPLITS):
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
    seen = set()
    for f in files:
        with f.stream() as lines:
            for line in lines:
                if not line.strip():
                    continue
                rec = json.loads(line)
                docno = f"{rec['doc_id']}:{rec['passage_id']}"
                if docno not in seen:
                    seen.add(docno)
                    yield IkatPassage(docno, rec["passage_text"].strip())


def rows(split: str) -> List[dict]:
    out = []
    for t in load_turns(split):
        x = t.extra
        out.append({"qid": t.qid, "conversation_id": t.conversation_id, "turn": t.turn, "query": t.query,
                    "history": history_dicts(t.history), "human_rewrite": x["human_rewrite"],
                    "response": x["response"], "ptkb": x["ptkb"]})
    return out


def datasets() -> dict:
    docs = IterDocs(IkatPassage, _passages, NAME, in_memory=True)
    return {f"{NAME}/2023/{split}": Dataset(
        docs,
        ListQueries(IkatQuery, lambda split=split: _queries(split), NAME),
        ListQrels(lambda split=split: _qrels(split), {1: "passage used to build the response (provenance)"}),
        ConversationSource(lambda split=split: rows(split)),
    ) for split in SPLITS}
