"""Benchmark inputs: real iKAT 2023 passages and turns from ../shared/data (or disco-mini when absent)."""
import json
import os
import shutil
import tempfile
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "ikat" / "2023"


def passages_and_queries(repeat: int = 1):
    """Return (docs [{"docno", "text"}], queries [str]); ``repeat`` copies the passages to grow the collection."""
    if (SHARED / "2023_train_topics_psg_text.jsonl").exists():
        base = [json.loads(line) for line in open(SHARED / "2023_train_topics_psg_text.jsonl")]
        base = [{"docno": f"{d['doc_id']}:{d['passage_id']}", "text": d["passage_text"]} for d in base]
        topics = json.load(open(SHARED / "2023_train_topics.json"))
        queries = [t[key] for topic in topics for t in topic["turns"] for key in ("utterance", "resolved_utterance")]
        source = "ikat/2023/train (../shared/data)"
    else:
        import pyterrier_disco as disco
        from pyterrier_disco.index import dataset_docs
        base = list(dataset_docs("disco-mini/train"))
        frame = disco.conversations("disco-mini/train")
        queries = list(frame["query"]) + list(frame["human_rewrite"])
        source = "disco-mini"
    docs = [{"docno": f"{d['docno']}#{r}", "text": d["text"]} for r in range(repeat) for d in base]
    return docs, queries, source


def ikat_home(parent=None) -> bool:
    """Point IR_DATASETS_HOME at ``parent`` (default: a new temp folder), holding copies of the iKAT 2023
    files in ``parent/ikat``; False when the files are absent."""
    if not (SHARED / "2023_train_topics.json").exists():
        return False
    home = Path(parent or tempfile.mkdtemp()) / "ikat"
    home.mkdir()
    for f in SHARED.iterdir():
        shutil.copy(f, home / f.name)
    os.environ["IR_DATASETS_HOME"] = str(home.parent)
    return True
