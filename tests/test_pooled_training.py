"""Training on several collections at once (issue 11 item 3) and the recipe options of the transfer search
(MSE term, frozen embeddings, responses in the input), on the committed slices of the official files."""
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import pyterrier_disco as disco
import pyterrier_disco.datasets as dd
from pyterrier_disco.train import LossConfig, TrainConfig, build_teacher_run, kld, mse, resolve_teachers
from pyterrier_disco.train.data import limit_turns, training_data
from pyterrier_disco.train.trainer import Trainer, train

JUDGED = ["ikat/2023/train/topic-passages", "trec-cast/v3/2022/topic-passages"]
NO_CORPUS = "trec-cast/v1/2019"  # its collection is not here: trained on the teacher's top documents
SMALL = dict(batch_size=4, n_negatives=4, epochs=1, max_length=64, lr=1e-4)
PER_DATASET = 6


@pytest.fixture(scope="module")
def pool(tmp_path_factory, splade_model):
    """A pooled index of two topic-passage corpora and a human-rewrite teacher run of three datasets over it
    (the committed slices in a module-wide IR_DATASETS_HOME)."""
    import shutil

    from conftest import FIXTURES, _builtin_cast_paths
    from pyterrier_disco.index import index_dataset

    root = tmp_path_factory.mktemp("irds")
    for folder in ("ikat", "trec-cast"):
        shutil.copytree(FIXTURES / folder, root / folder)
    for target in _builtin_cast_paths():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / "trec-cast" / target.parent.name / target.name, target)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IR_DATASETS_HOME", str(root))
        dd.register()
        splade = disco.Splade(splade_model)
        index = index_dataset(",".join(JUDGED), tmp_path_factory.mktemp("pool") / "idx", splade=splade,
                              verbose=False)
        ids = JUDGED + [NO_CORPUS]
        frame = limit_turns(dd.conversations(ids), PER_DATASET)
        run = build_teacher_run(frame, resolve_teachers(["human"], frame), splade, index, k=50, verbose=False)
        yield ids, run


def test_limit_turns_keeps_the_first_turns_of_each_dataset(pool):
    ids, _ = pool
    frame = dd.conversations(ids)
    cut = limit_turns(frame, 3)
    assert list(cut["dataset"].value_counts(sort=False)) == [3, 3, 3]
    for ds_id in ids:
        assert list(cut[cut["dataset"] == ds_id]["qid"]) == list(frame[frame["dataset"] == ds_id]["qid"][:3])
    assert limit_turns(frame, None) is frame
    assert list(limit_turns(dd.conversations(ids[0]), 2)["qid"]) == list(dd.conversations(ids[0])["qid"][:2])


def test_pooled_training_data_namespaces_positives_and_falls_back_to_teacher_tops(pool):
    ids, run = pool
    assert run.attrs["teacher_run"]["datasets"] == ids
    data = training_data(ids, run, docs=JUDGED, limit=PER_DATASET)
    assert data.datasets == ids and data.doc_datasets == JUDGED and data.teacher_top == [NO_CORPUS]
    assert data.provenance()["teacher_top_datasets"] == [NO_CORPUS]
    assert len(data.conversations) == 3 * PER_DATASET and set(run["qid"]) <= set(data.conversations["qid"])
    # positives: the judged datasets' qrels, qids and docnos namespaced like the run's
    expected = dd.qrels(JUDGED)
    pd.testing.assert_frame_equal(data.qrels.reset_index(drop=True), expected.reset_index(drop=True))
    assert set(data.qrels["docno"]) & set(run["docno"])
    texts = {r["docno"]: r["text"] for r in dd.docs_iter(JUDGED)}
    sample = list(run["docno"].drop_duplicates()[:5])
    assert data.docs(sample) == [texts[d] for d in sample]
    # a dataset without judged documents in the pool takes the teacher's top document, with a warning
    from pyterrier_disco.train.sampling import build_examples
    with pytest.warns(UserWarning, match=f"{NO_CORPUS}: no turn in the qrels"):
        examples = build_examples(data.conversations, run, data.qrels, n_negatives=4, seed=1)
    by_qid = {e.qid: e for e in examples}
    tops = run.sort_values("score", ascending=False).drop_duplicates("qid").set_index("qid")["docno"]
    cast2019 = [q for q in data.conversations["qid"] if dd.split_id(q)[0] == NO_CORPUS and q in by_qid]
    assert cast2019 and all(by_qid[q].docnos[0] == tops[q] for q in cast2019)
    judged = [q for q in by_qid if q in set(data.qrels["qid"])]
    positives = data.qrels.groupby("qid")["docno"].apply(set)
    assert judged and all(by_qid[q].docnos[0] in positives[q] for q in judged)


def test_pooled_training_records_its_datasets(pool, tmp_path, splade_model):
    ids, run = pool
    data = training_data(ids, run, docs=JUDGED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        student = train(data.conversations, run, data.docs, tmp_path / "s", qrels=data.qrels, doc_model=splade_model,
                        config=TrainConfig(**SMALL, max_steps=2), verbose=False,
                        provenance=data.provenance())
    recipe = student.meta["recipe"]
    assert recipe["datasets"] == ids and recipe["doc_datasets"] == JUDGED and recipe["dataset"] == ",".join(ids)


def test_pooled_training_data_errors(pool):
    ids, run = pool
    with pytest.raises(ValueError, match="'ikat/2099/train'"):
        training_data(["ikat/2099/train"], run)
    with pytest.raises(ValueError, match="not namespaced"):
        training_data(ids, run.assign(docno=run["docno"].map(lambda d: dd.split_id(d)[1])), docs=JUDGED)
    with pytest.raises(ValueError, match="do not hold"):  # the run retrieved from a corpus --docs does not give
        training_data(ids, run, docs=[JUDGED[0], "ikat/2024/test/topic-passages"])


def test_a_collection_without_human_rewrites_is_a_clear_error(home):
    frame = dd.conversations(["ikat/2023/train", "topiocqa/dev"])
    with pytest.raises(ValueError, match="topiocqa/dev has no human_rewrite"):
        resolve_teachers(["human"], frame)
    with pytest.raises(KeyError, match="'nope'"):
        build_teacher_run(frame, {"t": "nope"}, None, None)


def test_the_mse_term_adds_to_the_score_loss():
    rng = np.random.default_rng(7)
    q, docs, rewrite = rng.random((3, 11)), rng.random((3, 5, 11)), rng.random((3, 11))
    teacher = rng.normal(size=(3, 5))
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    student = np.einsum("bv,bcv->bc", q, docs)
    distil = kld(t(student), t(teacher)).item()
    parts = LossConfig("kld", mse_weight=50.0).compute(t(q), t(docs), t(teacher), t(rewrite))
    assert parts["mse"].item() == pytest.approx(float(np.mean((q - rewrite) ** 2)))
    assert parts["loss"].item() == pytest.approx(distil + 50.0 * float(np.mean((q - rewrite) ** 2)))
    assert LossConfig("kld", mse_weight=50.0).needs_teacher_queries and not LossConfig("kld").needs_teacher_queries
    base = LossConfig.preset(TrainConfig().loss).compute(t(q), t(docs), t(teacher))["loss"].item()
    extra = TrainConfig(mse_weight=2.0).loss_config().compute(t(q), t(docs), t(teacher), t(rewrite))
    assert extra["loss"].item() == pytest.approx(base + 2.0 * mse(t(q), t(rewrite)).item())
    for bad in (dict(name="kld", mse_weight=-1.0), dict(name="mse", mse_weight=1.0)):
        with pytest.raises(ValueError, match="mse_weight"):
            LossConfig(**bad)


@pytest.fixture(scope="module")
def ikat_setup(ikat_home, ikat_index, splade_model):
    index, _ = ikat_index
    frame = disco.conversations("ikat/2023/train")
    subset = frame[frame["turn"] > 1].head(8).reset_index(drop=True)
    run = build_teacher_run(subset, {"human": "human_rewrite"}, disco.Splade(splade_model), index, k=50,
                            verbose=False)
    return subset, run, dd.qrels("ikat/2023/train"), dd.doc_lookup("ikat/2023/train")


def test_frozen_embeddings_stay_bit_identical_and_the_rest_learns(ikat_setup, tmp_path, splade_model):
    frame, run, positives, docs = ikat_setup
    trainer = Trainer(frame, run, docs, tmp_path / "f", qrels=positives, doc_model=splade_model, verbose=False,
                      config=TrainConfig(**SMALL, freeze_embeddings=True, mse_weight=100.0, max_steps=2))
    before = {n: p.detach().clone() for n, p in trainer.student.mlm.named_parameters()}
    student = trainer.train()
    after = dict(student.query_model.mlm.named_parameters())
    embeddings = "bert.embeddings.word_embeddings.weight"
    assert torch.equal(after[embeddings], before[embeddings])
    decoder = student.query_model.mlm.get_output_embeddings().weight
    assert torch.equal(decoder, before[embeddings])  # tied: the output layer is frozen with them
    changed = [n for n in before if not torch.equal(after[n], before[n])]
    assert any("encoder.layer" in n for n in changed)
    log = pd.read_csv(tmp_path / "f" / "train_log.csv")
    assert (log["mse"] > 0).all()


def test_the_input_options_reach_the_student_and_its_saved_formatter(ikat_setup, tmp_path, splade_model):
    frame, run, positives, docs = ikat_setup
    config = TrainConfig(**SMALL, include_responses=False, max_steps=1)
    trainer = Trainer(frame, run, docs, tmp_path / "r", qrels=positives, doc_model=splade_model, config=config,
                      verbose=False)
    batch = trainer.batch(0, 0)
    rows = frame.set_index("qid").loc[[e.qid for e in batch]]
    responses = [t["text"].strip() for h in rows["history"] for t in h if t["role"] == "system" and t["text"].strip()]
    texts = trainer.query_texts(batch)
    assert responses and not any(r[:40] in " ".join(texts) for r in responses)
    student = trainer.train()
    assert student.formatter.include_responses is False
    reloaded = disco.DiSCo.from_pretrained(tmp_path / "r")
    assert reloaded.formatter.include_responses is False
    cut = Trainer(frame, run, docs, tmp_path / "c", qrels=positives, doc_model=splade_model, verbose=False,
                  config=TrainConfig(**{**SMALL, "max_length": 512}, max_response_tokens=5))
    tok = cut.student.tokenizer
    for text, history in zip(cut.query_texts(batch), rows["history"]):
        segments = text.split(" [SEP] ")  # q_n, a_{n-1}, q_{n-1}, ... (no empty turn in these conversations)
        assert len(segments) == 1 + len(history) and len(history) >= 2
        assert all(len(tok.tokenize(s)) <= 5 for s in segments[1::2])  # every response: its first 5 tokens
        assert any(len(tok.tokenize(s)) > 5 for s in segments[2::2])  # the utterances are not cut


def test_bool_options_on_the_command_line():
    from pyterrier_disco.cli import build_parser

    parser = build_parser()
    base = ["train", "--dataset", "ikat/2023/train", "--teacher-run", "r.parquet", "--out", "o"]
    args = parser.parse_args(base + ["--freeze-embeddings", "yes", "--include-responses", "no"])
    assert args.freeze_embeddings is True and args.include_responses is False
    assert parser.parse_args(base).include_responses is True
    with pytest.raises(SystemExit):
        parser.parse_args(base + ["--freeze-embeddings", "maybe"])
