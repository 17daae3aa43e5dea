"""TopiOCQA (``topiocqa/train``, ``topiocqa/dev``): official turns JSON, Wikipedia segments, gold passages."""
import csv
import io
import sys
from typing import List, NamedTuple

from ._files import MissingOfficialFileError, OfficialFile, ZipMemberFile
from ._handlers import IterDocs, ListQrels
from ._turns import Turn, binary_qrels, qa_turns, split_ids, turn_dataset

NAME = "topiocqa"
SPLITS = ("train", "dev")


class TopiocqaQuery(NamedTuple):
    query_id: str
    question: str
    answer: str
    rewrite: str
    topic: str
    topic_section: str
    is_nq: bool
    conversation_no: int
    turn_no: int
    gold_passage_id: str

    def default_text(self):
        return self.question


class TopiocqaDoc(NamedTuple):
    doc_id: str
    text: str
    title: str

    def default_text(self):
        # the DiSCo reference indexes "title. text" (splade/hf/datasets.py, DatasetPreLoad with filter=True)
        return f"{self.title}. {self.text}"


# the dataset JSON ships in the repository's topiocqa.zip; the segments are the ones the DiSCo reference
# downloads (SimonLupart/disco-conv-splade setup_script/dl_topiocqa.sh), with the TopiOCQA S3 copy as fallback
ARCHIVE = OfficialFile(NAME, "topiocqa.zip")
SEGMENTS = OfficialFile(NAME, "full_wiki_segments.tsv")


def topics_file(split: str) -> ZipMemberFile:
    return ZipMemberFile(ARCHIVE, f"topiocqa_{split}.json")


def _gold_id(turn: dict) -> str:
    gold = turn.get("Gold_passage")
    if not isinstance(gold, dict) or gold.get("id") in (None, ""):
        return ""
    gid = str(gold["id"])
    return gid[len("wiki:"):] if gid.startswith("wiki:") else gid  # DPR prefixes segment ids with "wiki:"


def _extra(t: dict) -> dict:
    extra = {"response": str(t.get("Answer") or ""), "gold": _gold_id(t), "topic": t.get("Topic", ""),
             "topic_section": t.get("Topic_section", ""), "is_nq": bool(t.get("is_nq", False))}
    if t.get("Rewrite"):
        extra["human_rewrite"] = t["Rewrite"]
    return extra


def load_turns(split: str) -> List[Turn]:
    return qa_turns(topics_file(split).load_json(), f"TopiOCQA {split}", _extra)


def _query(t: Turn) -> TopiocqaQuery:
    x = t.extra
    conv, turn_no = t.qid.split("_")
    return TopiocqaQuery(t.qid, t.query, x["response"], x.get("human_rewrite", ""), x["topic"],
                         x["topic_section"], x["is_nq"], int(conv), int(turn_no), x["gold"])


def _qrels(split):
    turns = load_turns(split)
    if turns and not any(t.extra["gold"] for t in turns):
        raise MissingOfficialFileError(
            f"this copy of topiocqa_{split}.json has no Gold_passage fields (it is the 2021 release); gold passages "
            f"come with the later release: replace {topics_file(split).extracted.local_path} with it "
            f"(or remove it so that {ARCHIVE.name} is used)")
    return binary_qrels((t.qid, t.extra["gold"]) for t in turns if t.extra["gold"])


def _segments():
    csv.field_size_limit(sys.maxsize)
    with SEGMENTS.stream() as raw:
        reader = csv.reader(io.TextIOWrapper(raw, encoding="utf-8"), delimiter="\t")
        for row in reader:
            if not row or row[0] == "id":  # header
                continue
            yield TopiocqaDoc(row[0], row[1], row[2] if len(row) > 2 else "")


def datasets() -> dict:
    docs = IterDocs(TopiocqaDoc, _segments, NAME)  # ~25.7M segments; no exact count offline
    return split_ids(NAME, SPLITS, lambda split: turn_dataset(
        lambda: load_turns(split), _query, TopiocqaQuery, docs=docs,
        qrels=ListQrels(lambda: _qrels(split), {1: "gold passage"}), columns=("human_rewrite", "response"),
        corpus=NAME, namespace=NAME))
