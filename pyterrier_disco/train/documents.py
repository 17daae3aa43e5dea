"""Frozen document vectors for training: each candidate document encoded once by the document model."""
from typing import Callable, Dict, Iterable, List, Mapping, Sequence, Union

import scipy.sparse as sp
import torch

from .._errors import InputKeyError
from ..encoders import SpladeModel

DocSource = Union[Mapping[str, str], Callable[[List[str]], List[str]]]


class DocumentCache:
    """Sparse vectors of candidate documents from the frozen document encoder, each encoded once.

    A document's vector depends, in its last bits, on the documents it is encoded with (the padded length of
    its batch changes the rounding of the matrix products). So that a resumed training sees exactly the
    vectors an uninterrupted one saw, :meth:`plan` fixes the groups up front: each document is encoded with
    the other new documents of the micro-batch that first uses it, whenever it is first asked for.
    """

    def __init__(self, model: SpladeModel, docs: DocSource, batch_size: int = 32, enabled: bool = True):
        self.model = model
        self.lookup = docs if callable(docs) else (lambda ids: [docs[i] for i in ids])
        self.batch_size = batch_size
        self.enabled = enabled
        self.rows: Dict[str, sp.csr_matrix] = {}
        self.encoded = 0
        self.group_of: Dict[str, int] = {}
        self.groups: List[List[str]] = []

    def plan(self, batches: Iterable[Sequence[str]]) -> None:
        """Fix the encoding groups from the documents of every micro-batch of the run, in order of use."""
        for batch in batches:
            new = [d for d in dict.fromkeys(batch) if d not in self.group_of]
            if new:
                self.group_of.update((d, len(self.groups)) for d in new)
                self.groups.append(new)

    def _texts(self, docnos: List[str]) -> List[str]:
        try:
            texts = self.lookup(docnos)
        except KeyError as e:
            raise InputKeyError(f"no text for document {e.args[0]!r} of the teacher run: is the run from another "
                           "collection?") from e
        return list(texts)

    def matrix(self, docnos: Sequence[str]) -> sp.csr_matrix:
        """The (len(docnos), vocab) sparse vectors of ``docnos``."""
        if not self.enabled:
            self.encoded += len(docnos)
            return self.model.encode(self._texts(list(docnos)), self.batch_size)
        missing = list(dict.fromkeys(d for d in docnos if d not in self.rows))
        planned = dict.fromkeys(self.group_of[d] for d in missing if d in self.group_of)
        groups = [self.groups[g] for g in planned] + [[d for d in missing if d not in self.group_of]]
        for group in groups:
            if group:
                encoded = self.model.encode(self._texts(group), self.batch_size)
                self.encoded += len(group)
                for i, d in enumerate(group):
                    self.rows[d] = encoded[i]
        return sp.vstack([self.rows[d] for d in docnos]).tocsr()

    def dense(self, docnos: Sequence[str]) -> torch.Tensor:
        """A (len(docnos), vocab) float tensor on the model's device."""
        return torch.from_numpy(self.matrix(docnos).toarray()).to(self.model.device)
