"""Frozen document vectors for training: each candidate document encoded once by the document model."""
from typing import Callable, Dict, List, Mapping, Sequence, Union

import scipy.sparse as sp
import torch

from ..encoders import SpladeModel

DocSource = Union[Mapping[str, str], Callable[[List[str]], List[str]]]


class DocumentCache:
    """Sparse vectors of candidate documents from the frozen document encoder, each encoded once."""

    def __init__(self, model: SpladeModel, docs: DocSource, batch_size: int = 32, enabled: bool = True):
        self.model = model
        self.lookup = docs if callable(docs) else (lambda ids: [docs[i] for i in ids])
        self.batch_size = batch_size
        self.enabled = enabled
        self.rows: Dict[str, sp.csr_matrix] = {}
        self.encoded = 0

    def _texts(self, docnos: List[str]) -> List[str]:
        try:
            texts = self.lookup(docnos)
        except KeyError as e:
            raise KeyError(f"no text for document {e.args[0]!r} of the teacher run: is the run from another "
                           "collection?") from e
        return list(texts)

    def matrix(self, docnos: Sequence[str]) -> sp.csr_matrix:
        """The (len(docnos), vocab) sparse vectors of ``docnos``."""
        if not self.enabled:
            self.encoded += len(docnos)
            return self.model.encode(self._texts(list(docnos)), self.batch_size)
        missing = list(dict.fromkeys(d for d in docnos if d not in self.rows))
        if missing:
            encoded = self.model.encode(self._texts(missing), self.batch_size)
            self.encoded += len(missing)
            for i, d in enumerate(missing):
                self.rows[d] = encoded[i]
        return sp.vstack([self.rows[d] for d in docnos]).tocsr()

    def dense(self, docnos: Sequence[str]) -> torch.Tensor:
        """A (len(docnos), vocab) float tensor on the model's device."""
        return torch.from_numpy(self.matrix(docnos).toarray()).to(self.model.device)
