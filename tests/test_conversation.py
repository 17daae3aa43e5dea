"""The DiSCo input formatter: reference format, knobs, truncation, bad input."""
import re

import pandas as pd
import pytest
from transformers import BertTokenizerFast

from pyterrier_disco.conversation import ConversationFormatter, full_context

CONV = [("what's the weather like today?", "it's sunny."),
        ("should I wear sunscreen?", "yes, UV index is high."),
        ("do I need sunglasses?", "definitely."),
        ("where can I buy sunglasses?", "try the optician nearby.")]
QUERY = "how much do they cost?"


def history_of(conv):
    return [x for q, a in conv for x in ({"role": "user", "text": q}, {"role": "system", "text": a})]


def reference_all_history(conv, query):
    """The DiSCo reference transform (disco-conv-splade setup_script/parse_topiocqa.py) applied to TopiOCQA's
    AllHistory question ``q1 [SEP] a1 [SEP] ... [SEP] qn``."""
    all_history = " [SEP] ".join([x for q, a in conv for x in (q, a)] + [query])
    parts = [t.strip() for t in all_history.split("[SEP]")]
    parts.reverse()
    return " [SEP] ".join(parts)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    words = sorted({w for text in [QUERY, *[x for qa in CONV for x in qa], "alpha beta gamma delta"]
                    for w in re.findall(r"\w+|[^\w\s]", text.lower())})
    vocab = tmp_path_factory.mktemp("tok") / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    return BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)


def test_default_matches_the_reference_transform():
    expected = reference_all_history(CONV, QUERY)
    assert ConversationFormatter(max_length=None)(QUERY, history_of(CONV)) == expected
    assert full_context(QUERY, history_of(CONV), max_length=None) == expected
    assert expected.startswith(QUERY + " [SEP] try the optician nearby. [SEP] where can I buy")
    assert ConversationFormatter()(QUERY, history_of(CONV)) == expected  # short: 256 whitespace tokens not reached


def test_first_turn_and_empty_utterance():
    f = ConversationFormatter()
    assert f(QUERY, []) == QUERY and f(QUERY, None) == QUERY
    assert f("", history_of(CONV[:1])) == "it's sunny. [SEP] what's the weather like today?"
    assert f("", []) == ""


def test_without_responses_and_with_a_response_limit():
    users_only = ConversationFormatter(include_responses=False)(QUERY, history_of(CONV))
    assert users_only == " [SEP] ".join([QUERY] + [q for q, _ in reversed(CONV)])
    cut = ConversationFormatter(max_response_tokens=2)(QUERY, history_of(CONV))
    assert cut.split(" [SEP] ")[1::2] == [" ".join(a.split()[:2]) for _, a in reversed(CONV)]
    assert cut.split(" [SEP] ")[0::2] == [QUERY] + [q for q, _ in reversed(CONV)]
    assert ConversationFormatter(sep="||", max_length=None)(QUERY, history_of(CONV[:1])) == \
        f"{QUERY} || it's sunny. || what's the weather like today?"


def test_long_history_keeps_the_newest_turns_like_the_encoder(tokenizer):
    long_conv = [(f"alpha question {i} ?", "beta gamma delta " * 30) for i in range(20)] + CONV
    f = ConversationFormatter(max_length=256)
    full = ConversationFormatter(max_length=None)(QUERY, history_of(long_conv))
    out = f(QUERY, history_of(long_conv), tokenizer)
    assert full.startswith(out) and len(out) < len(full)
    # identical to what the encoder itself keeps when it truncates the full string on the right
    expected_ids = tokenizer(full, truncation=True, max_length=256)["input_ids"]
    assert tokenizer(out)["input_ids"] == expected_ids and len(expected_ids) == 256
    assert out.startswith(QUERY + " [SEP] try the optician nearby.")
    words = f(QUERY, history_of(long_conv))  # no tokenizer: whitespace tokens
    assert words == " ".join(full.split()[:256])
    per_answer = ConversationFormatter(max_response_tokens=3, max_length=None)(QUERY, history_of(long_conv), tokenizer)
    for answer in per_answer.split(" [SEP] ")[1::2]:
        assert len(tokenizer(answer, add_special_tokens=False)["input_ids"]) <= 3


def test_format_frame_and_bad_input():
    frame = pd.DataFrame({"qid": ["1", "2"], "query": [QUERY, "hello"], "history": [history_of(CONV), []]})
    f = ConversationFormatter()
    assert f.format_frame(frame) == [f(QUERY, history_of(CONV)), "hello"]
    with pytest.raises(KeyError, match="history"):
        f.format_frame(frame.drop(columns=["history"]))
    with pytest.raises(ValueError, match="role"):
        f(QUERY, [{"role": "assistant", "text": "x"}])
    with pytest.raises(ValueError, match="'role' and 'text'"):
        f(QUERY, ["just a string"])
    with pytest.raises(ValueError, match="max_length"):
        ConversationFormatter(max_length=-1)


def test_formats_a_real_frame(ikat_data, tmp_path, monkeypatch):
    import shutil
    from pyterrier_disco.datasets import conversations
    (tmp_path / "ikat").mkdir()
    for name in ["2023_train_topics.json", "2023_train_topics_psg_text.jsonl"]:
        shutil.copy(ikat_data / name, tmp_path / "ikat" / name)
    monkeypatch.setenv("IR_DATASETS_HOME", str(tmp_path))
    monkeypatch.setenv("DISCO_OFFLINE", "1")
    df = conversations("ikat/2023/train")
    texts = ConversationFormatter(max_length=None).format_frame(df)
    assert len(texts) == len(df)
    for text, row in zip(texts, df.itertuples()):
        assert text.split(" [SEP] ")[0] == row.query.strip()
        assert text.count("[SEP]") == sum(1 for h in row.history if h["text"].strip())


def test_bad_history_values_are_refused_naming_the_row():
    import pandas as pd

    from pyterrier_disco import DiscoError

    f = ConversationFormatter(max_length=None)
    good = [{"role": "user", "text": "hi"}]
    for history, expected in [(float("nan"), "history must be a list.*float: nan"),
                              ([{"role": "user", "text": None}], "history entry 0 has a NoneType text"),
                              ([{"role": "system", "text": float("nan")}], "history entry 0 has a float text"),
                              ("a string", "history must be a list")]:
        frame = pd.DataFrame({"qid": ["a", "b"], "query": ["q1", "q2"], "history": [good, history]})
        with pytest.raises(TypeError, match=rf"row 1 \(qid 'b'\): {expected}") as e:
            f.format_frame(frame)
        assert isinstance(e.value, DiscoError)  # a user error: one line on the command line
    assert f.format_frame(pd.DataFrame({"qid": ["a"], "query": ["q"], "history": [None]})) == ["q"]  # none: empty

