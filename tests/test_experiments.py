"""The experiment scripts: every --help, the paper's splits, real small runs of table4 (iKAT 2023 train, with
the LLM and a fusion), table3 and figure5 (disco-mini, two-step trainings), and the caches of experiments/_lib.py."""
import importlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import pyterrier as pt
import pytest

import pyterrier_disco as disco
from pyterrier_disco.encoders import embedded_model_path
from pyterrier.measures import RR, R

from pyterrier_disco.evaluation import MEASURE_NAMES

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
SCRIPTS = sorted(p for p in EXPERIMENTS.glob("*.py") if not p.name.startswith("_"))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_script(name, *args, timeout=900):  # generous: the machine is shared, jobs may be paused
    return subprocess.run([sys.executable, str(EXPERIMENTS / name), *map(str, args)], cwd=ROOT, env=os.environ.copy(),
                          capture_output=True, text=True, timeout=timeout)


def untrained_student(folder: Path, recipe=None) -> Path:
    """A DiSCo student folder holding the untrained embedded SPLADE-tiny: its conversation encoder is the
    full-context baseline."""
    shutil.copytree(embedded_model_path(), folder)
    (folder / "pt_meta.json").write_text(json.dumps({
        "type": "disco_student", "format": "hf", "name": "DiSCo(untrained)", "doc_model": None, "max_length": 256,
        "formatter": {"include_responses": True, "max_response_tokens": None, "max_length": 256, "sep": "[SEP]"},
        "steps": 0, "recipe": recipe or {}}))
    return folder


def test_every_script_has_help():
    paper = {"figure4_teachers.py", "figure5_sparsity.py", "figure6_depth.py", "followup_sweeps.py",
             "table3_in_domain.py", "table4_zero_shot.py", "table5_latency.py"}
    transfer = {"transfer.py", "recipe_search.py", "default_student.py"}  # issue 11: their own options
    assert {p.name for p in SCRIPTS} == paper | transfer
    procs = {p.name: subprocess.Popen([sys.executable, str(p), "--help"], cwd=ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True) for p in SCRIPTS}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{name}: {err}"
        assert out.startswith("usage:") and "--work" in out, name
        if name in paper:
            assert "--limit" in out and "--out" in out and "--backend" in out, name
            assert "small, on CPU" in out, f"{name}: its help shows a small run"
    # their own options are there too
    assert "--student" in run_script("table4_zero_shot.py", "--help").stdout


def test_defaults_never_train_and_test_on_the_same_split():
    """The defaults are the paper's: train splits for training, test splits for testing."""
    code = (f"import sys; sys.path.insert(0, {str(EXPERIMENTS)!r}); import table3_in_domain as t; "
            "print(sorted((a, b) for a, b, _, _ in t.PAPER.values()))")
    pairs = eval(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert all(train != test and train.endswith("/train") for train, test in pairs)
    bad = run_script("figure6_depth.py", "--train", "disco-mini/test", "--test", "disco-mini/test")
    assert bad.returncode != 0 and "same" in bad.stderr


@pytest.fixture(scope="module")
def small_runs(ikat_home, tmp_path_factory):
    """table4 on the first 3 iKAT 2023 train turns (short LLM prompts) with an untrained student, then table3,
    figure5 and figure6 on disco-mini with two-step trainings, and table5 (students trained on 3 disco-mini turns,
    timed on 3 iKAT turns), sharing one --work folder and the rewrite cache."""
    tmp = tmp_path_factory.mktemp("experiments")
    student = untrained_student(tmp / "student")
    work = tmp / "work"
    t4 = run_script("table4_zero_shot.py", "--student", f"DiSCo untrained={student}", "--datasets", "ikat/2023/train",
                    "--limit", 3, "--teachers", "human,llm", "--fuse", "llm", "DiSCo untrained", "--work", work,
                    "--out", tmp / "t4.json", "--model", tmp / "no-such-model")  # ignored: the student's model
    small = ["--lr", "2e-4", "--max-steps", 2, "--batch-size", 4, "--limit", 20, "--work", work]
    t3 = run_script("table3_in_domain.py", "--datasets", "disco-mini", "--teachers", "human,query",
                    "--students", "human", *small, "--out", tmp / "t3.json")
    f5 = run_script("figure5_sparsity.py", "--train", "disco-mini/train", "--test", "disco-mini/test",
                    "--teacher", "human", "--references", "human", "--presets", "off", "followup-readme-highest",
                    *small, "--plot", tmp / "f5.png", "--out", tmp / "f5.json")
    f6 = run_script("figure6_depth.py", "--train", "disco-mini/train", "--test", "disco-mini/test", "--teacher",
                    "human", *small, "--plot", tmp / "f6.png", "--per-turn", tmp / "f6.csv", "--out", tmp / "f6.json")
    t5 = run_script("table5_latency.py", "--train", "disco-mini/train", "--dataset", "ikat/2023/train", "--teachers",
                    "llm", "--students", "human", "--convsplade", "human", "--fuse", "llm", "DiSCo T3",
                    *small[:-4], "--limit", 3, "--work", work, "--out", tmp / "t5.json")
    return {"tmp": tmp, "work": work, "t4": t4, "t3": t3, "f5": f5, "f6": f6, "t5": t5}


def test_table4_small_run_with_llm_and_fusion(small_runs, splade_model):
    t4, tmp = small_runs["t4"], small_runs["tmp"]
    assert t4.returncode == 0, t4.stderr[-3000:]
    assert "--model" in t4.stdout and "ignored" in t4.stdout
    records = json.loads((tmp / "t4.json").read_text())
    assert [r["name"] for r in records] == ["human", "llm", "DiSCo untrained", "fusion"]
    by_name = {r["name"]: r for r in records}
    for r in records:
        assert r["dataset"] == "ikat/2023/train" and set(r) >= {"R@100", "RR", "nDCG@3", "ms_per_query_sum"}
        assert all(0 <= r[m] <= 1 for m in ("R@100", "RR", "nDCG@3")) and r["q_len"] > 0 and r["ms_per_query"] > 0
    assert by_name["llm"]["llm_calls_per_query"] == 1 and by_name["fusion"]["llm_calls_per_query"] == 1
    assert by_name["fusion"]["ms_per_query"] < by_name["fusion"]["ms_per_query_sum"]  # parallel pipelines
    indexes = [p.name for p in (small_runs["work"] / "indexes").iterdir() if p.name.startswith("ikat")]
    assert indexes == [f"ikat_2023_train.{splade_model.vocab_fingerprint}.{indexes[0].rsplit('.', 1)[1]}"]
    # the human row against the same pipeline evaluated here
    index = disco.SparseIndex(small_runs["work"] / "indexes" / indexes[0])
    topics = disco.conversations("ikat/2023/train").head(3)
    pipeline = disco.rewrite.Column("human_rewrite") >> disco.Splade(splade_model).query_encoder() >> index.retriever()
    expected = pt.Experiment([pipeline], topics, disco.datasets.qrels("ikat/2023/train"), eval_metrics=[R @ 100, RR],
                             names=["human"])
    for m in ("R@100", "RR"):
        assert by_name["human"][m] == pytest.approx(float(expected[m].iloc[0]))


def test_table3_small_run_trains_on_train_and_tests_on_test(small_runs):
    t3, tmp, work = small_runs["t3"], small_runs["tmp"], small_runs["work"]
    assert t3.returncode == 0, t3.stderr[-3000:]
    records = json.loads((tmp / "t3.json").read_text())
    assert [r["name"] for r in records] == ["fc", "human", "query", "DiSCo T3"]
    assert {(r["dataset"], r["trained_on"]) for r in records} == {("disco-mini/test", "disco-mini/train")}
    assert set(records[0]) >= set(MEASURE_NAMES)
    # the student was trained on the first 20 training turns, from a teacher run keyed by teacher and model
    meta = json.loads((work / "students" / "table3-disco-mini_train-T3.limit20" / "pt_meta.json").read_text())
    assert meta["recipe"]["dataset"] == "disco-mini/train" and meta["recipe"]["teachers"] == ["human"]
    runs = sorted(p.name for p in (work / "teacher_runs").iterdir() if ".20." in p.name)  # table5's: 3 turns
    assert len(runs) == 1 and runs[0].startswith("disco-mini_train.human.")


def test_figure5_small_run_points_per_sparsity_preset(small_runs):
    f5, tmp = small_runs["f5"], small_runs["tmp"]
    assert f5.returncode == 0, f5.stderr[-3000:]
    records = json.loads((tmp / "f5.json").read_text())
    assert [r["name"] for r in records] == ["human", "DiSCo human [off]", "DiSCo human [followup-readme-highest]"]
    assert all(r["FLOPs"] > 0 and 0 <= r["RR"] <= 1 for r in records)
    assert (tmp / "f5.png").read_bytes()[:8] == PNG_MAGIC
    runs = [p for p in (small_runs["work"] / "teacher_runs").iterdir() if ".20." in p.name]
    assert len(runs) == 1  # table3's human run, reused


def test_figure6_small_run_by_depth(small_runs):
    f6, tmp, work = small_runs["f6"], small_runs["tmp"], small_runs["work"]
    assert f6.returncode == 0, f6.stderr[-3000:]
    records = json.loads((tmp / "f6.json").read_text())
    assert [r["name"] for r in records] == ["human", "DiSCo T3", "convSPLADE"]
    assert {(r["dataset"], r["trained_on"]) for r in records} == {("disco-mini/test", "disco-mini/train")}
    # convSPLADE is the supervised baseline: InfoNCE on the qrels, no distillation
    meta = json.loads((work / "students" / "convsplade-disco-mini_train.limit20" / "pt_meta.json").read_text())
    assert meta["recipe"]["config"]["loss"] == "infonce"
    assert (tmp / "f6.png").read_bytes()[:8] == PNG_MAGIC
    per_turn = pd.read_csv(tmp / "f6.csv")
    assert set(per_turn["system"]) == {r["label"] for r in records} and len(per_turn) == 3 * 20
    for r in records:  # the per-turn rows average to the table's
        rows = per_turn[per_turn["system"] == r["label"]]
        assert rows["RR"].mean() == pytest.approx(r["RR"]) and rows["q_len"].mean() == pytest.approx(r["q_len"])


def test_table5_small_run_latency_per_stage(small_runs):
    t5, tmp = small_runs["t5"], small_runs["tmp"]
    assert t5.returncode == 0, t5.stderr[-3000:]
    rows = {r["system"]: r for r in json.loads((tmp / "t5.json").read_text())}
    assert list(rows)[:3] == ["SPLADE QR llm", "DiSCo T3", "convSPLADE"] and list(rows)[3].startswith("Fusion(")
    fusion = rows[list(rows)[3]]
    for r in rows.values():
        assert r["dataset"] == "ikat/2023/train" and 0 <= r["R@100"] <= 1
        assert r["total_ms"] == pytest.approx(r["rewrite_ms"] + r["retrieval_ms"]) and r["retrieval_ms"] > 0
    assert rows["SPLADE QR llm"]["rewrite_ms"] > 0 and fusion["rewrite_ms"] > 0
    assert rows["DiSCo T3"]["rewrite_ms"] == rows["convSPLADE"]["rewrite_ms"] == 0
    assert rows["SPLADE QR llm"]["llm_calls_per_query"] == fusion["llm_calls_per_query"] == 1
    # the fusion's pipelines run in parallel: its total is below running them one after the other
    assert fusion["total_ms"] < fusion["total_sum_ms"]
    assert rows["DiSCo T3"]["total_ms"] == pytest.approx(rows["DiSCo T3"]["total_sum_ms"])


def test_figure4_small_run_teachers_and_teacher_sets(small_runs):
    """Figure 4 on disco-mini with two column teachers, in its own --work holding the indexes of the others."""
    tmp = small_runs["tmp"]
    work = tmp / "work4"
    shutil.copytree(small_runs["work"] / "indexes", work / "indexes")
    f4 = run_script("figure4_teachers.py", "--train", "disco-mini/train", "--test", "disco-mini/test", "--teachers",
                    "human,query", "--sets", "human,query", "--lr", "2e-4", "--max-steps", 1, "--batch-size", 4,
                    "--limit", 12, "--work", work, "--plot", tmp / "f4.png", "--out", tmp / "f4.json")
    assert f4.returncode == 0, f4.stderr[-3000:]
    records = json.loads((tmp / "f4.json").read_text())
    # left panel: each teacher's rewrite and its single-teacher student; right panel: the teacher set's student
    assert [r["name"] for r in records] == ["human", "query", "DiSCo T3", "DiSCo query", "DiSCo T3+query"]
    assert all(0 <= r["R@100"] <= 1 and r["trained_on"] == "disco-mini/train" for r in records)
    assert {p.name for p in (work / "students").iterdir()} == {
        f"figure4-disco-mini_train-{tag}.limit12" for tag in ("T3", "query", "T3+query")}
    assert (tmp / "f4.png").read_bytes()[:8] == PNG_MAGIC
    assert len(list((work / "indexes").iterdir())) == len(list((small_runs["work"] / "indexes").iterdir()))


def test_cached_teacher_run_built_otherwise_is_refused(lib, tmp_path, ikat_home, splade_model, ikat_index):
    """A cached teacher run whose metadata names another model or prompt than asked is refused, naming both."""
    index, _ = ikat_index
    splade = disco.Splade(splade_model)
    run = lib.teacher_run("ikat/2023/train", {"human": "human_rewrite"}, splade, index, tmp_path, 4, k=10)
    assert run.attrs["teacher_run"]["teacher_details"]["human"]["model"] == "human_rewrite"
    (cached,) = (tmp_path / "teacher_runs").iterdir()
    again = lib.teacher_run("ikat/2023/train", {"human": "human_rewrite"}, splade, index, tmp_path, 4, k=10)
    pd.testing.assert_frame_equal(again, run, check_dtype=False)
    # the file another teacher named "human" would use, holding this run: refused
    lib.teacher_run("ikat/2023/train", {"human": "query"}, splade, index, tmp_path / "other", 4, k=10)
    (other,) = (tmp_path / "other" / "teacher_runs").iterdir()
    shutil.copy(cached, other)
    with pytest.raises(ValueError, match="built with kind 'column', model 'human_rewrite'.*model 'query'"):
        lib.teacher_run("ikat/2023/train", {"human": "query"}, splade, index, tmp_path / "other", 4, k=10)


def test_experiment_teachers_are_the_papers(lib):
    """The LLM teachers and LLM-QR rows of the experiments: the paper's models, Table 2 prompt, rewrite alone."""
    args = lib.parser("test").parse_args([])
    found = lib.teachers("llm=llama,llm=mistral,human", "disco-mini/test", args)
    assert list(found) == ["llm=meta-llama/Meta-Llama-3.1-8B-Instruct", "llm=mistralai/Mistral-7B-Instruct-v0.2",
                           "human"]
    assert [lib.label(name).split()[0] for name in found] == ["T1", "T2", "T3"]
    llama, mistral, human = found.values()
    assert human == "human_rewrite"
    for llm, model in ((llama, "meta-llama/Meta-Llama-3.1-8B-Instruct"),
                       (mistral, "mistralai/Mistral-7B-Instruct-v0.2")):
        assert (llm.model_id, llm.policy, llm.prompt) == (model, "rewrite", "one-shot")
    with pytest.raises(ValueError, match="known llm models"):
        lib.teachers("llm=gpt9", "disco-mini/test", args)


@pytest.fixture()
def lib(monkeypatch):
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    return importlib.import_module("_lib")


HUMAN = {"human": "human_rewrite"}


def test_student_cache_is_keyed_by_limit_and_checked(lib, tmp_path, monkeypatch, splade_model):
    trained = []

    def fake_train(conversations, run, docs, out, **kw):
        trained.append({"out": Path(out), "turns": len(conversations), **kw})
        return "student"

    monkeypatch.setattr("pyterrier_disco.train.train", fake_train)
    monkeypatch.setattr(lib, "teacher_run", lambda *a, **kw: pd.DataFrame())
    monkeypatch.setattr(lib, "index_of", lambda *a, **kw: None)
    splade = disco.Splade(splade_model)
    args = lib.parser("test").parse_args(["--work", str(tmp_path), "--epochs", "1"])
    students = tmp_path / "students"

    lib.student("disco-mini/train", HUMAN, args, splade, tmp_path, "mini-human")
    args.limit = 12
    lib.student("disco-mini/train", HUMAN, args, splade, tmp_path, "mini-human")
    assert [t["out"] for t in trained] == [students / "mini-human", students / "mini-human.limit12"]
    assert [t["turns"] for t in trained] == [len(disco.conversations("disco-mini/train")), 12]
    assert [t["provenance"]["limit"] for t in trained] == [None, 12]

    # a trained student records what the trainer's recipe records: config, document model and provenance
    call = trained[1]
    recipe = {"config": asdict(call["config"]), "doc_model": splade.doc_model.source, **call["provenance"]}
    untrained_student(students / "mini-human.limit12", recipe)
    reused = lib.student("disco-mini/train", HUMAN, args, splade, tmp_path, "mini-human")
    assert isinstance(reused, disco.DiSCo) and len(trained) == 2
    with pytest.raises(FileExistsError, match="dataset"):
        lib.student("ikat/2023/train", HUMAN, args, splade, tmp_path, "mini-human")
    with pytest.raises(FileExistsError, match="teachers"):
        lib.student("disco-mini/train", {**HUMAN, "query": "query"}, args, splade, tmp_path, "mini-human")
    args.epochs = 2
    with pytest.raises(FileExistsError, match="config"):
        lib.student("disco-mini/train", HUMAN, args, splade, tmp_path, "mini-human")
    (students / "mini-human.limit12" / "pt_meta.json").write_text(json.dumps({
        **json.loads((students / "mini-human.limit12" / "pt_meta.json").read_text()),
        "recipe": {**recipe, "limit": 30}}))
    args.epochs = 1
    with pytest.raises(FileExistsError, match="limit"):
        lib.student("disco-mini/train", HUMAN, args, splade, tmp_path, "mini-human")
