"""Validity of the embedded disco-mini collection, on the real shipped files."""
import json
import re
from collections import Counter
from pathlib import Path

import ir_datasets
import pytest

import pyterrier_disco as disco

DATA = Path(disco.__file__).parent / "data" / "disco_mini"


@pytest.fixture(scope="module")
def parts():
    files = sorted(DATA.glob("part*.json"))
    assert files, f"no disco-mini part files in {DATA}"
    return [json.loads(f.read_text()) for f in files]


def test_collection_size_and_passages(parts):
    passages = [p for part in parts for p in part["passages"]]
    assert len(passages) >= 400
    assert len({p["topic"] for p in passages}) >= 40
    assert all(40 <= len(p["text"].split()) <= 120 for p in passages)
    docnos = [p["docno"] for p in passages]
    assert len(set(docnos)) == len(docnos)
    normalised = [re.sub(r"\W+", " ", p["text"].lower()).strip() for p in passages]
    assert len(set(normalised)) == len(normalised), "two passages are identical"
    assert min(Counter(p["topic"] for p in passages).values()) >= 5  # several passages per topic


def test_conversations_turns_rewrites_and_qrels(parts):
    docnos = {p["docno"] for part in parts for p in part["passages"]}
    conversations = [c for part in parts for c in part["conversations"]]
    assert len(conversations) >= 100
    for conv in conversations:
        assert 5 <= len(conv["turns"]) <= 10, conv["conversation_id"]
        for turn in conv["turns"]:
            assert turn["utterance"].strip() and turn["rewrite"].strip() and turn["response"].strip()
            assert turn["relevant"] and set(turn["relevant"]) <= docnos, (conv["conversation_id"], turn["relevant"])
    # context dependence: many later utterances differ from their self-contained rewrite
    later = [t for c in conversations for t in c["turns"][1:]]
    assert sum(t["utterance"] != t["rewrite"] for t in later) / len(later) > 0.8


def test_registered_splits_are_disjoint_and_consistent(parts):
    train, test = disco.conversations("disco-mini/train"), disco.conversations("disco-mini/test")
    assert not set(train["conversation_id"]) & set(test["conversation_id"])
    n = len(set(train["conversation_id"])) + len(set(test["conversation_id"]))
    assert n == sum(len(p["conversations"]) for p in parts)
    assert 0.6 <= len(set(train["conversation_id"])) / n <= 0.8
    for split, frame in (("train", train), ("test", test)):
        ds = ir_datasets.load(f"disco-mini/{split}")
        judged = {q.query_id for q in ds.qrels_iter()}
        assert judged == set(frame["qid"])
        assert frame["human_rewrite"].str.strip().astype(bool).all()
        assert ds.docs_count() == sum(len(p["passages"]) for p in parts)
