import json

import numpy as np
import pandas as pd
import pyterrier as pt
import pytest
import torch
from safetensors.torch import load_file

import pyterrier_disco as disco
from pyterrier_disco.datasets import doc_lookup, qrels
from pyterrier_disco.train import build_teacher_run, kld
from pyterrier_disco.train.trainer import TrainConfig, Trainer, train

N_TURNS = 24


@pytest.fixture(scope="module")
def setup(ikat_home, ikat_index, splade_model):
    """Real iKAT 2023 train turns, a human-rewrite teacher run over their passages, qrels and doc texts."""
    index, _ = ikat_index
    frame = disco.conversations("ikat/2023/train")
    subset = frame[frame["turn"] > 0].head(N_TURNS).reset_index(drop=True)
    run = build_teacher_run(subset, {"human": "human_rewrite"}, disco.Splade(splade_model), index, k=100,
                            verbose=False)
    return subset, run, qrels("ikat/2023/train"), doc_lookup("ikat/2023/train")


def mean_kld(trainer: Trainer) -> float:
    examples = trainer.examples(0)
    with torch.no_grad():
        q = trainer.student(trainer.query_texts(examples))
        docs = trainer.cache.dense([d for e in examples for d in e.docnos]).view(len(examples), -1, q.shape[1])
        student_scores = torch.einsum("bv,bcv->bc", q, docs)
        teacher = torch.tensor(np.stack([e.teacher_scores for e in examples]))
        return float(kld(student_scores, teacher))


def test_gradients_reach_only_the_query_encoder_and_documents_are_encoded_once(setup, tmp_path, splade_model):
    frame, run, positives, docs = setup
    trainer = Trainer(frame, run, docs, tmp_path / "s", qrels=positives, doc_model=splade_model,
                      config=TrainConfig(batch_size=4, n_negatives=4), verbose=False)
    batch = trainer.batch(0, 0)
    trainer.compute_loss(batch, 0)["loss"].backward()
    assert all(p.grad is None for p in trainer.doc_model.parameters())  # run under no_grad, never frozen in place
    grads = [p.grad.abs().sum().item() for p in trainer.student.parameters() if p.grad is not None]
    assert grads and sum(grads) > 0
    unique = len({d for e in batch for d in e.docnos})
    assert trainer.cache.encoded == unique
    trainer.compute_loss(batch, 0)
    assert trainer.cache.encoded == unique  # cached: no second encoding


def test_short_training_lowers_kld_and_the_student_reloads(setup, tmp_path, splade_model):
    frame, run, positives, docs = setup
    config = TrainConfig(loss="kld", epochs=3, batch_size=6, n_negatives=6, lr=1e-4, seed=3)
    trainer = Trainer(frame, run, docs, tmp_path / "student", qrels=positives, doc_model=splade_model,
                      config=config, verbose=False)
    before = mean_kld(trainer)
    student = trainer.train()
    after = mean_kld(trainer)
    assert after < before
    assert all(p.requires_grad for p in splade_model.parameters())  # the caller's document model is not altered
    log = pd.read_csv(tmp_path / "student" / "train_log.csv")
    assert list(log["step"]) == list(range(1, trainer.plan["total_steps"] + 1)) and log["kld"].notna().all()
    reloaded = disco.DiSCo.from_pretrained(tmp_path / "student")
    a = student.query_encoder()(frame.head(4))["query_toks"]
    b = reloaded.query_encoder()(frame.head(4))["query_toks"]
    for x, y in zip(a, b):
        assert x.keys() == y.keys() and list(x.values()) == pytest.approx(list(y.values()), abs=1e-5)
    assert reloaded.meta["recipe"]["config"]["loss"] == "kld"
    assert student.path == tmp_path / "student" and type(pt.Artifact.load(str(student.path))) is disco.DiSCo
    assert not list((tmp_path / "student").glob("checkpoint-*"))


def test_bad_inputs(setup, tmp_path, splade_model):
    frame, run, positives, docs = setup
    cfg = TrainConfig(batch_size=4, n_negatives=4, epochs=1, max_steps=1)
    broken = run.copy()
    broken["score"] = np.nan
    with pytest.raises(FloatingPointError, match="loss is nan"):
        train(frame, broken, docs, tmp_path / "nan", qrels=positives, doc_model=splade_model, config=cfg,
              verbose=False)
    with pytest.raises(ValueError, match="not in the conversations"):
        train(frame.head(3), run, docs, tmp_path / "q", qrels=positives, doc_model=splade_model, config=cfg,
              verbose=False)
    foreign = run.copy()
    foreign.attrs["teacher_run"] = {**run.attrs["teacher_run"], "vocab_fingerprint": "0" * 16}
    with pytest.raises(ValueError, match="vocabulary mismatch"):
        train(frame, foreign, docs, tmp_path / "v", qrels=positives, doc_model=splade_model, config=cfg)
    with pytest.raises(KeyError, match="history"):
        train(frame.drop(columns=["history"]), run, docs, tmp_path / "h", doc_model=splade_model, config=cfg)
    unchecked = run.copy()
    unchecked.attrs["teacher_run"] = []  # metadata that says nothing is refused, not skipped
    with pytest.raises(ValueError, match="no metadata"):
        train(frame, unchecked, docs, tmp_path / "u", doc_model=splade_model, config=cfg)
    assert not any((tmp_path / d).exists() for d in ("q", "v", "h", "u"))  # refused before any work
    train(frame, run, docs, tmp_path / "done", qrels=positives, doc_model=splade_model, config=cfg, verbose=False)
    with pytest.raises(FileExistsError, match="different training run"):
        train(frame, run, docs, tmp_path / "done", qrels=positives, doc_model=splade_model,
              config=TrainConfig(batch_size=4, n_negatives=4, epochs=1, max_steps=1, lr=1e-3), verbose=False)
    with pytest.raises(FileExistsError, match="already holds"):
        train(frame, run, docs, tmp_path / "done", qrels=positives, doc_model=splade_model, config=cfg,
              verbose=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a DiSCo training folder"):
        train(frame, run, docs, tmp_path / "other", qrels=positives, doc_model=splade_model, config=cfg)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_cli_teacher_run(ikat_home, ikat_index, tmp_path, capsys):
    from pyterrier_disco.cli import main
    from pyterrier_disco.train import load_teacher_run

    index, _ = ikat_index
    out = tmp_path / "run.parquet"
    assert main(["teacher-run", "--dataset", "ikat/2023/train", "--teachers", "human", "--index", str(index.path),
                 "--out", str(out), "--limit", "10", "--k", "50"]) == 0
    run = load_teacher_run(out)
    assert set(run["teacher"]) == {"human"} and run["qid"].nunique() == 10
    assert run.groupby("qid")["rank"].max().max() < 50
    assert (run.groupby("qid")["score"].apply(lambda s: s.is_monotonic_decreasing)).all()
    assert main(["teacher-run", "--dataset", "ikat/2023/train", "--teachers", "oracle", "--index", str(index.path),
                 "--out", str(tmp_path / "x.parquet")]) == 2
    assert "unknown teacher 'oracle'" in capsys.readouterr().err


# -- review fixes: RNG states, --overwrite, gradient accumulation, other losses, uncached documents ---------

SMALL = dict(batch_size=4, n_negatives=4, epochs=1, max_length=64)  # short conversations: quick steps


def _trainer(setup, out, splade_model, frame=None, **config):
    subset, run, positives, docs = setup
    return Trainer(subset if frame is None else frame, run, docs, out, qrels=positives, doc_model=splade_model,
                   config=TrainConfig(**{**SMALL, **config}), verbose=False)


def test_checkpoint_round_trips_the_cpu_and_cuda_rng_states(setup, tmp_path, splade_model, monkeypatch):
    from transformers import get_linear_schedule_with_warmup

    from pyterrier_disco.train.checkpoint import adamw

    trainer = _trainer(setup, tmp_path / "c", splade_model)
    trainer.out.mkdir()
    optimizer = adamw(list(trainer.student.parameters()), 1e-4, 0.0)
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, 10)
    # a stand-in for two CUDA devices (this machine has none): their generator states are plain byte tensors
    cuda = {"states": [torch.arange(16, dtype=torch.uint8), torch.arange(16, 32, dtype=torch.uint8)], "set": []}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [s.clone() for s in cuda["states"]])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: cuda["set"].append(list(states)))
    torch.manual_seed(11)
    trainer.save_checkpoint(3, optimizer, scheduler)
    after_save = torch.rand(5)
    ckpt = trainer._checkpoints()[-1]
    saved = load_file(str(ckpt / "rng.safetensors"))
    assert sorted(saved) == ["cuda_rng.0", "cuda_rng.1", "torch_rng"]
    assert all(torch.equal(saved[f"cuda_rng.{i}"], cuda["states"][i]) for i in range(2))
    torch.rand(100)  # move the CPU generator on
    assert trainer.load_checkpoint(ckpt, optimizer, scheduler) == 3
    assert torch.equal(torch.rand(5), after_save)  # the CPU generator continues where the checkpoint was
    (restored,) = cuda["set"]
    assert len(restored) == 2 and all(torch.equal(a, b) for a, b in zip(restored, cuda["states"]))
    # a checkpoint written without CUDA states (on a CPU machine, or before they were saved) still loads
    from safetensors.torch import save_file
    save_file({"torch_rng": saved["torch_rng"]}, str(ckpt / "rng.safetensors"))
    trainer.load_checkpoint(ckpt, optimizer, scheduler)
    assert torch.equal(torch.rand(5), after_save) and len(cuda["set"]) == 1
    # and one with CUDA states loads on a machine without CUDA (they are not applied)
    save_file(saved, str(ckpt / "rng.safetensors"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    trainer.load_checkpoint(ckpt, optimizer, scheduler)
    assert torch.equal(torch.rand(5), after_save) and len(cuda["set"]) == 1


def test_overwrite_replaces_a_previous_run_but_never_a_foreign_folder(setup, tmp_path, splade_model):
    frame, run, positives, docs = setup
    kw = dict(qrels=positives, doc_model=splade_model, verbose=False)
    out = tmp_path / "prev"
    train(frame, run, docs, out, config=TrainConfig(**SMALL, max_steps=1), **kw)
    (out / "checkpoint-0000001").mkdir()  # a leftover of the previous run
    train(frame, run, docs, out, config=TrainConfig(**SMALL, max_steps=1, lr=1e-3), overwrite=True, **kw)
    assert json.loads((out / "run.json").read_text())["config"]["lr"] == 1e-3
    assert not (out / "checkpoint-0000001").exists()
    # a student folder without run.json (pt_meta.json of a disco_student) and an empty folder are replaced too
    trainer = _trainer(setup, out, splade_model, max_steps=1)
    (out / "run.json").unlink()
    assert trainer._prepare_folder(resume=False, overwrite=True) is False
    assert sorted(p.name for p in out.iterdir()) == [".pyterrier_disco.json", "run.json"]
    trainer.folder.path = tmp_path / "empty"
    trainer.folder.path.mkdir()
    trainer._prepare_folder(resume=False, overwrite=True)
    assert sorted(p.name for p in trainer.folder.path.iterdir()) == [".pyterrier_disco.json", "run.json"]
    # a run written before the marker existed is recognised by its recipe and file names, not by run.json alone
    from pyterrier_disco.train.folder import is_training_folder
    (out / ".pyterrier_disco.json").unlink()
    assert is_training_folder(out)
    (out / "notes.txt").write_text("mine")
    assert not is_training_folder(out)

    foreign = tmp_path / "my-index"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    (foreign / "pt_meta.json").write_text(json.dumps({"type": "sparse_index"}))
    before = {p.name: p.read_bytes() for p in foreign.iterdir()}
    with pytest.raises(FileExistsError, match=r"my-index exists and it was not written by pyterrier_disco"):
        train(frame, run, docs, foreign, config=TrainConfig(**SMALL, max_steps=1), overwrite=True, **kw)
    assert {p.name: p.read_bytes() for p in foreign.iterdir()} == before


def _flat_grad(trainer: Trainer) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
                      for p in trainer.student.parameters() if p.requires_grad])


def test_gradient_accumulation_averages_the_non_empty_micro_batches(setup, tmp_path, splade_model):
    # 16 examples in batches of 6: step 0 has two micro-batches of 6, step 1 one of 4 and an empty one
    trainer = _trainer(setup, tmp_path / "acc", splade_model, loss="kld", batch_size=6, grad_accum=2)
    assert len(trainer.examples(0)) == 16 and trainer.plan["steps_per_epoch"] == 2
    assert len(trainer.batch(1, 0)) == 4 and trainer.batch(1, 1) == []
    trainer.student.mlm.eval()  # no dropout: the same batch gives the same gradient every time

    def alone(step, micro):
        trainer.student.zero_grad(set_to_none=True)
        loss = trainer.compute_loss(trainer.batch(step, micro), step)["loss"]
        loss.backward()
        return loss.item(), _flat_grad(trainer)

    (l0, g0), (l1, g1), (l2, g2) = alone(0, 0), alone(0, 1), alone(1, 0)
    for step, losses, expected in ((0, [l0, l1], (g0 + g1) / 2), (1, [l2], g2)):
        totals = trainer.accumulate(step)
        got = _flat_grad(trainer)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6 * expected.abs().max().item())
        assert totals["loss"] == pytest.approx(np.mean(losses), rel=1e-6)  # the logged parts: the same mean


@pytest.mark.parametrize("loss,regularization,warmup,logged,empty", [
    ("mse", "off", 0, ["mse"], ["kld", "infonce"]),
    ("infonce", "off", 0, ["infonce"], ["kld", "mse"]),
    ("kld", "followup-readme-highest", 0, ["kld"], ["infonce", "mse"]),
    ("kld", "followup-readme-highest", 3, ["kld"], ["infonce", "mse"]),  # the quadratic warm-up is reachable
])
def test_other_losses_and_regularization_log_their_parts(setup, tmp_path, splade_model, loss, regularization, warmup,
                                                         logged, empty):
    from pyterrier_disco.train import SparsityConfig

    frame, run, positives, docs = setup
    config = TrainConfig(**SMALL, loss=loss, regularization=regularization, max_steps=2, lr=1e-4,
                         sparsity_warmup_steps=warmup)
    out = tmp_path / f"{loss}-{warmup}"
    train(frame, run, docs, out, qrels=positives, doc_model=splade_model, config=config, verbose=False)
    log = pd.read_csv(out / "train_log.csv")
    assert list(log["step"]) == [1, 2]
    assert all(log[c].notna().all() and (log[c] > 0).all() for c in logged)
    assert all(log[c].isna().all() for c in empty)
    assert (log["l1_q"] > 0).all() and (log["flops_d"] > 0).all()
    # the logged total is the loss term plus the preset's weights on the regularisers, warmed up over T steps:
    # min(lambda, lambda (step / (T + 1))^2)
    lam = SparsityConfig.preset(regularization)
    scale = np.minimum(1.0, (log["step"] / (warmup + 1)) ** 2)
    reg = scale * (lam.lambda_d * log["flops_d"] + lam.lambda_q * log["l1_q"])
    assert list(log["loss"]) == pytest.approx(list(log[logged[0]] + reg + log["anti_zero"]), rel=1e-5)
    if regularization != "off":
        assert (reg / scale > 0.1 * log[logged[0]]).all()  # large enough for the check above to see a missing weight
        assert (scale < 1).all() == (warmup > 1)


def test_infonce_warmup_ramps_the_infonce_weight_linearly(setup, tmp_path, splade_model):
    frame, run, positives, docs = setup
    config = TrainConfig(**SMALL, max_steps=3, infonce_warmup_steps=2)  # followup: w 0.05
    out = tmp_path / "warm"
    train(frame, run, docs, out, qrels=positives, doc_model=splade_model, config=config, verbose=False)
    log = pd.read_csv(out / "train_log.csv")
    w = 0.05 * np.minimum(1.0, log["step"] / 2)  # steps 1, 2, 3: w/2, w, w
    assert list(w) == pytest.approx([0.025, 0.05, 0.05])
    expected = (1 - w) * log["kld"] + w * log["infonce"] + log["anti_zero"]
    assert list(log["loss"]) == pytest.approx(list(expected), rel=1e-5)
    assert (log["infonce"] > 10 * log["kld"]).all()  # a wrong weight would show in the total


def test_uncached_documents_give_the_same_loss(setup, tmp_path, splade_model):
    cached = _trainer(setup, tmp_path / "a", splade_model, regularization="paper")
    uncached = _trainer(setup, tmp_path / "b", splade_model, regularization="paper", cache_documents=False)
    batch = cached.batch(0, 0)
    assert [e.docnos for e in uncached.batch(0, 0)] == [e.docnos for e in batch]
    for t in (cached, uncached):
        t.student.mlm.eval()
    for _ in range(2):
        a, b = cached.compute_loss(batch, 0), uncached.compute_loss(batch, 0)
        assert a.keys() == b.keys()
        for k in a:
            assert float(b[k].detach()) == pytest.approx(float(a[k].detach()), rel=1e-5, abs=1e-8), k
    n_docs = sum(len(e.docnos) for e in batch)
    assert uncached.cache.encoded == 2 * n_docs and not uncached.cache.rows  # re-encoded at every call
    assert cached.cache.encoded == len({d for e in batch for d in e.docnos})


def test_mse_needs_its_rewrite_column(setup, tmp_path, splade_model):
    frame = setup[0]
    with pytest.raises(KeyError, match=r"'human_rewrite'.*lacks.*available rewrite columns: none"):
        _trainer(setup, tmp_path / "m", splade_model, frame=frame.drop(columns=["human_rewrite"]), loss="mse")
    with pytest.raises(KeyError, match=r"'llm_rewrite'.*available rewrite columns: 'human_rewrite'"):
        _trainer(setup, tmp_path / "m", splade_model, loss="mse", mse_teacher="llm_rewrite")
    assert not (tmp_path / "m").exists()
    _trainer(setup, tmp_path / "m", splade_model, frame=frame.drop(columns=["human_rewrite"]), loss="kld")


@pytest.mark.parametrize("bad,message", [
    (dict(epochs=0), "epochs=0 must be >= 1"), (dict(max_steps=0), "max_steps=0 must be >= 1"),
    (dict(max_steps=-3), "max_steps=-3"), (dict(batch_size=0), "batch_size=0"), (dict(grad_accum=0), "grad_accum"),
    (dict(checkpoint_every=0), "checkpoint_every=0"), (dict(n_negatives=0), "n_negatives=0"),
    (dict(lr=0.0), "lr=0.0 must be > 0"), (dict(lr=float("inf")), "lr=inf"), (dict(warmup_ratio=1.0), "warmup"),
    (dict(weight_decay=-0.1), "weight_decay"), (dict(seed=-1), "seed=-1"), (dict(max_length=4), "max_length=4"),
    (dict(loss="kl"), "loss='kl' is not one of"), (dict(epochs=2.5), "epochs=2.5 is not of type int"),
    (dict(batch_size=True), "batch_size=True is not of type int"), (dict(infonce_tau=0.0), "infonce_tau"),
    (dict(utterance_weight=-1.0), "utterance_weight=-1.0 must be >= 0"),
    (dict(infonce_warmup_steps=-1), "infonce_warmup_steps=-1 must be >= 0"),
    (dict(infonce_warmup_steps=5, loss="kld"), "loss 'kld' has no such weight")])
def test_config_refuses_nonsense_before_any_work(bad, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**bad)


def test_config_accepts_numpy_numbers_and_optional_fields():
    config = TrainConfig(epochs=np.int64(2), lr=np.float32(1e-4), max_steps=None, infonce_weight=0)
    assert config.epochs == 2 and config.loss_config()


def test_student_files_are_checked_and_its_document_model_kept_inside(setup, tmp_path, splade_model):
    import shutil

    from pyterrier_disco import CorruptFileError
    from pyterrier_disco.encoders import embedded_model_path

    frame, run, positives, docs = setup
    out = tmp_path / "student"
    train(frame, run, docs, out, qrels=positives, doc_model=splade_model, verbose=False,
          config=TrainConfig(**SMALL, max_steps=1))
    meta = json.loads((out / "pt_meta.json").read_text())
    assert meta["files"].keys() == {p.name for p in out.iterdir()} - {"pt_meta.json", ".pyterrier_disco.json",
                                                                          "run.json", "train_log.csv"}
    assert disco.DiSCo.from_pretrained(out).verify() == {"path": str(out), "checksums": True,
                                                         "files_hashed": len(meta["files"])}
    weights = (out / "model.safetensors").read_bytes()
    flipped = bytearray(weights)
    flipped[-7] ^= 1  # same size, one bit: only the hash sees it
    (out / "model.safetensors").write_bytes(bytes(flipped))
    with pytest.raises(CorruptFileError, match="model.safetensors does not match the sha256"):
        disco.DiSCo.from_pretrained(out)
    (out / "model.safetensors").write_bytes(weights)

    def recorded(doc_model):
        (out / "pt_meta.json").write_text(json.dumps({**meta, "doc_model": doc_model}))

    recorded(str(embedded_model_path()))  # an absolute path: only when the caller names it
    with pytest.raises(ValueError, match="outside its folder.*doc_model="):
        disco.DiSCo.from_pretrained(out)
    assert disco.DiSCo.from_pretrained(out, doc_model=str(embedded_model_path())).doc_model.vocab == splade_model.vocab
    recorded("../" + out.name + "/../elsewhere")
    with pytest.raises(ValueError, match="outside its folder"):
        disco.DiSCo.from_pretrained(out)
    shutil.copytree(embedded_model_path(), out / "doc")
    recorded("doc")  # packed inside the student: loaded
    assert disco.DiSCo.from_pretrained(out).doc_model.name_or_path == str((out / "doc").resolve())
    recorded("someone/their-splade")  # a hub id: loaded as any hub model; offline here, so a clear error
    with pytest.raises(OSError, match="cannot load the model someone/their-splade"):
        disco.DiSCo.from_pretrained(out)


def test_utterance_weight_adds_the_raw_utterance_vector_in_training_and_at_search(setup, tmp_path, splade_model,
                                                                                 ikat_index):
    frame = setup[0]
    trainer = _trainer(setup, tmp_path / "u", splade_model, loss="kld", utterance_weight=0.5, max_steps=2)
    trainer.student.mlm.eval()
    batch = trainer.batch(0, 0)
    with torch.no_grad():
        logged = float(trainer.compute_loss(batch, 0)["kld"])
        conversation = trainer.student(trainer.query_texts(batch))
        rows = frame.set_index("qid").loc[[e.qid for e in batch]]
        q = conversation + 0.5 * trainer.doc_model(list(rows["query"]))
        docs = trainer.cache.dense([d for e in batch for d in e.docnos]).view(len(batch), -1, q.shape[1])
        teacher = torch.tensor(np.stack([e.teacher_scores for e in batch]))
        expected = float(kld(torch.einsum("bv,bcv->bc", q, docs), teacher))
        plain = float(kld(torch.einsum("bv,bcv->bc", conversation, docs), teacher))
    assert logged == pytest.approx(expected, rel=1e-5) and abs(expected - plain) > 1e-4

    trainer.train()
    student = disco.DiSCo.from_pretrained(tmp_path / "u")
    assert student.meta["utterance_weight"] == 0.5 and student.utterance_weight == 0.5
    turns = frame.head(4)
    got = student.query_encoder()(turns)["query_toks"]
    alone = disco.DiSCo(tmp_path / "u", utterance_weight=0).query_encoder()(turns)["query_toks"]
    raw = disco.Splade(splade_model).query_encoder()(turns)["query_toks"]
    for g, a, r in zip(got, alone, raw):
        want = {t: a.get(t, 0.0) + 0.5 * r.get(t, 0.0) for t in set(a) | set(r)}
        assert g.keys() == want.keys()
        assert [g[t] for t in want] == pytest.approx(list(want.values()), rel=1e-4, abs=1e-4)
    assert any(set(r) - set(a) for a, r in zip(alone, raw)) or any(a != g for a, g in zip(alone, got))

    # at retrieval, the student is the exact CombSUM fusion of its own run and 0.5 x the raw utterance's run
    index = ikat_index[0]
    retrieve = index.retriever(num_results=len(index), vocab=splade_model.vocab_fingerprint)
    scores = [(pipe >> retrieve)(turns).set_index(["qid", "docno"])["score"] for pipe in (
        student.query_encoder(), disco.DiSCo(tmp_path / "u", utterance_weight=0).query_encoder(),
        disco.Splade(splade_model).query_encoder())]
    fused = scores[1].add(0.5 * scores[2], fill_value=0.0)
    fused = fused[fused > 0]  # documents sharing no term with the query score 0 and are not retrieved
    assert sorted(scores[0].index) == sorted(fused.index)
    assert scores[0].loc[fused.index].to_numpy() == pytest.approx(fused.to_numpy(), rel=1e-4, abs=1e-4)


def test_the_student_terms_are_logged_and_a_collapsed_student_is_reported(setup, tmp_path, splade_model):
    trainer = _trainer(setup, tmp_path / "c", splade_model, utterance_weight=1.0, max_steps=2, anti_zero_on="student")
    with torch.no_grad():
        trainer.student.mlm.get_output_embeddings().bias.fill_(-1e4)  # every logit below 0: the ReLU is dead
    epoch = trainer.plan["steps_per_epoch"]  # the warm-up it suggests: one epoch
    remedies = f"collapsed and adds nothing.*--anti-zero-on student.*--infonce-warmup-steps, e.g. {epoch}\\)"
    with pytest.warns(UserWarning, match=remedies):
        trainer.train()
    log = pd.read_csv(tmp_path / "c" / "train_log.csv")
    assert (log["L0_student"] == 0).all() and (log["L0_q"] > 0).all()  # the utterance's terms remain
    assert np.isfinite(log["loss"]).all() and (log["anti_zero"] < 1e-3).all()  # a dead part adds no 1/0

    for anti_zero_on in ("query", "student"):
        healthy = _trainer(setup, tmp_path / f"h-{anti_zero_on}", splade_model, utterance_weight=1.0, max_steps=1,
                           anti_zero_on=anti_zero_on)
        healthy.student.mlm.eval()
        batch = healthy.batch(0, 0)
        with torch.no_grad():
            own = healthy.student(healthy.query_texts(batch))
            utterances = healthy.doc_model(list(healthy.conversations.loc[[e.qid for e in batch], "query"]))
            parts = healthy.compute_loss(batch, 0)
        logged = parts["L0_student"]
        assert float(logged) == pytest.approx(float((own > 0).sum(1).float().mean())) and float(logged) > 0
        # the anti-zero term's Q: the vector the loss scores (the reference) or the student's own part
        q_sum = float(own.sum()) + (float(utterances.sum()) if anti_zero_on == "query" else 0.0)
        d_sum = healthy.cache.matrix([d for e in batch for d in e.docnos]).sum()
        assert float(parts["anti_zero"]) == pytest.approx(1 / q_sum ** 2 + 1 / d_sum ** 2, rel=1e-4)
