"""Synthetic SPLADE-like collections from the statistics of real SPLADE-tiny vectors; real encoded queries.

Statistics come from the embedded SPLADE-tiny encoding of real passages: the 194 iKAT 2023 train passages
(``../shared/data``, skipped when absent) and the 440 passages of the packaged disco-mini collection. From them:

- document lengths: the empirical distribution of non-zeros per passage;
- term document frequencies over the whole vocabulary, smoothed with ``DF_PSEUDO_COUNT`` so that terms unseen
  in the sample can still occur;
- weights: the empirical weight distribution of each document-frequency band of terms (frequent terms get
  lower weights in SPLADE, so one global distribution would be wrong).

A second generator, :func:`generate_topical`, gives the collection topical structure: each document mixes
the terms of two real passage vectors (its topics) with background terms drawn as above, so documents on one
topic share terms and weights, as real ones do; the independent generator flatters nothing there.

Queries are real, not synthetic: the SPLADE-tiny vectors of the iKAT 2023 train human rewrites
(``resolved_utterance``, "short") and of the conversation contexts ``q_n [SEP] a_{n-1} [SEP] q_{n-1} ... q_1``
(``ConversationFormatter``, cut at 256 tokens, "long").

The encoded statistics and queries are cached as a ``.npz`` (no pickle) in ``cache_dir()``, keyed by a hash of
the input texts, the model files and ``CACHE_VERSION``; later runs do not load the model.
"""
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

import numba
import numpy as np
import scipy.sparse as sp

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "ikat" / "2023"
CACHE_VERSION = 2  # 2: the real passage vectors are kept too (topical collections)
DF_PSEUDO_COUNT = 0.1  # documents (out of the sample) credited to every term, seen or not
DF_BAND_EDGES = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256])  # band b: df in [edge[b-1], edge[b]); band 0: df < 1


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def cache_dir() -> Path:
    folder = Path(os.environ.get("DISCO_BENCH_CACHE", Path(tempfile.gettempdir()) / "pyterrier_disco_bench"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# -- real inputs ---------------------------------------------------------------------------------------

def real_passages() -> Tuple[List[str], str]:
    from pyterrier_disco.index import dataset_docs

    texts, sources = [], []
    if (SHARED / "2023_train_topics_psg_text.jsonl").exists():
        texts += [json.loads(line)["passage_text"] for line in open(SHARED / "2023_train_topics_psg_text.jsonl")]
        sources.append("ikat/2023 train passages")
    texts += [d["text"] for d in dataset_docs("disco-mini/train")]
    sources.append("disco-mini/train")
    return texts, " + ".join(sources)


def real_conversations() -> List[dict]:
    """Every iKAT 2023 train turn: ``{"rewrite", "query", "history"}`` (history in the frames' format)."""
    if not (SHARED / "2023_train_topics.json").exists():
        raise FileNotFoundError(f"the iKAT 2023 train topics are missing from {SHARED}; they give the real queries")
    turns = []
    for topic in json.load(open(SHARED / "2023_train_topics.json")):
        history = []
        for turn in topic["turns"]:
            turns.append({"rewrite": turn["resolved_utterance"], "query": turn["utterance"], "history": list(history)})
            history += [{"role": "user", "text": turn["utterance"]}, {"role": "system", "text": turn["response"]}]
    return turns


def _cache_key(texts: List[str]) -> str:
    from pyterrier_disco import embedded_model_path

    h = hashlib.sha1(f"v{CACHE_VERSION}".encode())
    for t in texts:
        h.update(t.encode() + b"\0")
    for f in sorted(embedded_model_path().rglob("*")):
        if f.is_file():
            h.update(f"{f.name}:{f.stat().st_size}".encode())
    return h.hexdigest()[:16]


# -- statistics ----------------------------------------------------------------------------------------

def load_statistics() -> Dict[str, np.ndarray]:
    """Real statistics and encoded queries (cached); see :func:`_derive` for the keys."""
    passages, source = real_passages()
    turns = real_conversations()
    key = _cache_key(passages + [json.dumps(t, sort_keys=True) for t in turns])
    file = cache_dir() / f"splade_tiny_stats_{key}.npz"
    if file.exists():
        with np.load(file, allow_pickle=False) as z:
            return dict(z)
    log(f"encoding {len(passages)} passages and {2 * len(turns)} queries with SPLADE-tiny (cached in {file})")
    stats = _derive(passages, turns)
    stats["source"] = np.array(source)
    np.savez(file.with_suffix(".tmp.npz"), **stats)
    os.replace(file.with_suffix(".tmp.npz"), file)
    return stats


def _derive(passages: List[str], turns: List[dict]) -> Dict[str, np.ndarray]:
    from pyterrier_disco import ConversationFormatter, SpladeModel

    model = SpladeModel()
    docs = model.encode(passages, batch_size=32)
    docs = docs[np.diff(docs.indptr) > 0]
    contexts = ConversationFormatter(max_length=256).format_frame(
        _frame(turns), tokenizer=model.tokenizer)
    short = model.encode([t["rewrite"] for t in turns], batch_size=32)
    long = model.encode(contexts, batch_size=32)
    df = np.bincount(docs.indices, minlength=docs.shape[1])
    bands = np.searchsorted(DF_BAND_EDGES, df, side="right")  # 0: unseen, then one band per doubling
    posting_band = bands[docs.indices]
    order = np.lexsort((docs.data, posting_band))
    band_ptr = np.searchsorted(posting_band[order], np.arange(len(DF_BAND_EDGES) + 2))
    out = {"vocab": np.array(model.vocab), "n_sample_docs": np.array(docs.shape[0]),
           "doc_lengths": np.diff(docs.indptr).astype(np.int64), "df": df.astype(np.int64),
           "term_band": bands.astype(np.int64), "band_ptr": band_ptr.astype(np.int64),
           "band_weights": docs.data[order].astype(np.float32)}
    for name, m in (("short", short), ("long", long), ("passage", docs)):
        out.update({f"{name}_indptr": m.indptr.astype(np.int64), f"{name}_indices": m.indices.astype(np.int64),
                    f"{name}_data": m.data.astype(np.float32)})
    return out


def _frame(turns: List[dict]):
    import pandas as pd

    return pd.DataFrame({"query": [t["query"] for t in turns], "history": [t["history"] for t in turns]})


def term_probabilities(stats: Dict[str, np.ndarray]) -> np.ndarray:
    """Per-draw probabilities such that drawing distinct terms reproduces each term's document frequency.

    A term with inclusion probability ``pi`` (smoothed df / sample size) is missed by ``D`` independent draws
    with probability ``(1 - p)^D ~ exp(-p D)``; ``p`` proportional to ``-log(1 - pi)`` makes that ``1 - pi`` for
    every term at once (plain ``p ~ df`` would under-represent the most frequent terms).
    """
    pi = (stats["df"] + DF_PSEUDO_COUNT) / (stats["n_sample_docs"] + 1.0)
    p = -np.log1p(-np.minimum(pi, 0.99))
    return p / p.sum()


def queries(stats: Dict[str, np.ndarray], kind: str) -> List[Tuple[np.ndarray, np.ndarray]]:
    """The real encoded queries of one kind ("short" or "long") as (term ids int64, weights float32)."""
    indptr, indices, data = (stats[f"{kind}_{k}"] for k in ("indptr", "indices", "data"))
    return [(indices[lo:hi].copy(), data[lo:hi].copy()) for lo, hi in zip(indptr[:-1], indptr[1:])]


# -- generation ----------------------------------------------------------------------------------------

def _alias_table(p: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Vose's alias method: a draw is ``i = randint(n)``, then ``i`` if ``rand() < prob[i]`` else ``alias[i]``."""
    n = len(p)
    scaled = p * n
    prob, alias = np.ones(n), np.arange(n)
    small = [i for i in range(n) if scaled[i] < 1.0]
    large = [i for i in range(n) if scaled[i] >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        prob[s], alias[s] = scaled[s], g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    return prob, alias.astype(np.int64)


@numba.njit(cache=True)
def _new_term(prob, alias, last_doc, d):
    """An alias draw of a term document ``d`` does not hold yet (``last_doc[t] == d`` marks those it holds)."""
    while True:
        t = np.random.randint(0, len(prob))
        if np.random.random() >= prob[t]:
            t = alias[t]
        if last_doc[t] != d:
            last_doc[t] = d
            return t


@numba.njit(parallel=True, cache=True)
def _fill_documents(indptr, prob, alias, term_band, band_ptr, band_weights, seed, n_chunks, indices, data):
    """Distinct terms (alias draws, rejecting repeats) and band-empirical weights for every document."""
    n_docs, n_terms = len(indptr) - 1, len(prob)
    for c in numba.prange(n_chunks):
        np.random.seed(seed * 1_000_003 + c)  # per chunk: the same output whatever thread runs it
        last_doc = np.full(n_terms, -1, np.int64)
        for d in range(c * n_docs // n_chunks, (c + 1) * n_docs // n_chunks):
            lo, hi = indptr[d], indptr[d + 1]
            p = lo
            while p < hi:
                indices[p] = _new_term(prob, alias, last_doc, d)
                p += 1
            indices[lo:hi].sort()
            for p in range(lo, hi):
                b = term_band[indices[p]]
                b_lo, b_hi = band_ptr[b], band_ptr[b + 1]
                data[p] = band_weights[b_lo + np.random.randint(0, b_hi - b_lo)]


def generate(stats: Dict[str, np.ndarray], n_docs: int, seed: int = 0) -> sp.csr_matrix:
    """``n_docs`` synthetic SPLADE-tiny-like documents as a (n_docs x vocabulary) float32 CSR matrix."""
    rng = np.random.default_rng(seed)
    n_terms = len(stats["vocab"])
    lengths = np.minimum(rng.choice(stats["doc_lengths"], size=n_docs), n_terms)
    indptr = np.zeros(n_docs + 1, np.int64)
    np.cumsum(lengths, out=indptr[1:])
    prob, alias = _alias_table(term_probabilities(stats))
    band_weights, band_ptr, term_band = _band_tables(stats)
    indices = np.empty(indptr[-1], np.int32)
    data = np.empty(indptr[-1], np.float32)
    n_chunks = max(1, min(256, n_docs // 1000))
    _fill_documents(indptr, prob, alias, term_band, band_ptr, band_weights, seed, n_chunks, indices, data)
    return sp.csr_matrix((data, indices, indptr), shape=(n_docs, n_terms))


def _band_tables(stats):
    """Weights per df band; a band without postings (band 0: unseen terms) borrows the rarest seen band's."""
    band_ptr, term_band = stats["band_ptr"], stats["term_band"].copy()
    sizes = np.diff(band_ptr)
    nonempty = np.flatnonzero(sizes)
    for b in np.flatnonzero(sizes == 0):
        term_band[term_band == b] = nonempty[np.argmin(np.abs(nonempty - b))]
    return stats["band_weights"], band_ptr, term_band


def describe(stats: Dict[str, np.ndarray], docs: sp.csr_matrix) -> dict:
    """How the synthetic collection compares with the real sample it imitates."""
    real_df = stats["df"] / stats["n_sample_docs"]
    syn_df = np.bincount(docs.indices, minlength=docs.shape[1]) / docs.shape[0]
    top = np.argsort(-real_df)[:100]
    return {"docs": int(docs.shape[0]), "postings": int(docs.nnz),
            "mean_terms_per_doc": round(docs.nnz / docs.shape[0], 1),
            "real_mean_terms_per_doc": round(float(stats["doc_lengths"].mean()), 1),
            "real_sample_docs": int(stats["n_sample_docs"]), "real_sample": str(stats["source"]),
            "terms_with_postings": int((syn_df > 0).sum()), "real_terms_seen": int((real_df > 0).sum()),
            "top100_terms_df_real_vs_synthetic": [round(float(real_df[top].mean()), 3),
                                                  round(float(syn_df[top].mean()), 3)],
            "mean_weight_real_vs_synthetic": [round(float(stats["band_weights"].mean()), 3),
                                              round(float(docs.data.mean()), 3)]}


@numba.njit(parallel=True, cache=True)
def _fill_topical(indptr, r_ptr, r_idx, r_w, seeds, prob, alias, term_band, band_ptr, band_weights, keep, sigma,
                  seed, n_chunks, indices, data):
    """Each document: a random ``keep[i]`` share of the terms of its seed passages ``seeds[d, i]`` (weights
    jittered by a log-normal factor), then background terms as in ``_fill_documents`` up to its length."""
    n_docs, n_terms = len(indptr) - 1, len(prob)
    for c in numba.prange(n_chunks):
        np.random.seed(seed * 1_000_003 + c)
        last_doc = np.full(n_terms, -1, np.int64)
        for d in range(c * n_docs // n_chunks, (c + 1) * n_docs // n_chunks):
            lo, hi = indptr[d], indptr[d + 1]
            p = lo
            for i in range(seeds.shape[1]):
                s = seeds[d, i]
                for j in range(r_ptr[s], r_ptr[s + 1]):
                    if p < hi and last_doc[r_idx[j]] != d and np.random.random() < keep[i]:
                        last_doc[r_idx[j]] = d
                        indices[p] = r_idx[j]
                        data[p] = r_w[j] * np.exp(sigma * np.random.standard_normal())
                        p += 1
            while p < hi:
                t = indices[p] = _new_term(prob, alias, last_doc, d)
                data[p] = band_weights[band_ptr[term_band[t]] + np.random.randint(
                    0, band_ptr[term_band[t] + 1] - band_ptr[term_band[t]])]
                p += 1
            order = np.argsort(indices[lo:hi])
            indices[lo:hi] = indices[lo:hi][order]
            data[lo:hi] = data[lo:hi][order]


TOPICAL_KEEP = (0.5, 0.25)  # share of the terms kept from a document's first and second seed passage
TOPICAL_SIGMA = 0.3  # log-normal jitter of a kept weight


def generate_topical(stats: Dict[str, np.ndarray], n_docs: int, seed: int = 0) -> sp.csr_matrix:
    """``n_docs`` documents with topical structure (see the module docstring), in random order (as a real
    collection's ids are), as a (n_docs x vocabulary) float32 CSR matrix."""
    rng = np.random.default_rng(seed + 1)
    n_terms = len(stats["vocab"])
    lengths = np.minimum(rng.choice(stats["doc_lengths"], size=n_docs), n_terms)
    indptr = np.zeros(n_docs + 1, np.int64)
    np.cumsum(lengths, out=indptr[1:])
    n_passages = len(stats["passage_indptr"]) - 1
    seeds = rng.integers(0, n_passages, size=(n_docs, len(TOPICAL_KEEP)))
    prob, alias = _alias_table(term_probabilities(stats))
    band_weights, band_ptr, term_band = _band_tables(stats)
    indices = np.empty(indptr[-1], np.int32)
    data = np.empty(indptr[-1], np.float32)
    _fill_topical(indptr, stats["passage_indptr"], stats["passage_indices"], stats["passage_data"], seeds, prob,
                  alias, term_band, band_ptr, band_weights, np.array(TOPICAL_KEEP), TOPICAL_SIGMA, seed,
                  max(1, min(256, n_docs // 1000)), indices, data)
    return sp.csr_matrix((data, indices, indptr), shape=(n_docs, n_terms))
