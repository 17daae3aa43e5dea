"""The /topic-passages corpora: each turn's own passages are its positives, no turn sees its positive in its
history, and everything is checked against the topic files (slices here; full-file counts in
test_dataset_items.py)."""
import json

import ir_datasets
import pytest

import pyterrier_disco.datasets as dd

VARIANTS = ["trec-cast/v2/2021/topic-passages", "trec-cast/v3/2022/topic-passages", "ikat/2023/train/topic-passages",
            "ikat/2024/test/topic-passages"]


def _expected(home, ds_id):
    """``{qid: {docno: text}}``, each turn's own passages read straight from the topic file (and the iKAT 2023
    passage file), before the leakage rule."""
    raw = json.loads((home / {
        "trec-cast/v2/2021/topic-passages": "trec-cast/2021_manual_evaluation_topics_v1.0.json",
        "trec-cast/v3/2022/topic-passages": "trec-cast/2022_evaluation_topics_flattened_duplicated_v1.0.json",
        "ikat/2023/train/topic-passages": "ikat/2023_train_topics.json",
        "ikat/2024/test/topic-passages": "ikat/2024_test_topics.json"}[ds_id]).read_text())
    own = {}
    if ds_id.startswith("trec-cast/v2"):
        for t in raw:
            for u in t["turn"]:
                own[f"{t['number']}_{u['number']}"] = {f"{u['canonical_result_id']}-{u['passage_id']}": u["passage"]}
    elif ds_id.startswith("trec-cast/v3"):
        for t in raw:
            for u in t["turn"]:
                own.setdefault(f"{t['number']}_{u['number']}", {f"{t['number']}_{u['number']}:response": u.get(
                    "response", "")})  # a turn repeated in several branches: its first copy
    else:
        passages = {}
        if ds_id.startswith("ikat/2023"):
            for line in (home / "ikat/2023_train_topics_psg_text.jsonl").read_text().splitlines():
                r = json.loads(line)
                passages[f"{r['doc_id']}:{r['passage_id']}"] = r["passage_text"]
        for t in raw:
            for u in t["turns"]:
                qid = f"{t['number']}_{u['turn_id']}"
                own[qid] = {f"{qid}:response": u["response"]}
                if ds_id.startswith("ikat/2023"):
                    own[qid].update({p: passages[p] for p in u["response_provenance"]})
    return own


@pytest.mark.parametrize("ds_id", VARIANTS)
def test_each_turn_has_its_own_passages_as_positives_and_never_in_its_history(home, ds_id):
    ds = ir_datasets.load(ds_id)
    docs = {d.doc_id: d.text for d in ds.docs_iter()}
    frame = dd.conversations(ds_id).set_index("qid")
    qrels = dd.qrels(ds_id)
    expected = _expected(home, ds_id)
    by_turn = qrels.groupby("qid")["docno"].apply(set).to_dict()
    assert set(by_turn) == set(frame.index) == {q.query_id for q in ds.queries_iter()}
    assert (qrels["label"] == 1).all() and len(docs) == ds.docs_count()
    base = dd.conversations(ds_id.rsplit("/", 1)[0]).set_index("qid")
    for qid, row in base.iterrows():
        said = {h["text"].strip() for h in row["history"]}
        first_texts = {}
        for docno, text in expected[qid].items():  # a docno given two texts keeps its first
            first_texts[docno] = docs.get(docno, text.strip())
        positives = {d for d, text in first_texts.items() if text.strip() and text.strip() not in said}
        if positives:
            assert by_turn[qid] == positives, qid
            assert all(docs[d] == first_texts[d] for d in positives)
            assert not any(docs[d] in said for d in by_turn[qid])  # no leakage
            assert frame.loc[qid, "history"] == row["history"]  # the full history, dropped turns included
        else:
            assert qid not in frame.index  # no positive left: not a query of the variant
    # the corpus: every passage of the topic file, once
    assert set(docs) == {d for own in expected.values() for d, text in own.items() if text.strip()}


def test_cast2021_turns_whose_canonical_passage_is_already_in_their_history_are_left_out(home):
    full = dd.conversations("trec-cast/v2/2021").set_index("qid")
    kept = set(dd.conversations("trec-cast/v2/2021/topic-passages")["qid"])
    dropped = set(full.index) - kept
    # in the slice: 106_5 cites the passage id of 106_4 (the file gives it another text); the first text is
    # kept, and that one is in 106_5's history
    assert dropped == {"106_5"}
    assert full.loc["106_4", "canonical_passage_id"] == full.loc["106_5", "canonical_passage_id"]
    assert dd.doc_lookup("trec-cast/v2/2021/topic-passages")([full.loc["106_5", "canonical_passage_id"]]) == [
        full.loc["106_4", "response"].strip()]


def test_variant_corpora_index_and_pool(home):
    records = list(dd.docs_iter("ikat/2024/test/topic-passages"))
    assert all(set(r) == {"docno", "text"} and r["text"] for r in records)
    # a collection and its own topic-passages variant would put the same passages in one index twice
    with pytest.raises(ValueError, match="hold the same passages"):
        list(dd.docs_iter(["ikat/2023/train", "ikat/2023/train/topic-passages"]))
    pooled = list(dd.docs_iter(["ikat/2024/test/topic-passages", "trec-cast/v2/2021/topic-passages"]))
    assert len(pooled) == len(records) + len(list(dd.docs_iter("trec-cast/v2/2021/topic-passages")))
