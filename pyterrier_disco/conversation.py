"""Flatten a conversation (current utterance + history) into the DiSCo query encoder's input string.

Reference behaviour (SimonLupart/disco-conv-splade, ``setup_script/parse_topiocqa.py``, training queries): the
TopiOCQA AllHistory question ``q_1 [SEP] a_1 [SEP] ... [SEP] q_n`` is split on ``[SEP]``, stripped, reversed and
joined with ``" [SEP] "``, giving ``q_n [SEP] a_{n-1} [SEP] q_{n-1} [SEP] ... [SEP] q_1``: newest first, answers
included, no per-answer truncation; the encoder then truncates on the right at ``max_length: 256`` tokens
(``conf/disco_topiocqa_mistral_llama.yaml``), which drops the oldest turns. The DiSCo model cards describe the
same format.
"""
from typing import List, Optional, Sequence

import pandas as pd

from ._errors import InputKeyError, InputTypeError

REQUIRED_COLUMNS = ("query", "history")


def _truncate(text: str, limit: Optional[int], tokenizer=None, special_tokens: int = 0) -> str:
    """The longest prefix of ``text`` holding at most ``limit`` tokens (``limit - special_tokens`` with a
    tokenizer, whose own [CLS]/[SEP] count against the encoder's limit); whitespace tokens without a tokenizer."""
    if limit is None:
        return text
    if tokenizer is None:
        words = text.split()
        return text if len(words) <= limit else " ".join(words[:limit])
    budget = max(limit - special_tokens, 0)
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except NotImplementedError:  # slow (python) tokenizers have no offsets
        tokens = tokenizer.tokenize(text)
        return text if len(tokens) <= budget else tokenizer.convert_tokens_to_string(tokens[:budget])
    offsets = enc["offset_mapping"]
    if len(offsets) <= budget:
        return text
    return text[:offsets[budget - 1][1]] if budget > 0 else ""


class ConversationFormatter:
    """Builds ``q_n [SEP] a_{n-1} [SEP] q_{n-1} [SEP] ... q_1`` from a conversation-frame row.

    :param include_responses: keep the system responses of the history (reference: yes).
    :param max_response_tokens: cut each response to its first tokens (reference: no limit, ``None``).
    :param max_length: total token limit, cut on the right like the encoder does (reference: 256; ``None``: none).
    :param sep: separator between turns (reference: ``"[SEP]"``, surrounded by single spaces).

    Token counts use ``tokenizer`` (a Hugging Face tokenizer) when given, whitespace tokens otherwise. Empty texts
    (an empty utterance or response) are left out rather than producing empty segments.
    """

    def __init__(self, include_responses: bool = True, max_response_tokens: Optional[int] = None,
                 max_length: Optional[int] = 256, sep: str = "[SEP]"):
        for name, value in (("max_response_tokens", max_response_tokens), ("max_length", max_length)):
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a non-negative int or None, got {value!r}")
        self.include_responses = include_responses
        self.max_response_tokens = max_response_tokens
        self.max_length = max_length
        self.sep = sep

    def __call__(self, query: str, history: Sequence[dict], tokenizer=None) -> str:
        if not isinstance(query, str):
            raise InputTypeError(f"query must be a str, got {type(query).__name__}: {query!r}")
        if isinstance(history, (str, bytes, dict, float, int)):  # NaN (a missing value in a frame) is a float
            raise InputTypeError(f"history must be a list of {{'role', 'text'}} dicts ([] or None for none), got "
                                 f"{type(history).__name__}: {history!r}")
        history = list(history) if history is not None else []
        parts = [query.strip()]
        for i, turn in enumerate(reversed(history)):
            if not isinstance(turn, dict) or "role" not in turn or "text" not in turn:
                raise ValueError(f"history entry {len(history) - 1 - i} must be a dict with 'role' and 'text', "
                                 f"got {turn!r}")
            if not isinstance(turn["text"], str):
                raise InputTypeError(f"history entry {len(history) - 1 - i} has a {type(turn['text']).__name__} "
                                     f"text, not a str: {turn!r}")
            if turn["role"] == "system":
                if not self.include_responses:
                    continue
                text = _truncate(str(turn["text"]).strip(), self.max_response_tokens, tokenizer)
            elif turn["role"] == "user":
                text = str(turn["text"]).strip()
            else:
                raise ValueError(f"history role must be 'user' or 'system', got {turn['role']!r}")
            parts.append(text)
        text = f" {self.sep} ".join(p for p in parts if p)
        special = tokenizer.num_special_tokens_to_add(pair=False) if tokenizer is not None else 0
        return _truncate(text, self.max_length, tokenizer, special)

    def format_frame(self, df: pd.DataFrame, tokenizer=None) -> List[str]:
        """One input string per row of a conversation frame (needs ``query`` and ``history``)."""
        missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
        if missing:
            raise InputKeyError(f"conversation frame lacks column(s) {missing}; found {list(df.columns)} "
                           f"(build frames with pyterrier_disco.conversations(...))")
        qids = df["qid"] if "qid" in df.columns else [None] * len(df)
        texts = []
        for row, (qid, query, history) in enumerate(zip(qids, df["query"], df["history"])):
            try:
                texts.append(self(query, history, tokenizer))
            except (InputTypeError, ValueError) as e:
                where = f"row {row}" + (f" (qid {qid!r})" if qid is not None else "")
                raise (InputTypeError if isinstance(e, TypeError) else ValueError)(f"{where}: {e}") from e
        return texts

    def settings(self) -> dict:
        """The constructor arguments, JSON-able (stored in a student's ``pt_meta.json``)."""
        return {"include_responses": self.include_responses, "max_response_tokens": self.max_response_tokens,
                "max_length": self.max_length, "sep": self.sep}

    def __repr__(self):
        return (f"ConversationFormatter(include_responses={self.include_responses}, "
                f"max_response_tokens={self.max_response_tokens}, max_length={self.max_length}, sep={self.sep!r})")


def full_context(query: str, history: Sequence[dict], tokenizer=None, **kwargs) -> str:
    """The whole conversation in the reference format (the "full context, untrained SPLADE" baseline's input);
    ``kwargs`` go to :class:`ConversationFormatter`."""
    return ConversationFormatter(**kwargs)(query, history, tokenizer)
