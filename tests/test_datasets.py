"""Conversational datasets: registration, official-file lookup, conversation frames, on the real slices in
tests/fixtures (see test_dataset_items.py for counts and items on the full files)."""
import json
import os
import zipfile
from pathlib import Path

import ir_datasets
import pandas as pd
import pyterrier as pt
import pytest

import pyterrier_disco.datasets as dd
from pyterrier_disco.datasets import DocsUnavailableError, MissingOfficialFileError, conversations, mini

FIXTURES = Path(__file__).parent / "fixtures"


def _raw(home, path):
    return json.loads((home / path).read_text())


def _history_texts(h):
    return [(x["role"], x["text"]) for x in h]


def test_register_is_idempotent_and_registers_every_id():
    dd.register()
    dd.register()
    registered = set(ir_datasets.registry)
    assert set(dd.REGISTERED_IDS) <= registered
    assert "trec-cast/v1/2020" in registered  # built-in, left alone


def test_ikat_train_frame_queries_qrels_match_the_official_file(home):
    raw = _raw(home, "ikat/2023_train_topics.json")
    df = conversations("ikat/2023/train")
    assert len(df) == sum(len(t["turns"]) for t in raw)
    assert list(df.columns[:5]) == ["qid", "conversation_id", "turn", "query", "history"]
    by_qid = df.set_index("qid")
    for topic in raw:
        expected_history = []
        for k, turn in enumerate(topic["turns"]):
            row = by_qid.loc[f"{topic['number']}_{turn['turn_id']}"]
            assert row["turn"] == k and row["query"] == turn["utterance"]
            assert row["human_rewrite"] == turn["resolved_utterance"] and row["response"] == turn["response"]
            assert _history_texts(row["history"]) == expected_history
            assert row["ptkb"] == [topic["ptkb"][key] for key in sorted(topic["ptkb"], key=int)]
            expected_history += [("user", turn["utterance"]), ("system", turn["response"])]
    expected_qrels = {(f"{t['number']}_{u['turn_id']}", p) for t in raw for u in t["turns"]
                      for p in u["response_provenance"]}
    qrels = {(q.query_id, q.doc_id) for q in ir_datasets.load("ikat/2023/train").qrels_iter()}
    assert qrels == expected_qrels and len(qrels) > 40
    assert {q for q, _ in qrels} <= set(df["qid"])
    # the same dataset through PyTerrier, and the split / irds: conveniences
    ptds = pt.get_dataset("irds:ikat/2023/train")
    topics = ptds.get_topics("resolved_utterance")
    assert dict(zip(topics.qid, topics["query"])) == dict(zip(df.qid, df.human_rewrite))
    pd.testing.assert_frame_equal(conversations(ptds), df)
    pd.testing.assert_frame_equal(conversations("ikat/2023", split="train"), df)
    pd.testing.assert_frame_equal(conversations("irds:ikat/2023/train"), df)
    assert set(df["dataset"]) == {"ikat/2023/train"}


def test_ikat_docs_are_the_union_of_the_passage_files_present(home):
    ds = ir_datasets.load("ikat/2023/train")
    train_file = home / "ikat/2023_train_topics_psg_text.jsonl"
    with pytest.warns(UserWarning, match="2023_test_topics_psg_text.jsonl") as w:
        only_train = {d.doc_id for d in ds.docs_iter()}
    assert str(home / "ikat") in str(w[0].message)
    assert len(only_train) == len(train_file.read_text().splitlines())
    extra = [{"doc_id": "clueweb22-en0000-00-00000", "passage_id": "7", "passage_text": " A test passage. "},
             # a passage shared with the train file must appear once
             json.loads(train_file.read_text().splitlines()[0])]
    (home / "ikat" / "2023_test_topics_psg_text.jsonl").write_text("\n".join(json.dumps(r) for r in extra) + "\n")
    train_lines = [json.loads(x) for x in train_file.read_text().splitlines() if x.strip()]
    expected = {f"{r['doc_id']}:{r['passage_id']}" for r in train_lines + extra}
    docs = list(ds.docs_iter())
    assert [d.doc_id for d in docs].count(docs[0].doc_id) == 1
    assert {d.doc_id for d in docs} == expected and ds.docs_count() == len(expected)
    assert ds.docs_store().get("clueweb22-en0000-00-00000:7").text == "A test passage."
    judged = {q.doc_id for q in ds.qrels_iter()}
    assert judged <= expected  # every provenance passage is in the collection


def test_ikat_test_split_gives_a_clear_missing_file_error(home):
    with pytest.raises(MissingOfficialFileError) as e:
        conversations("ikat/2023/test")
    msg = str(e.value)
    assert "2023_test_topics.json" in msg and str(home / "ikat") in msg and "irlabamsterdam/iKAT" in msg
    assert "2023_test_topics.json" not in os.listdir(home / "ikat")


def test_missing_file_without_network_leaves_nothing_behind(home, monkeypatch):
    monkeypatch.delenv("DISCO_OFFLINE")  # a real (failing: no internet here) download attempt
    with pytest.raises(MissingOfficialFileError) as e:
        list(ir_datasets.load("ikat/2023/test").queries_iter())
    assert "download failed" in str(e.value)
    assert sorted(os.listdir(home / "ikat")) == sorted(os.listdir(FIXTURES / "ikat"))  # no partial file left


def _first_branch_prefix(raw, qid):
    for topic in raw:
        ids = [f"{topic['number']}_{t['number']}" for t in topic["turn"]]
        if qid in ids:
            return topic["turn"][:ids.index(qid)]


def test_cast2022_history_follows_the_turns_own_branch(home):
    raw = _raw(home, "trec-cast/2022_evaluation_topics_flattened_duplicated_v1.0.json")
    df = conversations("trec-cast/v3/2022")
    unique = {f"{t['number']}_{u['number']}" for t in raw for u in t["turn"]}
    assert len(df) == len(unique) == df.qid.nunique()
    for row in df.itertuples():
        prefix = _first_branch_prefix(raw, row.qid)
        expected = []
        for u in prefix:
            expected.append(("user", u["utterance"]))
            if u.get("response"):
                expected.append(("system", u["response"]))
        assert _history_texts(row.history) == expected, row.qid
        assert row.turn == len(prefix)
    # 132_3-1 continues branch 2 up to 2-9, so 2-11 and 2-13 are not its context
    h = [x["text"] for x in df.set_index("qid").loc["132_3-1", "history"] if x["role"] == "user"]
    turns_132 = {u["number"]: u["utterance"] for t in raw if t["number"] == 132 for u in t["turn"]}
    assert turns_132["2-9"] in h and turns_132["2-11"] not in h
    qrel_qids = {q.query_id for q in ir_datasets.load("trec-cast/v3/2022").qrels_iter()}
    assert qrel_qids and qrel_qids <= set(df.qid)
    queries = {q.query_id: q for q in ir_datasets.load("trec-cast/v3/2022").queries_iter()}
    assert queries["132_2-11"].turn_number == 11 and queries["132_3-1"].topic_number == 132
    with pytest.raises(DocsUnavailableError, match="not available offline"):
        next(iter(ir_datasets.load("trec-cast/v3/2022").docs_iter()))


def test_cast2022_tree_file_follows_parent_links(home):
    tree = [{"number": 200, "turn": [
        {"number": 1, "utterance": "root question", "response": "root answer"},
        {"number": 2, "utterance": "branch A", "response": "answer A", "parent": 1},
        {"number": 3, "utterance": "branch B", "response": "answer B", "parent": 1},
        {"number": 4, "utterance": "follow-up of B", "response": "answer B2", "parent": 3},
    ]}]
    (home / "trec-cast" / "2022_evaluation_topics_flattened_duplicated_v1.0.json").write_text(json.dumps(tree))
    h = conversations("trec-cast/v3/2022").set_index("qid")["history"]
    assert _history_texts(h["200_4"]) == [("user", "root question"), ("system", "root answer"),
                                          ("user", "branch B"), ("system", "answer B")]
    assert _history_texts(h["200_3"]) == [("user", "root question"), ("system", "root answer")]


def test_cast2020_builtin_frame(home):
    # ir_datasets' built-in loader reads its own folder ($IR_DATASETS_HOME/trec-cast/2020/<official name> when it
    # was imported): the irds_home fixture copied the slice there
    raw = _raw(home, "trec-cast/2020/2020_manual_evaluation_topics_v1.0.json")
    with pytest.warns(UserWarning, match="msmarco-passage, car/v2.0 not on disk"):
        df = conversations("trec-cast/v1/2020")
    assert len(df) == sum(len(t["turn"]) for t in raw)
    row = df.set_index("qid").loc[f"{raw[0]['number']}_{raw[0]['turn'][3]['number']}"]
    assert _history_texts(row["history"]) == [("user", t["raw_utterance"]) for t in raw[0]["turn"][:3]]
    assert row["automatic_rewrite"] == raw[0]["turn"][3]["automatic_rewritten_utterance"]
    assert row["human_rewrite"] == raw[0]["turn"][3]["manual_rewritten_utterance"]
    assert not df["response_available"].any() and (df["response"] == "").all()  # said, not silent
    qrel_qids = {q.query_id for q in ir_datasets.load("trec-cast/v1/2020").qrels_iter()}
    assert qrel_qids and qrel_qids <= set(df.qid)


def test_cast2020_history_holds_the_canonical_passages_where_the_collection_has_them(home):
    from pyterrier_disco.datasets import cast_builtin
    raw = _raw(home, "trec-cast/2020/2020_manual_evaluation_topics_v1.0.json")
    turns = raw[0]["turn"]
    known = {t["manual_canonical_result_id"]: f"text of {t['manual_canonical_result_id']}" for t in turns[:2]}
    asked = []

    def lookup(docnos):  # stands in for the local msmarco-passage / car docstores: knows two of the passages
        asked.extend(docnos)
        return {d: known[d] for d in docnos if d in known}
    df = pd.DataFrame(cast_builtin.rows_2020(ir_datasets.load("trec-cast/v1/2020"), lookup=lookup)).set_index("qid")
    assert set(asked) == {t["manual_canonical_result_id"] for topic in raw for t in topic["turn"]}
    qid = f"{raw[0]['number']}_{turns[3]['number']}"
    assert _history_texts(df.loc[qid, "history"]) == [
        ("user", turns[0]["raw_utterance"]), ("system", known[turns[0]["manual_canonical_result_id"]]),
        ("user", turns[1]["raw_utterance"]), ("system", known[turns[1]["manual_canonical_result_id"]]),
        ("user", turns[2]["raw_utterance"])]
    assert df.loc[qid, "turn"] == 3
    first = df.loc[f"{raw[0]['number']}_{turns[0]['number']}"]
    assert first["response_available"] and first["response"] == known[turns[0]["manual_canonical_result_id"]]
    assert not df.loc[qid, "response_available"] and df.loc[qid, "response"] == ""


def test_cast2019_builtin_frame_has_the_manual_rewrites(home):
    raw = _raw(home, "trec-cast/2019/evaluation_topics_v1.0.json")
    rewrites = dict(line.rstrip("\r\n").split("\t") for line in
                    (home / "trec-cast/2019/evaluation_topics_annotated_resolved_v1.0.tsv").read_text().splitlines())
    df = conversations("trec-cast/v1/2019")
    assert len(df) == sum(len(t["turn"]) for t in raw) == len(rewrites)
    for topic in raw:
        for k, turn in enumerate(topic["turn"]):
            row = df.set_index("qid").loc[f"{topic['number']}_{turn['number']}"]
            assert row["query"] == turn["raw_utterance"] and row["turn"] == k
            assert row["human_rewrite"] == rewrites[f"{topic['number']}_{turn['number']}"].strip()
            assert _history_texts(row["history"]) == [("user", t["raw_utterance"]) for t in topic["turn"][:k]]
    tsv = home / "trec-cast/2019/evaluation_topics_annotated_resolved_v1.0.tsv"
    tsv.write_text("".join(tsv.read_text().splitlines(keepends=True)[1:]))  # the first turn's rewrite removed
    with pytest.warns(UserWarning, match="1 turn\\(s\\) have no manual rewrite"):
        assert conversations("trec-cast/v1/2019")["human_rewrite"].iloc[0] == ""
    tsv.unlink()
    with pytest.raises(MissingOfficialFileError, match="evaluation_topics_annotated_resolved_v1.0.tsv"):
        conversations("trec-cast/v1/2019")


def test_cast2021_history_holds_the_canonical_passages(home):
    raw = _raw(home, "trec-cast/2021_manual_evaluation_topics_v1.0.json")
    df = conversations("trec-cast/v2/2021").set_index("qid")
    assert len(df) == sum(len(t["turn"]) for t in raw)
    for topic in raw:
        expected = []
        for k, turn in enumerate(topic["turn"]):
            row = df.loc[f"{topic['number']}_{turn['number']}"]
            assert row["query"] == turn["raw_utterance"] and row["turn"] == k
            assert row["human_rewrite"] == turn["manual_rewritten_utterance"]
            assert row["automatic_rewrite"] == turn["automatic_rewritten_utterance"]
            assert row["response"] == turn["passage"]
            assert row["canonical_passage_id"] == f"{turn['canonical_result_id']}-{turn['passage_id']}"
            assert _history_texts(row["history"]) == expected
            expected += [("user", turn["raw_utterance"]), ("system", turn["passage"])]
    queries = {q.query_id: q for q in ir_datasets.load("trec-cast/v2/2021").queries_iter()}
    first = raw[0]["turn"][0]
    q = queries[f"{raw[0]['number']}_{first['number']}"]
    assert (q.manual_rewritten_utterance, q.canonical_result_id) == (first["manual_rewritten_utterance"],
                                                                      first["canonical_result_id"])
    with pytest.raises(MissingOfficialFileError, match="trec-cast-qrels-docs.2021.qrel"):
        list(ir_datasets.load("trec-cast/v2/2021").qrels_iter())
    with pytest.raises(DocsUnavailableError, match="CAsT 2021"):
        next(iter(ir_datasets.load("trec-cast/v2/2021").docs_iter()))


def test_ikat2024_frame_and_provenance_qrels(home):
    raw = _raw(home, "ikat/2024_test_topics.json")
    df = conversations("ikat/2024/test").set_index("qid")
    assert len(df) == sum(len(t["turns"]) for t in raw)
    topic = raw[1]
    for k, turn in enumerate(topic["turns"]):
        row = df.loc[f"{topic['number']}_{turn['turn_id']}"]
        assert (row["query"], row["human_rewrite"], row["response"]) == (
            turn["utterance"], turn["resolved_utterance"], turn["response"])
        assert row["ptkb"] == [topic["ptkb"][key] for key in sorted(topic["ptkb"], key=int)]
        assert [x["text"] for x in row["history"]] == [x for t in topic["turns"][:k]
                                                       for x in (t["utterance"], t["response"])]
    qrels = {(q.query_id, q.doc_id) for q in ir_datasets.load("ikat/2024/test").qrels_iter()}
    assert qrels == {(f"{t['number']}_{u['turn_id']}", p) for t in raw for u in t["turns"]
                     for p in u["response_provenance"]}
    with pytest.raises(DocsUnavailableError, match="ClueWeb22"):
        dd.doc_lookup("ikat/2024/test")


def test_topiocqa_frame_and_gold_passage_qrels(home):
    raw = _raw(home, "topiocqa/topiocqa_dev.json")
    df = conversations("topiocqa/dev")
    assert len(df) == len(raw)
    row = df.set_index("qid").loc[f"{raw[5]['Conversation_no']}_{raw[5]['Turn_no']}"]
    assert [x["text"] for x in row["history"]] == raw[5]["Context"] and row["response"] == raw[5]["Answer"]
    assert [x["role"] for x in row["history"]] == ["user", "system"] * (len(raw[5]["Context"]) // 2)
    with pytest.raises(MissingOfficialFileError, match="Gold_passage"):  # 2021 release
        list(ir_datasets.load("topiocqa/dev").qrels_iter())
    for i, t in enumerate(raw[:3]):  # the later release carries gold passages
        t["Gold_passage"] = {"id": f"wiki:{1000 + i}", "title": "T", "text": "x"}
    (home / "topiocqa" / "topiocqa_dev.json").write_text(json.dumps(raw[:3]))
    qrels = [(q.query_id, q.doc_id, q.relevance) for q in ir_datasets.load("topiocqa/dev").qrels_iter()]
    assert qrels == [(f"{t['Conversation_no']}_{t['Turn_no']}", str(1000 + i), 1) for i, t in enumerate(raw[:3])]


def test_qrecc_fixture_through_the_official_archive_layout(home):
    folder = home / "qrecc"
    folder.mkdir()  # the made-up QReCC files, as the official archives hold them
    with zipfile.ZipFile(folder / "qrecc_data.zip", "w") as zf:  # the official archive layout
        for split in ("train", "test"):
            zf.write(FIXTURES / "qrecc" / f"qrecc_{split}.json", f"qrecc_{split}.json")
    with zipfile.ZipFile(folder / "passages.zip", "w") as zf:
        zf.write(FIXTURES / "qrecc" / "passages.jsonl", "collection-paragraph/commoncrawl/part-0.jsonl")
    raw = json.loads((FIXTURES / "qrecc" / "qrecc_test.json").read_text())
    df = conversations("qrecc/test")
    assert len(df) == len(raw)
    for t, row in zip(raw, df.itertuples()):
        assert row.qid == f"{t['Conversation_no']}_{t['Turn_no']}" and row.query == t["Question"]
        assert [x["text"] for x in row.history] == t["Context"] and row.human_rewrite == t["Rewrite"]
        assert row.turn == t["Turn_no"] - 1
    ds = ir_datasets.load("qrecc/test")
    assert {(q.query_id, q.doc_id) for q in ds.qrels_iter()} == {
        (f"{t['Conversation_no']}_{t['Turn_no']}", p) for t in raw for p in t["Truth_passages"]}
    docs = {d.doc_id: d.text for d in ds.docs_iter()}
    assert len(docs) == 5 and all(q.doc_id in docs for q in ds.qrels_iter())
    assert len(conversations("qrecc/train")) == 2
    (folder / "qrecc_data.zip").unlink()
    with pytest.raises(MissingOfficialFileError) as e:
        conversations("qrecc/test")
    assert "qrecc_test.json" in str(e.value) and str(folder) in str(e.value)


def _write_mini(folder, n_conv):
    parts = [{"passages": [], "conversations": []}, {"passages": [], "conversations": []}]
    for c in range(n_conv):
        part = parts[c % 2]
        part["passages"].append({"docno": f"d{c}", "topic": f"t{c}", "text": f"passage {c}"})
        part["conversations"].append({"conversation_id": f"c{c:02d}", "turns": [
            {"utterance": f"q{c}a", "rewrite": f"rw{c}a", "response": f"r{c}a", "relevant": [f"d{c}"]},
            {"utterance": f"q{c}b", "rewrite": f"rw{c}b", "response": f"r{c}b", "relevant": [f"d{c}", "dX"]},
        ]})
    parts[1]["passages"].append({"docno": "dX", "topic": "shared", "text": "shared passage"})
    parts[0]["passages"].append({"docno": "dX", "topic": "shared", "text": "shared passage"})
    folder.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(parts):
        (folder / f"part{i + 1}.json").write_text(json.dumps(p))


def test_disco_mini_loader_split_and_qrels(tmp_path):
    _write_mini(tmp_path / "mini", 23)
    ids = sorted(f"c{c:02d}" for c in range(23))
    expected_test = {cid for i, cid in enumerate(ids) if i % 10 in (2, 5, 8)}
    test_frame, train_frame = mini.rows("test", tmp_path / "mini"), mini.rows("train", tmp_path / "mini")
    assert {r["conversation_id"] for r in test_frame} == expected_test
    assert {r["conversation_id"] for r in train_frame} == set(ids) - expected_test
    ds = mini.build("test", tmp_path / "mini")
    assert ds.docs_count() == 24  # 23 + the shared one, deduplicated
    qrels = {(q.query_id, q.doc_id) for q in ds.qrels_iter()}
    assert qrels == {(f"{cid}_{k}", d) for cid in expected_test for k, d in
                     [(1, f"d{int(cid[1:])}"), (2, f"d{int(cid[1:])}"), (2, "dX")]}
    df = conversations(ds)
    second = df[df.turn == 1].iloc[0]
    c = int(second.conversation_id[1:])
    assert _history_texts(second.history) == [("user", f"q{c}a"), ("system", f"r{c}a")]
    assert second.human_rewrite == f"rw{c}b" and second.qid == f"{second.conversation_id}_2"


def test_unknown_dataset_lists_the_known_ids():
    with pytest.raises(ValueError) as e:
        conversations("ikat/2099/train")
    for known in ["ikat/2023/train", "ikat/2024/test", "trec-cast/v3/2022", "trec-cast/v2/2021", "topiocqa/dev",
                  "qrecc/test", "disco-mini/train", "trec-cast/v1/2020", "trec-cast/v1/2019",
                  "trec-cast/v3/2022/topic-passages"]:
        assert known in str(e.value)
    with pytest.raises(ValueError, match="known ids"):
        conversations(ir_datasets.load("vaswani"))


def test_malformed_and_empty_turns(home):
    raw = _raw(home, "ikat/2023_train_topics.json")
    n_turns = sum(len(t["turns"]) for t in raw)
    t0 = raw[0]["number"]
    del raw[0]["turns"][2]["utterance"]
    raw[0]["turns"][4]["utterance"] = "  "
    (home / "ikat" / "2023_train_topics.json").write_text(json.dumps(raw))
    with pytest.warns(UserWarning) as record:
        df = conversations("ikat/2023/train")
    messages = [str(w.message) for w in record]
    assert any(f"{t0}_3" in m and "malformed" in m for m in messages)
    assert any(f"{t0}_5" in m and "empty utterance" in m for m in messages)
    assert len(df) == n_turns - 1 and f"{t0}_3" not in set(df.qid) and f"{t0}_5" in set(df.qid)
    later = df.set_index("qid").loc[f"{t0}_6"]
    assert len(later["history"]) == 8  # turns 1, 2, 4, 5 with their responses; the skipped turn is gone
