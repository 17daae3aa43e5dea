"""Teachers named with their model: parsing, clear errors, the metadata a teacher run records (model, prompt
hash, policy, fallbacks), refusing a run built with another model or prompt, and the CLI."""
import pandas as pd
import pytest

import pyterrier_disco as disco
from pyterrier_disco.cli import main
from pyterrier_disco.rewrite import LLMRewriter, T5Rewriter
from pyterrier_disco.train import (TeacherSpec, build_teacher_run, check_teachers, load_teacher_run, parse_teachers,
                                   resolve_teachers)
from pyterrier_disco.train.teacher_specs import teacher_info

MISTRAL = "mistralai/Mistral-7B-Instruct-v0.2"
COLUMNS = ["qid", "query", "history", "human_rewrite", "automatic_rewrite"]
FRAME = pd.DataFrame(columns=COLUMNS)


def test_specs_name_their_model():
    specs = parse_teachers("human, llm=mistral, t5, llm=meta-llama/Meta-Llama-3.1-8B-Instruct", COLUMNS)
    assert [s.name for s in specs] == ["human", f"llm={MISTRAL}", "t5", "llm=meta-llama/Meta-Llama-3.1-8B-Instruct"]
    assert specs[0] == TeacherSpec("column", "human_rewrite", alias="human")
    assert specs[2].source == "castorini/t5-base-canard"
    assert parse_teachers(["t5=castorini/t5-base-canard"], COLUMNS)[0].name == "t5"  # the default, spelled out
    teachers = resolve_teachers(f"human,llm={MISTRAL},t5", FRAME)
    assert list(teachers) == ["human", f"llm={MISTRAL}", "t5"]
    assert teachers["human"] == "human_rewrite"
    llm = teachers[f"llm={MISTRAL}"]
    assert isinstance(llm, LLMRewriter) and llm.model_name == MISTRAL
    assert llm.policy == "rewrite" and llm.prompt == "one-shot"  # the paper's teacher: Table 2, rewrite alone
    assert isinstance(teachers["t5"], T5Rewriter) and teachers["t5"].model_name == "castorini/t5-base-canard"


def test_unknown_teachers_and_models_say_which_are_known(tmp_path):
    with pytest.raises(ValueError, match=r"unknown teacher 'gpt'.*human.*llm\[=MODEL\].*t5\[=MODEL\].*human_rewrite"):
        parse_teachers("human,gpt", COLUMNS)
    with pytest.raises(ValueError, match=r"unknown model 'mistral-7b' for teacher llm.*mistral \(mistralai/Mistral"):
        parse_teachers("llm=mistral-7b", COLUMNS)
    with pytest.raises(FileNotFoundError, match="no such model"):
        parse_teachers(f"llm={tmp_path / 'missing.gguf'}", COLUMNS)
    with pytest.raises(ValueError, match="only llm=MODEL and t5=MODEL"):
        parse_teachers("human=x", COLUMNS)
    with pytest.raises(ValueError, match="given twice"):
        parse_teachers(f"llm=mistral,llm={MISTRAL}", COLUMNS)
    with pytest.raises(ValueError, match="give a model"):
        parse_teachers("llm=", COLUMNS)
    folder = tmp_path / "my-llm"
    folder.mkdir()
    assert parse_teachers(f"llm={folder}", COLUMNS)[0].source == str(folder)


def _meta(teachers):
    """The metadata of a run built with ``teachers``."""
    return {"teacher_details": {name: {**teacher_info(t), "fallbacks": 0, "turns": 1} for name, t in teachers.items()}}


def test_a_run_built_with_another_prompt_or_policy_is_refused_naming_both():
    one_shot = {f"llm={MISTRAL}": LLMRewriter(MISTRAL)}
    meta = _meta(one_shot)
    check_teachers(meta, one_shot)  # the same teacher: accepted
    zero = {f"llm={MISTRAL}": LLMRewriter(MISTRAL, prompt="zero-shot")}
    hashes = (one_shot[f"llm={MISTRAL}"].prompt_hash(), zero[f"llm={MISTRAL}"].prompt_hash())
    assert hashes[0] != hashes[1]
    with pytest.raises(ValueError, match=f"built with .*prompt_hash '{hashes[0]}'.*but .*prompt_hash '{hashes[1]}'"):
        check_teachers(meta, zero)
    with pytest.raises(ValueError, match="policy 'rewrite'.*policy 'utterance\\+rewrite'"):
        check_teachers(meta, {f"llm={MISTRAL}": LLMRewriter(MISTRAL, policy="utterance+rewrite")})
    with pytest.raises(ValueError, match=f"no teacher 'llm=meta-llama/Llama'; it holds llm={MISTRAL}"):
        check_teachers(meta, {"llm=meta-llama/Llama": LLMRewriter("meta-llama/Llama")})
    with pytest.raises(ValueError, match="model 'human_rewrite'.*model 'automatic_rewrite'"):
        check_teachers(_meta({"human": "human_rewrite"}), {"human": "automatic_rewrite"})
    with pytest.raises(ValueError, match="no teacher details"):
        check_teachers({"teachers": ["human"]}, {"human": "human_rewrite"})


def test_teacher_run_records_models_and_fallbacks(ikat_index, ikat_turns, splade_model):
    index, _ = ikat_index
    conversations = ikat_turns.head(6).copy()
    conversations.loc[[1, 4], "human_rewrite"] = ""  # two turns without a rewrite: they fall back
    with pytest.warns(UserWarning, match="human_rewrite"):
        run = build_teacher_run(conversations, {"human": "human_rewrite", "raw": "query"},
                                disco.Splade(splade_model), index, k=5, verbose=False)
    details = run.attrs["teacher_run"]["teacher_details"]
    assert details["human"] == {"kind": "column", "model": "human_rewrite", "prompt_hash": None, "policy": None,
                                "turns": 6, "fallbacks": 2}
    assert details["raw"]["fallbacks"] == 0 and details["raw"]["model"] == "query"
    check_teachers(run, {"human": "human_rewrite"})


def test_cli_teacher_run_prints_fallbacks_and_train_refuses_other_teachers(tmp_path, capsys):
    index = tmp_path / "index"
    assert main(["index", "--dataset", "disco-mini/train", "--out", str(index)]) == 0
    out = tmp_path / "run.parquet"
    assert main(["teacher-run", "--dataset", "disco-mini/train", "--teachers", "human,query", "--index", str(index),
                 "--out", str(out), "--limit", "8", "--k", "20"]) == 0
    printed = capsys.readouterr().out
    assert "human: model human_rewrite; 0 of 8 rewrites fell back to the utterance" in printed
    meta = load_teacher_run(out).attrs["teacher_run"]
    assert meta["teachers"] == ["human", "query"] and meta["teacher_details"]["query"]["fallbacks"] == 0
    code = main(["train", "--dataset", "disco-mini/train", "--teacher-run", str(out), "--out", str(tmp_path / "s"),
                 "--teachers", "response", "--max-steps", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "no teacher 'response'; it holds human, query" in err
    assert not (tmp_path / "s").exists()
    code = main(["teacher-run", "--dataset", "disco-mini/train", "--teachers", "human,llm=nope", "--index",
                 str(index), "--out", str(tmp_path / "x.parquet")])
    assert code == 2 and "unknown model 'nope' for teacher llm" in capsys.readouterr().err
