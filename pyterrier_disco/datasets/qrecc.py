"""QReCC (``qrecc/train``, ``qrecc/test``): official turns JSON, passage collection, ``Truth_passages`` qrels."""
import io
import json
import zipfile
from typing import List, NamedTuple

from ._files import MissingOfficialFileError, OfficialFile, ZipMemberFile
from ._handlers import IterDocs, ListQrels, TextDoc
from ._turns import Turn, binary_qrels, qa_turns, split_ids, turn_dataset

NAME = "qrecc"
SPLITS = ("train", "test")
ARCHIVE = OfficialFile(NAME, "qrecc_data.zip")
# SCAI-QReCC 2021 release of the passage collection (jsonl members with "id" and "contents")
PASSAGES = OfficialFile(NAME, "passages.zip")


class QreccQuery(NamedTuple):
    query_id: str
    question: str
    rewrite: str
    answer: str
    answer_url: str
    conversation_source: str
    conversation_no: int
    turn_no: int
    truth_passages: tuple

    def default_text(self):
        return self.question


QreccDoc = TextDoc

def topics_file(split: str) -> ZipMemberFile:
    return ZipMemberFile(ARCHIVE, f"qrecc_{split}.json")


def _extra(t: dict) -> dict:
    return {"human_rewrite": t.get("Rewrite") or "", "response": t.get("Answer") or "",
            "answer_url": t.get("Answer_URL") or "", "source": t.get("Conversation_source") or "",
            "truth": tuple(t["Truth_passages"]) if isinstance(t.get("Truth_passages"), list) else None}


def load_turns(split: str) -> List[Turn]:
    return qa_turns(topics_file(split).load_json(), f"QReCC {split}", _extra)


def _query(t: Turn) -> QreccQuery:
    x = t.extra
    conv, turn_no = t.qid.split("_")
    return QreccQuery(t.qid, t.query, x["human_rewrite"], x["response"], x["answer_url"], x["source"],
                      int(conv), int(turn_no), x["truth"] or ())


def _qrels(split):
    turns = load_turns(split)
    if turns and all(t.extra["truth"] is None for t in turns):
        raise MissingOfficialFileError(
            f"qrecc_{split}.json has no Truth_passages fields: the qrels come with the QReCC release that carries "
            f"them (SCAI-QReCC, https://doi.org/10.5281/zenodo.4748782); put that qrecc_{split}.json in "
            f"{topics_file(split).extracted.local_path.parent}")
    return binary_qrels((t.qid, docno) for t in turns for docno in (t.extra["truth"] or ()))


def _passages():
    with zipfile.ZipFile(PASSAGES.path()) as zf:
        for member in sorted(m for m in zf.namelist() if m.endswith(".jsonl")):
            with zf.open(member) as f:
                for line in io.TextIOWrapper(f, encoding="utf-8"):
                    if line.strip():
                        rec = json.loads(line)
                        yield QreccDoc(str(rec["id"]), rec.get("contents", ""))


def datasets() -> dict:
    docs = IterDocs(QreccDoc, _passages, NAME)  # ~54M passages; no exact count offline
    return split_ids(NAME, SPLITS, lambda split: turn_dataset(
        lambda: load_turns(split), _query, QreccQuery, docs=docs,
        qrels=ListQrels(lambda: _qrels(split), {1: "passage annotated as holding the answer"}),
        columns=("human_rewrite", "response"), corpus=NAME, namespace=NAME))
