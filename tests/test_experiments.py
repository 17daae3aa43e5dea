"""The experiment scripts: every --help, a real small run of figures5_6 and table4_zero_shot on the real iKAT
2023 train files, and the student cache of experiments/_lib.py."""
import importlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pyterrier as pt
import pytest

import pyterrier_disco as disco
from pyterrier_disco.encoders import embedded_model_path
from pyterrier_disco.evaluation import MEASURE_NAMES, MEASURES

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
SCRIPTS = sorted(p for p in EXPERIMENTS.glob("*.py") if not p.name.startswith("_"))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_script(name, *args, timeout=300):
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
    paper = {"figure4_teachers.py", "figures5_6.py", "followup_sweeps.py", "table3_in_domain.py",
             "table4_zero_shot.py", "table5_latency.py"}
    transfer = {"transfer.py", "recipe_search.py", "default_student.py"}  # issue 11: their own options
    assert {p.name for p in SCRIPTS} == paper | transfer
    procs = {p.name: subprocess.Popen([sys.executable, str(p), "--help"], cwd=ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True) for p in SCRIPTS}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{name}: {err}"
        assert out.startswith("usage:") and "--work" in out, name
        if name in paper:
            assert "--limit" in out and "--out" in out and "--llm" in out, name
    # their own options are there too
    assert "--student" in run_script("table4_zero_shot.py", "--help").stdout


@pytest.fixture(scope="module")
def small_runs(ikat_home, tmp_path_factory):
    """figures5_6 then table4_zero_shot on the first 3 iKAT 2023 train turns (short LLM prompts), sharing one
    --work folder and the rewrite cache."""
    tmp = tmp_path_factory.mktemp("experiments")
    student = untrained_student(tmp / "student")
    work = tmp / "work"
    fig = run_script("figures5_6.py", "--dataset", "ikat/2023/train", "--student", student, "--limit", 3,
                     "--work", work, "--plots", tmp / "plots", "--out", tmp / "fig56.json",
                     "--model", tmp / "no-such-model")  # ignored: the student's document model is used
    t4 = run_script("table4_zero_shot.py", "--student", student, "--datasets", "ikat/2023/train", "--limit", 3,
                    "--systems", "raw,human,llm,disco", "--work", work, "--out", tmp / "t4.json")
    return {"tmp": tmp, "work": work, "fig": fig, "t4": t4}


def test_figures5_6_small_run(small_runs, splade_model):
    fig, tmp = small_runs["fig"], small_runs["tmp"]
    assert fig.returncode == 0, fig.stderr[-3000:]
    assert "--model" in fig.stdout and "ignored" in fig.stdout
    records = json.loads((tmp / "fig56.json").read_text())  # --out is written
    assert [r["name"] for r in records] == ["raw", "fc", "human", "llm", "disco", "fusion"]
    by_name = {r["name"]: r for r in records}
    for r in records:
        assert r["dataset"] == "ikat/2023/train"
        assert all(0 <= r[m] <= 1 for m in MEASURE_NAMES) and r["q_len"] > 0 and r["ms_per_query"] > 0
    assert by_name["llm"]["llm_calls_per_query"] == 1 and by_name["fusion"]["llm_calls_per_query"] == 1
    # the untrained student is the full-context baseline
    for m in MEASURE_NAMES + ["q_len"]:
        assert by_name["disco"][m] == pytest.approx(by_name["fc"][m])
    for name in ("by_depth.png", "tradeoff.png"):
        assert (tmp / "plots" / name).read_bytes()[:8] == PNG_MAGIC
    # one index per document model: the folder is named by the vocabulary fingerprint
    indexes = [p.name for p in (small_runs["work"] / "indexes").iterdir()]
    assert len(indexes) == 1 and indexes[0].startswith(f"ikat_2023_train.{splade_model.vocab_fingerprint}.")


def test_table4_small_run_with_llm_systems(small_runs, splade_model):
    t4, tmp = small_runs["t4"], small_runs["tmp"]
    assert t4.returncode == 0, t4.stderr[-3000:]
    records = json.loads((tmp / "t4.json").read_text())
    assert [r["name"] for r in records] == ["raw", "human", "llm", "disco"]
    assert all(r["dataset"] == "ikat/2023/train" for r in records)
    assert len(list((small_runs["work"] / "indexes").iterdir())) == 1  # the index of figures5_6, reused
    # the raw row against the same pipeline evaluated here
    index = disco.SparseIndex(next((small_runs["work"] / "indexes").iterdir()))
    topics = disco.conversations("ikat/2023/train").head(3)
    expected = pt.Experiment([disco.Splade(splade_model).query_encoder() >> index.retriever()], topics,
                             disco.datasets.qrels("ikat/2023/train"), eval_metrics=MEASURES, names=["raw"])
    for m in MEASURE_NAMES:
        assert records[0][m] == pytest.approx(float(expected[m].iloc[0]))


@pytest.fixture()
def lib(monkeypatch):
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    return importlib.import_module("_lib")


def test_student_cache_is_keyed_by_limit_and_checked(lib, tmp_path, monkeypatch, splade_model):
    trained = []

    def fake_train(conversations, run, docs, out, **kw):
        trained.append({"out": Path(out), "turns": len(conversations), **kw})
        return "student"

    monkeypatch.setattr("pyterrier_disco.train.train", fake_train)
    monkeypatch.setattr(lib, "teacher_run", lambda *a, **kw: pd.DataFrame())
    splade = disco.Splade(splade_model)
    args = lib.parser("test").parse_args(["--work", str(tmp_path), "--epochs", "1"])
    students = tmp_path / "students"

    lib.student("disco-mini/train", ["human"], args, splade, None, tmp_path, "mini-human")
    args.limit = 12
    lib.student("disco-mini/train", ["human"], args, splade, None, tmp_path, "mini-human")
    assert [t["out"] for t in trained] == [students / "mini-human", students / "mini-human.limit12"]
    assert [t["turns"] for t in trained] == [len(disco.conversations("disco-mini/train")), 12]
    assert [t["provenance"]["limit"] for t in trained] == [None, 12]

    # a trained student records what the trainer's recipe records: config, document model and provenance
    call = trained[1]
    recipe = {"config": asdict(call["config"]), "doc_model": splade.doc_model.source, **call["provenance"]}
    untrained_student(students / "mini-human.limit12", recipe)
    reused = lib.student("disco-mini/train", ["human"], args, splade, None, tmp_path, "mini-human")
    assert isinstance(reused, disco.DiSCo) and len(trained) == 2
    with pytest.raises(FileExistsError, match="dataset"):
        lib.student("ikat/2023/train", ["human"], args, splade, None, tmp_path, "mini-human")
    with pytest.raises(FileExistsError, match="teachers"):
        lib.student("disco-mini/train", ["human", "llm"], args, splade, None, tmp_path, "mini-human")
    args.epochs = 2
    with pytest.raises(FileExistsError, match="config"):
        lib.student("disco-mini/train", ["human"], args, splade, None, tmp_path, "mini-human")
    (students / "mini-human.limit12" / "pt_meta.json").write_text(json.dumps({
        **json.loads((students / "mini-human.limit12" / "pt_meta.json").read_text()),
        "recipe": {**recipe, "limit": 30}}))
    args.epochs = 1
    with pytest.raises(FileExistsError, match="limit"):
        lib.student("disco-mini/train", ["human"], args, splade, None, tmp_path, "mini-human")


class Compared(Exception):
    pass


def test_evaluate_builds_the_llm_rewriter_when_asked(lib, monkeypatch):
    """table3/table4 --systems with llm or fusion: _lib.evaluate makes the --llm rewriter (the real one is run
    by test_table4_small_run_with_llm_systems)."""
    made, captured = [], {}

    def fake_llm(args, cache=True):
        made.append(args.llm)
        return "the rewriter"

    def fake_compare(*args, **kwargs):
        raise Compared

    monkeypatch.setattr(lib, "llm_rewriter", fake_llm)
    monkeypatch.setattr("pyterrier_disco.evaluation.standard_systems",
                        lambda names, splade, students, llm: captured.update(llm=llm) or [])
    monkeypatch.setattr("pyterrier_disco.evaluation.compare", fake_compare)
    splade = SimpleNamespace(doc_model=SimpleNamespace(vocab_fingerprint="v"))
    args = lib.parser("test").parse_args(["--llm", "some/llm", "--limit", "3"])
    for systems, expected in [(["raw", "fc"], None), (["raw", "llm"], "the rewriter"), (["fusion"], "the rewriter")]:
        with pytest.raises(Compared):
            lib.evaluate("disco-mini/test", systems, splade, None, args, students={})
        assert captured["llm"] == expected
    assert made == ["some/llm", "some/llm"]
