"""Several datasets at once: namespaced qids and docnos, one pooled corpus, the dataset of each row."""
import pandas as pd
import pytest

import pyterrier_disco.datasets as dd


POOL = ["ikat/2023/train", "ikat/2024/test", "trec-cast/v3/2022/topic-passages"]


def test_pooled_frame_namespaces_qids_and_records_the_dataset(home):
    pooled = dd.conversations(POOL)
    parts = {ds_id: dd.conversations(ds_id) for ds_id in POOL}
    assert len(pooled) == sum(len(p) for p in parts.values()) and pooled["qid"].is_unique
    assert list(pooled.columns[:5]) == ["qid", "conversation_id", "turn", "query", "history"]
    assert pooled.columns[-1] == "dataset"
    for ds_id, part in parts.items():
        rows = pooled[pooled["dataset"] == ds_id]
        assert [dd.split_id(q) for q in rows["qid"]] == [(ds_id, q) for q in part["qid"]]
        assert [dd.split_id(c)[1] for c in rows["conversation_id"]] == list(part["conversation_id"])
        assert list(rows["query"]) == list(part["query"]) and list(rows["history"]) == list(part["history"])
    assert pooled[pooled["dataset"] != "trec-cast/v3/2022/topic-passages"]["ptkb"].notna().all()
    # the same call as one comma-separated string; a single id keeps its own ids unless asked
    pd.testing.assert_frame_equal(dd.conversations(",".join(POOL)), pooled)
    single = dd.conversations(["ikat/2023/train"])
    pd.testing.assert_frame_equal(single, parts["ikat/2023/train"])
    assert (dd.conversations("ikat/2023/train", namespace=True)["qid"] ==
            "ikat/2023/train::" + single["qid"]).all()


def test_overlapping_qids_and_docnos_cannot_collide(home):
    # a collection and its topic-passages variant share every qid
    a, b = "ikat/2023/train", "ikat/2023/train/topic-passages"
    shared_qids = set(dd.conversations(a)["qid"]) & set(dd.conversations(b)["qid"])
    assert shared_qids
    pooled = dd.qrels([a, b])
    assert pooled.groupby("qid")["docno"].apply(lambda d: {dd.split_id(x)[0] for x in d}).map(len).max() == 1
    for ds_id, corpus in [(a, "ikat/2023"), (b, b)]:
        part = dd.qrels(ds_id)
        rows = pooled[pooled["qid"].map(lambda q: dd.split_id(q)[0]) == ds_id]
        assert list(rows["qid"]) == [f"{ds_id}::{q}" for q in part["qid"]]
        assert list(rows["docno"]) == [f"{corpus}::{d}" for d in part["docno"]]  # docnos by corpus
    assert not dd.qrels([a, b], namespace=False)["qid"].is_unique  # what namespacing prevents


def test_one_pooled_corpus_each_collection_once_and_its_lookup(home):
    pool = ["disco-mini/train", "disco-mini/test", "ikat/2023/train"]  # the disco-mini splits share a corpus
    with pytest.warns(UserWarning, match="2023_test_topics_psg_text.jsonl"):
        records = list(dd.docs_iter(pool))
    mini = list(dd.docs_iter("disco-mini/train"))
    with pytest.warns(UserWarning):
        ikat = list(dd.docs_iter("ikat/2023/train"))
    assert len(records) == len(mini) + len(ikat) and len({r["docno"] for r in records}) == len(records)
    assert {dd.split_id(r["docno"])[0] for r in records} == {"disco-mini", "ikat/2023"}
    texts = {r["docno"]: r["text"] for r in records}
    qrels = dd.qrels(pool)
    assert set(qrels["docno"]) <= set(texts)  # every judged passage is in the pooled corpus
    with pytest.warns(UserWarning):
        lookup = dd.doc_lookup(pool)
    sample = list(qrels["docno"][::7])
    assert lookup(sample) == [texts[d] for d in sample]
    with pytest.raises(KeyError, match="no corpus 'qrecc'"):
        lookup(["qrecc::1"])
    with pytest.raises(KeyError):
        lookup(["disco-mini::no-such-doc"])


def test_bad_pools_are_clear_errors(home):
    with pytest.raises(ValueError) as e:
        dd.conversations(["ikat/2023/train", "ikat/2099/train", "cast/2022"])
    msg = str(e.value)
    assert "'ikat/2099/train'" in msg and "'cast/2022'" in msg and "known ids:" in msg
    assert "trec-cast/v3/2022/topic-passages" in msg
    with pytest.raises(ValueError, match="more than once"):
        dd.qrels("ikat/2023/train, ikat/2023/train")
    with pytest.raises(ValueError, match="empty dataset id"):
        dd.conversations("ikat/2023/train,")
    with pytest.raises(ValueError, match="split="):
        dd.conversations(["ikat/2023/train"], split="train")
    with pytest.raises(ValueError, match="split_id|namespaced"):
        dd.split_id("12-1_3")
    assert dd.dataset_ids(" irds:ikat/2023/train , disco-mini/test") == ["ikat/2023/train", "disco-mini/test"]
    # documents may come from any ir_datasets collection (conversations and qrels need a conversational one)
    assert dd.dataset_ids(["vaswani", "disco-mini/train"], any_collection=True) == ["vaswani", "disco-mini/train"]
    with pytest.raises(ValueError, match="'vaswani' is not a known conversational dataset"):
        dd.conversations(["vaswani", "disco-mini/train"])
    with pytest.raises(ValueError, match="or any ir_datasets id"):
        dd.docs_iter("no-such/collection")
