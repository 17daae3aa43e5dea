"""disco-mini (``disco-mini/train``, ``disco-mini/test``): the small collection embedded in the package."""
import json
from pathlib import Path
from typing import List, NamedTuple, Optional, Tuple

from ir_datasets.datasets.base import Dataset

from ._files import (ConversationSource, IterDocs, ListQrels, ListQueries, Turn, binary_qrels, check_utterance,
                     history_dicts)

NAME = "disco-mini"
SPLITS = ("train", "test")
DEFAULT_FOLDER = Path(__file__).resolve().parents[1] / "data" / "disco_mini"
TEST_BUCKETS = (2, 5, 8)  # index i of the sorted conversation ids goes to test when i % 10 is one of these


class MiniQuery(NamedTuple):
    query_id: str
    utterance: str
    rewrite: str
    response: str
    conversation_id: str
    turn: int

    def default_text(self):
        return self.utterance


class MiniPassage(NamedTuple):
    doc_id: str
    text: str
    topic: str

    def default_text(self):
        return self.text


def _parts(folder: Optional[Path]) -> List[dict]:
    folder = Path(folder) if folder is not None else DEFAULT_FOLDER
    files = sorted(folder.glob("part*.json"))
    if not files:
        raise FileNotFoundError(f"no disco-mini part*.json files in {folder}")
    out = []
    for f in files:
        with open(f, encoding="utf-8") as fh:
            out.append(json.load(fh))
    return out


def load(folder: Optional[Path] = None) -> Tuple[List[MiniPassage], dict]:
    """Passages (union of the parts, first occurrence of a docno wins) and ``{"train": [...], "test": [...]}``
    conversations, split deterministically on the sorted conversation ids."""
    passages, seen, convs = [], set(), {}
    for part in _parts(folder):
        for p in part.get("passages", []):
            if p["docno"] not in seen:
                seen.add(p["docno"])
                passages.append(MiniPassage(str(p["docno"]), p["text"], p.get("topic", "")))
        for c in part.get("conversations", []):
            cid = str(c["conversation_id"])
            if cid in convs:
                raise ValueError(f"disco-mini: conversation id {cid!r} appears twice")
            convs[cid] = c
    split = {"train": [], "test": []}
    for i, cid in enumerate(sorted(convs)):
        split["test" if i % 10 in TEST_BUCKETS else "train"].append(convs[cid])
    return passages, split


def load_turns(split: str, folder: Optional[Path] = None) -> List[Turn]:
    turns = []
    for c in load(folder)[1][split]:
        cid, history = str(c["conversation_id"]), []
        for i, t in enumerate(c.get("turns", [])):
            qid = f"{cid}_{i + 1}"
            utterance = check_utterance(t.get("utterance"), f"{qid} (disco-mini)")
            if utterance is None:
                continue
            response = t.get("response") or ""
            extra = {"human_rewrite": t.get("rewrite") or "", "response": response,
                     "relevant": tuple(str(d) for d in t.get("relevant") or ())}
            turns.append(Turn(qid, cid, len(history) // 2, utterance, tuple(history), extra))
            history += [("user", utterance), ("system", response)]
    return turns


def rows(split: str, folder: Optional[Path] = None) -> List[dict]:
    return [{"qid": t.qid, "conversation_id": t.conversation_id, "turn": t.turn, "query": t.query,
             "history": history_dicts(t.history), "human_rewrite": t.extra["human_rewrite"],
             "response": t.extra["response"]} for t in load_turns(split, folder)]


def build(split: str, folder: Optional[Path] = None) -> Dataset:
    """The ir_datasets Dataset of one split; ``folder`` (default: the package data) holds the ``part*.json`` files."""
    def queries():
        for t in load_turns(split, folder):
            yield MiniQuery(t.qid, t.query, t.extra["human_rewrite"], t.extra["response"], t.conversation_id, t.turn)

    return Dataset(
        IterDocs(MiniPassage, lambda: load(folder)[0], NAME, in_memory=True),
        ListQueries(MiniQuery, queries, NAME),
        ListQrels(lambda: binary_qrels((t.qid, d) for t in load_turns(split, folder) for d in t.extra["relevant"]),
                  {1: "relevant"}),
        ConversationSource(lambda: rows(split, folder)),
    )


def datasets() -> dict:
    return {f"{NAME}/{split}": build(split) for split in SPLITS}
