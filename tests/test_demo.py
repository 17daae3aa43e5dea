"""`disco demo` for real on disco-mini with tiny budgets: the table, its files, and the caches of a second run.

One module-scoped workdir holds three runs: a first (everything built: index, LLM rewrites with the real
SmolLM2, teacher runs, two students, evaluation), a second with the same settings (everything reused: no LLM
call, no retraining) and a third with another number of epochs and DiSCo's release recipe (students
retrained, teacher run reused).
"""
import contextlib
import io
import json
import re

import pandas as pd
import pytest

from pyterrier_disco.demo import DemoConfig, _built_with, _settings_file, run_demo
from pyterrier_disco.evaluation import MEASURE_NAMES
from pyterrier_disco.rewrite.cache import RewriteCache
from pyterrier_disco.train import load_teacher_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SYSTEMS = ["raw", "fc", "human", "llm", "disco-human", "disco-human+llm", "fusion"]
STUDENTS = ["disco-human", "disco-human+llm"]


def tiny(workdir, **changes) -> DemoConfig:
    # the first training conversation for the LLM teacher, the first test conversation, a few seconds of training
    settings = dict(workdir=workdir, train_minutes=0.05, epochs=1, batch_size=4, negatives=4, llm_train_turns=1,
                    test_turns=1, verbose=False)
    return DemoConfig(**{**settings, **changes})


def mtimes(work):
    files = [work / "teacher_run.parquet", work / "index" / "pt_meta.json"]
    files += [work / s / name for s in STUDENTS for name in ("model.safetensors", "pt_meta.json")]
    return {str(f.relative_to(work)): f.stat().st_mtime_ns for f in files}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    work = tmp_path_factory.mktemp("demo") / "work"
    first = run_demo(tiny(work))
    after_first = mtimes(work)
    first_metas = {s: json.loads((work / s / "pt_meta.json").read_text()) for s in STUDENTS}
    cache_size = len(RewriteCache())
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        second = run_demo(tiny(work))
    after_second = mtimes(work)
    second_cache_size = len(RewriteCache())
    third = run_demo(tiny(work, epochs=2, recipe="release"))
    return {"work": work, "first": first, "second": second, "third": third, "printed": printed.getvalue(),
            "first_metas": first_metas,
            "mtimes": [after_first, after_second, mtimes(work)], "cache_sizes": [cache_size, second_cache_size]}


def test_demo_table_has_every_system_and_column(runs):
    summary = runs["first"]
    assert list(summary["name"]) == SYSTEMS
    for column in MEASURE_NAMES + ["q_len", "FLOPs", "ms_per_query", "llm_calls_per_query"]:
        assert summary[column].notna().all(), column
    for m in MEASURE_NAMES:
        assert summary[m].between(0, 1).all()
    by_name = summary.set_index("name")
    assert by_name["llm_calls_per_query"].to_dict() == {"raw": 0, "fc": 0, "human": 0, "llm": 1, "disco-human": 0,
                                                         "disco-human+llm": 0, "fusion": 1}
    assert (summary["ms_per_query"] > 0).all() and (summary["q_len"] > 0).all() and (summary["FLOPs"] > 0).all()
    # the gold human rewrites resolve the context, so they beat the raw utterance on the first test conversation
    assert by_name.loc["human", "RR"] > by_name.loc["raw", "RR"]
    assert "RR p-value corrected" in summary.columns  # t-tests against the raw baseline
    assert summary.attrs["llm_calls"] > 0  # the first run generated the rewrites
    assert set(summary.attrs["seconds"]) == {"index", "llm_rewrite", "teacher_runs", "train", "evaluate", "write",
                                             "total"}


def test_demo_prints_the_table(runs):
    out = runs["printed"]  # the second run's output
    header = next(line for line in out.splitlines() if "R@100" in line)
    for column in ["system", "R@100", "R@10", "RR", "nDCG@3", "q_len", "FLOPs", "ms/query", "LLM calls/q"]:
        assert column in header, column
    for label in ["SPLADE (raw utterance)", "SPLADE (full context, untrained)", "human rewrite >> SPLADE",
                  "LLM rewrite >> SPLADE", "DiSCo (disco-human)", "DiSCo (disco-human+llm)",
                  "DiSCo (disco-human+llm) + LLM fusion", "Bonferroni"]:
        assert label in out
    assert "0 LLM calls made now" in out and "reusing" in out


def test_demo_writes_csv_json_and_plots(runs):
    results = runs["work"] / "results"
    csv = pd.read_csv(results / "results.csv")
    assert list(csv["name"]) == SYSTEMS
    records = json.loads((results / "results.json").read_text())
    assert [r["name"] for r in records] == SYSTEMS
    for r in records:
        assert {"RR", "R@10", "R@100", "nDCG@3", "q_len", "FLOPs", "ms_per_query", "llm_calls_per_query"} <= set(r)
    per_turn = pd.read_csv(results / "per_turn.csv")
    assert set(per_turn["system"]) == set(SYSTEMS)
    for name in ("by_depth.png", "tradeoff.png"):
        data = (results / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 1000


def test_second_run_reuses_every_cache(runs):
    first, second = runs["first"], runs["second"]
    assert second.attrs["llm_calls"] == 0  # every rewrite, train and test, came from the rewrite cache
    assert runs["cache_sizes"][1] == runs["cache_sizes"][0]
    assert runs["mtimes"][1] == runs["mtimes"][0]  # index, teacher run and students untouched
    pd.testing.assert_frame_equal(first[["name"] + MEASURE_NAMES + ["q_len", "FLOPs"]],
                                  second[["name"] + MEASURE_NAMES + ["q_len", "FLOPs"]])
    # cached rewrites still count the generation time recorded when they were made
    assert second.set_index("name").loc["llm", "ms_per_query"] > second.set_index("name").loc["raw", "ms_per_query"]


def test_changed_settings_retrain_the_students_only(runs):
    work, before, after = runs["work"], runs["mtimes"][1], runs["mtimes"][2]
    assert runs["third"].attrs["llm_calls"] == 0
    assert after["teacher_run.parquet"] == before["teacher_run.parquet"]  # epochs do not change the teacher run
    assert after["index/pt_meta.json"] == before["index/pt_meta.json"]
    for student in STUDENTS:
        assert after[f"{student}/model.safetensors"] != before[f"{student}/model.safetensors"]
        meta = json.loads((work / student / "pt_meta.json").read_text())
        assert meta["recipe"]["config"]["epochs"] == 2
        assert json.loads(_settings_file(work / student).read_text())["train_config"]["epochs"] == 2
        # --recipe release: DiSCo as released (its loss, every weight trained, no utterance vector)
        config = meta["recipe"]["config"]
        assert (config["loss"], config["freeze_embeddings"], config["utterance_weight"]) == ("disco", False, None)
        assert meta["utterance_weight"] == 0


def test_demo_trains_the_transfer_recipe_by_default(runs):
    for student, meta in runs["first_metas"].items():
        config = meta["recipe"]["config"]
        assert (config["loss"], config["freeze_embeddings"], config["utterance_weight"]) == ("followup", True, 1.0)
        assert meta["utterance_weight"] == 1.0, student  # the student adds the utterance's vector at search time


def test_unknown_recipe_is_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="recipe='paper' is not one of transfer, release"):
        run_demo(tiny(tmp_path / "work", recipe="paper"))
    with pytest.raises(ValueError, match="epochs='3' is not of type int; loss='kl' is not one of"):
        DemoConfig(epochs="3", loss="kl")
    for bad, message in [(dict(lr=0.0), "lr=0.0 must be > 0"), (dict(train_minutes=float("nan")), "train_minutes=nan"),
                         (dict(negatives=0, test_turns=-2), "negatives=0 must be >= 1; test_turns=-2 must be >= 1"),
                         (dict(llm_train_turns=-1), "llm_train_turns=-1 must be >= 0")]:
        with pytest.raises(ValueError, match="invalid demo option"):
            DemoConfig(**bad)
        with pytest.raises(ValueError, match=re.escape(message)):
            run_demo(tiny(tmp_path / "work", **bad))
    assert not (tmp_path / "work").exists()
    assert DemoConfig(workdir=str(tmp_path)).workdir == tmp_path
    assert DemoConfig(test_turns=None, llm_batch_size=None, llm_train_turns=0).llm_train_turns == 0


def test_teacher_run_settings_record_the_llm_turns(runs):
    run_file = runs["work"] / "teacher_run.parquet"
    stored = json.loads(_settings_file(run_file).read_text())
    assert stored["teachers"] == ["human", "llm"] and stored["llm_turns"] > 0
    assert _built_with(run_file, stored)
    # the demo's explicit choice for its 135M LLM (the paper's is "rewrite"), recorded with the prompt's hash
    details = load_teacher_run(run_file).attrs["teacher_run"]["teacher_details"]
    assert stored["llm"]["policy"] == details["llm"]["policy"] == "utterance+rewrite"
    assert details["llm"]["prompt_hash"] == stored["llm"]["prompt_hash"] and details["human"]["fallbacks"] == 0
    # a run over other LLM-rewritten turns (another --llm-train-turns) or another LLM is not reused
    assert not _built_with(run_file, {**stored, "llm_turns": stored["llm_turns"] + 5})
    assert not _built_with(run_file, {**stored, "llm": {**stored["llm"], "model": "another-llm"}})
