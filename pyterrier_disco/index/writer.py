"""Writing a :class:`~pyterrier_disco.index.SparseIndex`: the streaming indexer and ``index_from_csr``."""
import json
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional

import numba
import numpy as np
import pyterrier as pt

from .._checksums import manifest
from .._errors import InputKeyError, InputTypeError
from .._folders import MARKER, atomic_dir
from ._pruning import block_maxima
from ._scoring import BLOCK_DOCS, BLOCK_SHIFT, local_postings
from .artifact import ARTIFACT_FORMAT, ARTIFACT_TYPE, SparseIndex, is_index_folder


class SparseIndexer(pt.Indexer):
    """Builds a :class:`SparseIndex` from an iterable of ``{"docno", "toks"}`` records, streaming.

    Postings are spilled to disk in chunks as documents arrive, then counting-sorted by term straight into
    memory-mapped output files, so memory stays at one chunk plus the lexicon whatever the collection size.
    ``info``: provenance recorded in ``pt_meta.json`` (``dataset``, ``doc_model``).
    """

    CHUNK_POSTINGS = 1_000_000

    def __init__(self, index: SparseIndex, *, vocab: Optional[str] = None, overwrite: bool = False,
                 quantized: bool = False, verbose: bool = True, info: Optional[Mapping] = None):
        self._index = index
        self.vocab = vocab
        self.quantized = quantized
        self.info = dict(info or {})
        self.overwrite = overwrite
        self.verbose = verbose

    def index_inputs(self):
        return [["docno", "toks"]]

    def index(self, it: Iterable[dict]) -> SparseIndex:
        lexicon: Dict[str, int] = {}
        docnos: List[str] = []
        with atomic_dir(self._index.path, self.overwrite, kind=ARTIFACT_TYPE, ours=is_index_folder) as tmp:
            chunks: List[Path] = []
            terms, docs, weights = [], [], []
            for record in pt.tqdm(it, desc="indexing", unit="doc", disable=not self.verbose):
                if "docno" not in record or "toks" not in record:
                    raise InputKeyError(f"indexing needs 'docno' and 'toks' fields; got {sorted(record)}")
                toks = record["toks"]
                if not isinstance(toks, dict):
                    raise InputTypeError(f"'toks' of document {record['docno']!r} must be a dict term -> weight, "
                                         f"got {type(toks).__name__}")
                doc_id = len(docnos)
                docnos.append(str(record["docno"]))
                positive = [(t, w) for t, w in toks.items() if w > 0]
                if len(positive) < len(toks):
                    _check_weights(toks, record["docno"])
                terms.extend(lexicon.setdefault(t, len(lexicon)) for t, _ in positive)
                weights.extend(w for _, w in positive)
                docs.extend([doc_id] * len(positive))
                if len(terms) >= self.CHUNK_POSTINGS:
                    chunks.append(_spill(tmp, len(chunks), terms, docs, weights))
                    terms, docs, weights = [], [], []
            if not docnos:
                raise ValueError("cannot build an index from zero documents")
            chunks.append(_spill(tmp, len(chunks), terms, docs, weights))
            _write_postings(tmp, chunks, len(lexicon), len(docnos))
            _write_block_max(tmp, self.quantized)
            _write_tables(tmp, docnos, list(lexicon), self.vocab, self.info, self.quantized)
        self._index._data = None
        return self._index


def _check_weights(toks: dict, docno) -> None:
    bad = {t: w for t, w in toks.items() if not w >= 0}  # NaN fails every comparison
    if bad:
        raise ValueError(f"document {docno!r} has negative or NaN weights: {dict(list(bad.items())[:5])}")


def _spill(folder: Path, n: int, terms, docs, weights) -> Path:
    chunk = folder / f".chunk-{n}.npz"
    weights = np.asarray(weights, np.float32)
    if not np.isfinite(weights).all():
        raise ValueError("a document has an infinite (or float32-overflowing) term weight")
    np.savez(chunk, terms=np.asarray(terms, np.int32), docs=np.asarray(docs, np.int32), weights=weights)
    return chunk


def _write_postings(folder: Path, chunks: List[Path], n_terms: int, n_docs: int) -> None:
    """Counting sort of the spilled (term, doc, weight) chunks into term-major memory-mapped arrays, with the
    block table."""
    counts = np.zeros(n_terms, dtype=np.int64)
    for chunk in chunks:
        with np.load(chunk) as c:
            counts += np.bincount(c["terms"], minlength=n_terms)
    offsets = np.zeros(n_terms + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    np.save(folder / "offsets.npy", offsets)
    doc_ids = np.lib.format.open_memmap(folder / "doc_ids.npy", "w+", np.uint16, (int(offsets[-1]),))
    weights = np.lib.format.open_memmap(folder / "weights.npy", "w+", np.float32, (int(offsets[-1]),))
    blocks = np.empty((n_terms, max(1, -(-n_docs // BLOCK_DOCS)) + 1), np.int64)
    blocks[:, 0] = offsets[:-1]
    next_block = np.ones(n_terms, np.int64)  # the first block whose start is not yet in the table, per term
    cursor = offsets[:-1].copy()
    for chunk in chunks:  # chunks arrive in document order, so each posting list ends up ascending
        with np.load(chunk) as c:
            _scatter_postings(c["terms"], c["docs"], c["weights"], cursor, next_block, blocks, doc_ids, weights)
        chunk.unlink()
    for t in range(n_terms):
        blocks[t, next_block[t]:] = offsets[t + 1]
    np.save(folder / "blocks.npy", blocks)
    doc_ids.flush()
    weights.flush()
    del doc_ids, weights


@numba.njit(cache=True, nogil=True)
def _scatter_postings(terms, docs, weights, cursor, next_block, blocks, out_docs, out_weights):
    for i in range(len(terms)):
        t, d = terms[i], docs[i]
        p = cursor[t]
        while next_block[t] <= d >> BLOCK_SHIFT:  # the term's first posting in a later block
            blocks[t, next_block[t]] = p
            next_block[t] += 1
        out_docs[p] = d & (BLOCK_DOCS - 1)
        out_weights[p] = weights[i]
        cursor[t] = p + 1


def _write_block_max(folder: Path, quantized: bool) -> None:
    """``block_max.npy`` from the written postings; first, for a quantised index, the float32 weights become
    uint8 codes (``max(1, round(w / step))``, ``step`` = the term's largest weight / 255) and ``scales.npy``."""
    blocks = np.load(folder / "blocks.npy", mmap_mode="r")
    weights = np.load(folder / "weights.npy", mmap_mode="r")
    block_max = block_maxima(np.ascontiguousarray(blocks), weights)
    if quantized:
        scales = (block_max.max(axis=1, initial=0) / 255).astype(np.float32)
        codes = np.lib.format.open_memmap(folder / "weights.u8.npy", "w+", np.uint8, weights.shape)
        _quantise(np.load(folder / "offsets.npy"), weights, scales, codes)
        codes.flush()
        del codes, weights
        (folder / "weights.u8.npy").replace(folder / "weights.npy")
        np.save(folder / "scales.npy", scales)
        block_max = block_maxima(np.ascontiguousarray(blocks), np.load(folder / "weights.npy", mmap_mode="r"))
    np.save(folder / "block_max.npy", block_max)


@numba.njit(cache=True, nogil=True)
def _quantise(offsets, weights, scales, codes):
    for t in range(len(offsets) - 1):
        for p in range(offsets[t], offsets[t + 1]):
            codes[p] = min(255, max(1, round(weights[p] / scales[t])))


def _write_tables(folder: Path, docnos: List[str], lexicon: List[str], vocab: Optional[str],
                  info: Optional[Mapping] = None, quantized: bool = False) -> None:
    """The docnos, the lexicon and, last, ``pt_meta.json`` with the checksums of every other file."""
    offsets = np.load(folder / "offsets.npy", mmap_mode="r")
    np.save(folder / "docnos.npy", np.asarray(docnos, dtype=str))
    (folder / "lexicon.json").write_text(json.dumps(lexicon))
    files = manifest(folder, [p.name for p in folder.iterdir() if p.name != MARKER])
    meta = {**(info or {}), "type": ARTIFACT_TYPE, "format": ARTIFACT_FORMAT, "package_hint": "pyterrier-disco",
            "num_docs": len(docnos), "num_terms": len(lexicon), "num_postings": int(offsets[-1]), "vocab": vocab,
            "block_docs": BLOCK_DOCS, "quantized": quantized, "files": files}
    (folder / "pt_meta.json").write_text(json.dumps(meta, indent=2))


def index_from_csr(path, matrix, docnos: List[str], terms: List[str], *, vocab: Optional[str] = None,
                   overwrite: bool = False, quantized: bool = False) -> SparseIndex:
    """Build a :class:`SparseIndex` directly from a (documents x terms) scipy matrix of non-negative weights
    (``quantized``: with 8-bit weights)."""
    import scipy.sparse as sp

    matrix = sp.csc_matrix(matrix, dtype=np.float32)
    matrix.eliminate_zeros()
    matrix.sort_indices()
    if matrix.shape != (len(docnos), len(terms)):
        raise ValueError(f"matrix shape {matrix.shape} does not match {len(docnos)} docnos x {len(terms)} terms")
    if matrix.nnz and matrix.data.min() < 0:
        raise ValueError("sparse index weights must be non-negative")
    if matrix.nnz and not np.isfinite(matrix.data).all():
        raise ValueError("sparse index weights must be finite")
    with atomic_dir(path, overwrite, kind=ARTIFACT_TYPE, ours=is_index_folder) as tmp:
        offsets = matrix.indptr.astype(np.int64)
        blocks, local_ids = local_postings(offsets, matrix.indices.astype(np.int32), len(docnos))
        np.save(tmp / "offsets.npy", offsets)
        np.save(tmp / "blocks.npy", blocks)
        np.save(tmp / "doc_ids.npy", local_ids)
        np.save(tmp / "weights.npy", matrix.data)
        _write_block_max(tmp, quantized)
        _write_tables(tmp, [str(d) for d in docnos], list(terms), vocab, quantized=quantized)
    return SparseIndex(path)
