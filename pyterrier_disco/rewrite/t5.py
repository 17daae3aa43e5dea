"""CANARD-style seq2seq rewriting (e.g. castorini/t5-base-canard)."""
from typing import List, Optional, Sequence

from .._utils import resolve_device
from .base import GenerativeRewriter
from .prompt import context_lines, prompt_fingerprint

CANARD_SEP = " ||| "


def canard_input(utterance: str, history: Sequence[dict] = (), n_responses: int = 0, sep: str = CANARD_SEP) -> str:
    """The input a CANARD-trained T5 expects: earlier turns oldest first, then the utterance, joined by
    ``" ||| "``. System responses are kept only for the last ``n_responses`` turns (0: questions only).

    Follows the input construction of the TREC CAsT/iKAT T5 baselines that use castorini/t5-base-canard
    (``" ||| ".join(context + [utterance])``, tokenizer truncating on the left so the oldest turns go first).
    """
    lines = context_lines(history, "full")
    n_users = sum(line.startswith("user: ") for line in lines)
    parts, users_seen = [], 0
    for line in lines:
        role, text = line.split(": ", 1)
        if role == "user":
            users_seen += 1
            parts.append(text)
        elif users_seen > n_users - n_responses:  # a response to one of the last n_responses questions
            parts.append(text)
    return sep.join(parts + [" ".join(str(utterance).split())])


class T5Rewriter(GenerativeRewriter):
    """Rewrites each turn with a CANARD-style seq2seq model (``castorini/t5-base-canard`` by default; any
    hub id or local folder). Decoding: ``num_beams`` beams (1 = greedy), at most ``max_new_tokens`` tokens;
    inputs longer than ``max_input_tokens`` lose their oldest tokens. Same ``policy``, cache and counters as
    :class:`LLMRewriter`; the default policy is ``rewrite`` since CANARD rewrites keep the utterance's words.
    """

    kind = "t5"

    def __init__(self, model: str = "castorini/t5-base-canard", *, n_responses: int = 0, num_beams: int = 4,
                 max_new_tokens: int = 64, max_input_tokens: int = 512, policy: str = "rewrite",
                 batch_size: int = 8, device: Optional[str] = None, cache=True, verbose: bool = False):
        super().__init__(policy=policy, batch_size=batch_size, cache=cache, verbose=verbose)
        self.model = str(model)
        self.n_responses = n_responses
        self.num_beams = num_beams
        self.max_new_tokens = max_new_tokens
        self.max_input_tokens = max_input_tokens
        self.device = device
        self._seq2seq = None  # loaded at the first generation (not named _model: pt.inspect reads that as `model`)
        self._tokenizer = None

    @property
    def model_name(self) -> str:
        """The model's name, as teacher metadata records it (the same as ``model``)."""
        return self.model

    def _load(self):
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(self.model)
        self._tokenizer.truncation_side = "left"
        model = AutoModelForSeq2SeqLM.from_pretrained(self.model)
        self._seq2seq = model.to(resolve_device(self.device)).eval()

    def model_inputs(self, utterances, histories) -> List[str]:
        return [canard_input(u, h, self.n_responses) for u, h in zip(utterances, histories)]

    def generate(self, inputs: List[str]) -> List[str]:
        import torch

        if self._seq2seq is None:
            self._load()
        enc = self._tokenizer(inputs, return_tensors="pt", padding=True, truncation=True,
                              max_length=self.max_input_tokens, return_token_type_ids=False).to(self._seq2seq.device)
        with torch.inference_mode():
            out = self._seq2seq.generate(**enc, max_new_tokens=self.max_new_tokens, num_beams=self.num_beams,
                                         do_sample=False, early_stopping=self.num_beams > 1)
        return self._tokenizer.batch_decode(out, skip_special_tokens=True)

    def prompt_hash(self) -> str:
        return prompt_fingerprint(lambda u, h: canard_input(u, h, self.n_responses))

    def cache_settings(self) -> dict:
        return {"rewriter": "seq2seq", "model": self.model, "num_beams": self.num_beams,
                "max_new_tokens": self.max_new_tokens, "max_input_tokens": self.max_input_tokens}

    def __repr__(self):
        return f"T5Rewriter({self.model!r}, n_responses={self.n_responses}, policy={self.policy!r})"
