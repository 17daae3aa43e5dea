"""disco-mini (``disco-mini/train``, ``disco-mini/test``): the small collection embedded in the package."""
import json
from pathlib import Path
from typing import List, NamedTuple, Optional, Tuple

from ir_datasets.datasets.base import Dataset

from ._handlers import IterDocs
from ._turns import Turn, exchange_turns, frame_rows, positive_qrels, split_ids, turn_dataset

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
        cid = str(c["conversation_id"])
        turns += exchange_turns(cid, c.get("turns", []), "disco-mini", lambda i, t, cid=cid: f"{cid}_{i + 1}",
                                "utterance", "response", lambda t: {
                                    "human_rewrite": t.get("rewrite") or "", "response": t.get("response") or "",
                                    "relevant": tuple(str(d) for d in t.get("relevant") or ())})
    return turns


def rows(split: str, folder: Optional[Path] = None) -> List[dict]:
    return frame_rows(load_turns(split, folder))


def _query(t: Turn) -> MiniQuery:
    return MiniQuery(t.qid, t.query, t.extra["human_rewrite"], t.extra["response"], t.conversation_id, t.turn)


def build(split: str, folder: Optional[Path] = None) -> Dataset:
    """The ir_datasets Dataset of one split; ``folder`` (default: the package data) holds the ``part*.json`` files."""
    def turns():
        return load_turns(split, folder)

    docs = IterDocs(MiniPassage, lambda: load(folder)[0], NAME, in_memory=True)
    return turn_dataset(turns, _query, MiniQuery, docs=docs,
                        qrels=positive_qrels(turns, lambda t: t.extra["relevant"], {1: "relevant"}),
                        columns=("human_rewrite", "response"), corpus=NAME, namespace=NAME)


def datasets() -> dict:
    return split_ids(NAME, SPLITS, build)
