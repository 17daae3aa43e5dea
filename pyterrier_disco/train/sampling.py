"""Training examples for DiSCo: one positive and ``n`` negatives per conversation turn, with teacher scores.

Matched against github SimonLupart/disco-conv-splade ``splade/hf/datasets.py`` (``L2I_Dataset``, data type
``json``) with the ranks of ``conf/disco_topiocqa_mistral_llama.yaml`` (``TOPK_mi: 10``, ``TOPK_ma: 950``),
and the follow-up github Janhutter/disco-conv-splade ``splade/hf/datasets.py`` (teacher-top positive).

What the reference does, and so what ``strategy="reference"`` does:

- the teacher run of a query, sorted by score (descending), is cut to positions ``[10, 10 + 950)``
  (0-based ranks 10..959); negatives are drawn uniformly *without* replacement from that window minus the
  qrels positives (relevance >= 1), or *with* replacement when at most ``n`` candidates remain (the
  reference tests ``len(candidates) <= n``, so exactly ``n`` candidates are also drawn with replacement);
- the positive is drawn uniformly from the qrels positives;
- the positive's teacher score is its score in the teacher run; when the teacher run does not contain it,
  the highest teacher score of the candidate window is used (reference: ``max(self.samples[query])``).
  (The reference looks the positive up in the *cut* window only, so a positive ranked above 10 also got the
  window's best score; here its own score in the full run is used.)
- conversations absent from the qrels are not trained on (the reference keeps only queries in the qrels).

**Soft positives** (``n_positives = P > 1``; the follow-up's "improved" setup, github
Janhutter/disco-conv-splade ``splade/hf/datasets.py`` ``L2I_Dataset.__getitem__`` lines 233-273 at d9e501d,
config ``conf/topiocqa/disco_topiocqa_mistral_improved.yaml``): each example has ``P`` positives: the qrels
positive drawn as above, then other qrels positives (drawn at random), then, when the qrels have fewer than
``P``, *soft positives*: the teacher's best-ranked non-qrels documents of the sampling pool (for ``reference``
the window, so teacher ranks 10, 11, ... as in the follow-up). Negatives are drawn from the pool without any
positive. Each positive keeps its own teacher score. Two bugs of the follow-up's code are fixed here, not
reproduced (the losses docstring gives the loss-side ones): its positives were shuffled, so the qrels positive
was not reliably the first (InfoNCE's positive); and every positive got the teacher score ``max(window)``
because the score lookup was indexed with a list and always fell into its ``except``. The default stays one
positive (DiSCo; no reported follow-up result uses more).

The reference draws new negatives every time an example is read (each epoch); call :func:`build_examples`
once per epoch with a different ``seed`` (e.g. ``seed=(base_seed, epoch)``) to do the same.
"""
import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from pyterrier_disco.train.teacher import aggregate_teachers

STRATEGIES = ("reference", "top", "uniform")
REFERENCE_RANKS = (10, 960)
MISSING_POSITIVE = ("skip", "teacher_top")


@dataclass(frozen=True)
class TrainingExample:
    """One training example: a conversation turn, its positive(s), its negatives and their teacher scores.

    ``teacher_scores`` is aligned with :attr:`docnos` (``positive``, then ``extra_positives``, then
    ``negatives``). ``pseudo_positive`` is True when the positive is the teacher's top document rather than a
    qrels positive. ``extra_positives``: with ``n_positives > 1``, other qrels positives and soft positives.
    """
    qid: str
    positive: str
    negatives: Tuple[str, ...]
    teacher_scores: np.ndarray
    pseudo_positive: bool = False
    extra_positives: Tuple[str, ...] = ()

    @property
    def docnos(self) -> Tuple[str, ...]:
        return (self.positive,) + tuple(self.extra_positives) + tuple(self.negatives)

    @property
    def n_positives(self) -> int:
        return 1 + len(self.extra_positives)


def _positives(qrels: Optional[pd.DataFrame]) -> Optional[Dict[str, List[str]]]:
    if qrels is None:
        return None
    missing = [c for c in ("qid", "docno", "label") if c not in qrels.columns]
    if missing:
        raise ValueError(f"qrels lack column(s) {', '.join(missing)} (expected qid, docno, label)")
    pos = qrels[qrels["label"].astype(float) >= 1]
    out: Dict[str, List[str]] = {}
    for qid, docno in zip(pos["qid"].astype(str), pos["docno"].astype(str)):
        lst = out.setdefault(qid, [])
        if docno not in lst:
            lst.append(docno)
    return out


def _unjudged_datasets(conversations: pd.DataFrame, positives: Optional[Dict[str, List[str]]]) -> set:
    """The qids of the pooled datasets that have no turn in the qrels (warned: they train on teacher tops)."""
    if positives is None or "dataset" not in conversations.columns:
        return set()
    qids = conversations["qid"].astype(str)
    judged = qids.isin(positives.keys()).groupby(conversations["dataset"].astype(str), sort=False).any()
    names = list(judged.index[~judged])
    if not names or len(judged) < 2:
        return set()
    warnings.warn(f"{', '.join(names)}: no turn in the qrels (none judged in this corpus); their positives are "
                  "the teacher's top documents, as for a dataset without qrels")
    return set(qids[conversations["dataset"].astype(str).isin(names)])


def _ranked_run(teacher_run: pd.DataFrame, aggregate: str) -> pd.DataFrame:
    if "teacher" in teacher_run.columns:
        return aggregate_teachers(teacher_run, aggregate)
    missing = [c for c in ("qid", "docno", "score") if c not in teacher_run.columns]
    if missing:
        raise ValueError(f"teacher run lacks column(s) {', '.join(missing)}")
    run = teacher_run[["qid", "docno", "score"]].astype({"qid": str, "docno": str})
    return run.sort_values(["qid", "score", "docno"], ascending=[True, False, True], kind="stable")


def _with_replacement(n_candidates: int, n: int, strategy: str) -> bool:
    """Whether ``strategy`` draws ``n`` negatives from ``n_candidates`` with replacement: ``top`` when fewer
    than ``n`` remain; ``reference`` and ``uniform`` when *at most* ``n`` remain (the reference tests
    ``len(candidates) <= n``, so exactly ``n`` candidates are drawn with replacement too)."""
    return n_candidates < n if strategy == "top" else n_candidates <= n


def _draw(candidates: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform draw of ``n``: without replacement, or with replacement when ``len <= n`` (as the reference)."""
    return rng.choice(candidates, size=n, replace=_with_replacement(len(candidates), n, "reference"))


def _top(candidates: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """The ``n`` best-ranked candidates; when fewer, all of them plus draws with replacement among them."""
    if not _with_replacement(len(candidates), n, "top"):
        return candidates[:n]
    return np.concatenate([candidates, rng.choice(candidates, size=n - len(candidates), replace=True)])


def build_examples(conversations: pd.DataFrame, teacher_run: pd.DataFrame, qrels: Optional[pd.DataFrame] = None,
                   n_negatives: int = 8, strategy: str = "reference", seed=0,
                   ranks: Sequence[int] = REFERENCE_RANKS, missing_positive: str = "skip",
                   aggregate: str = "mean", n_positives: int = 1) -> List[TrainingExample]:
    """Build one :class:`TrainingExample` per conversation turn (in the conversations' order).

    Args:
        conversations: the conversation frame (``qid`` is used); turns without a teacher run are skipped.
        teacher_run: ``qid, docno, score`` (one teacher) or ``qid, docno, score, teacher`` (several, combined
            with :func:`~pyterrier_disco.train.teacher.aggregate_teachers` using ``aggregate``).
        qrels: ``qid, docno, label``; positives are ``label >= 1``. ``None`` when the dataset has no qrels:
            the teacher's top document is then the (pseudo-)positive of every turn.
        n_negatives: negatives per example (the papers use 8, 16, 32, 70).
        strategy: ``reference`` (uniform from 0-based ranks ``ranks[0] <= r < ranks[1]``, default 10..959),
            ``top`` (the best-ranked non-positive documents), ``uniform`` (uniform over the whole run).
        seed: seed (or seed sequence) of the ``numpy.random.Generator``; same inputs and seed, same examples.
        missing_positive: for a turn with no qrels positive when qrels are given: ``skip`` (DiSCo release:
            only queries in the qrels are trained; a warning gives the count) or ``teacher_top`` (the
            follow-up: the teacher's top document becomes the positive).
        n_positives: positives per example (default 1); more adds other qrels positives and soft positives
            (see the module docstring); a turn whose pool cannot supply them is skipped (warned).

    Pooled datasets (a ``dataset`` column): a dataset none of whose turns is in the qrels is treated as a
    dataset without qrels, whatever ``missing_positive`` says: each of its turns takes the teacher's top
    document (warned), e.g. CAsT 2019 trained on a teacher run over other collections' passages.

    Too few candidates: with ``reference`` and ``uniform``, when *at most* ``n_negatives`` non-positive
    documents are in the strategy's pool (exactly ``n_negatives`` included, as the reference's
    ``len(candidates) <= n``), the negatives are drawn uniformly with replacement; with ``top``, when fewer
    than ``n_negatives``, all candidates are used and the rest drawn with replacement among them. One
    warning gives the number of such turns; a turn with no candidate at all is skipped (warned).

    Raises:
        ValueError: the teacher run has qids that are not in the conversations (a few are listed), or an
            unknown strategy / missing_positive, or ``n_negatives < 1``.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown sampling strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if missing_positive not in MISSING_POSITIVE:
        raise ValueError(f"missing_positive must be one of {', '.join(MISSING_POSITIVE)}, got {missing_positive!r}")
    if n_negatives < 1:
        raise ValueError(f"n_negatives must be >= 1, got {n_negatives}")
    if n_positives < 1:
        raise ValueError(f"n_positives must be >= 1, got {n_positives}")
    lo, hi = int(ranks[0]), int(ranks[1])
    if not 0 <= lo < hi:
        raise ValueError(f"ranks must satisfy 0 <= start < end, got {tuple(ranks)}")
    if "qid" not in conversations.columns:
        raise ValueError("conversations lack the qid column")

    conv_qids = list(dict.fromkeys(conversations["qid"].astype(str)))
    run = _ranked_run(teacher_run, aggregate)
    unknown = sorted(set(run["qid"]) - set(conv_qids))
    if unknown:
        raise ValueError(f"the teacher run has {len(unknown)} qid(s) that are not in the conversations, e.g. "
                         f"{', '.join(map(repr, unknown[:5]))}; was it built for another dataset or split?")
    positives = _positives(qrels)
    unjudged = _unjudged_datasets(conversations, positives)
    groups = {qid: (g["docno"].to_numpy(), g["score"].to_numpy(dtype=np.float64))
              for qid, g in run.groupby("qid", sort=False)}

    rng = np.random.default_rng(seed)
    examples: List[TrainingExample] = []
    no_run = no_positive = no_candidate = too_few = few_positives = 0
    for qid in conv_qids:
        if qid not in groups:
            no_run += 1
            continue
        docnos, scores = groups[qid]
        pseudo = False
        if positives is None or qid in unjudged:
            pos_list, pseudo = [docnos[0]], True
        elif positives.get(qid):
            pos_list = positives[qid]
        elif missing_positive == "teacher_top":
            pos_list, pseudo = [docnos[0]], True
        else:
            no_positive += 1
            continue
        window = slice(lo, hi) if strategy == "reference" else slice(None)
        pool_docnos, pool_scores = docnos[window], scores[window]
        candidates = pool_docnos[~np.isin(pool_docnos, pos_list)]
        soft = candidates[:max(0, n_positives - len(pos_list))]  # best-ranked first
        if len(pos_list) + len(soft) < n_positives:
            few_positives += 1
            continue
        candidates = candidates[len(soft):]
        if len(candidates) == 0:
            no_candidate += 1
            continue
        if _with_replacement(len(candidates), n_negatives, strategy):
            too_few += 1
        i = int(rng.integers(len(pos_list)))
        positive, others = pos_list[i], pos_list[:i] + pos_list[i + 1:]
        extra = []
        if n_positives > 1:
            take = min(len(others), n_positives - 1)
            extra = [others[j] for j in rng.permutation(len(others))[:take]] + list(soft)
        negatives = _top(candidates, n_negatives, rng) if strategy == "top" else _draw(candidates, n_negatives, rng)
        score_of = dict(zip(docnos, scores))
        positive_scores = [score_of.get(d, pool_scores.max()) for d in [positive, *extra]]
        teacher_scores = np.array(positive_scores + [score_of[d] for d in negatives], dtype=np.float32)
        examples.append(TrainingExample(qid, str(positive), tuple(map(str, negatives)), teacher_scores, pseudo,
                                        tuple(map(str, extra))))

    if no_run:
        warnings.warn(f"{no_run} conversation turn(s) have no teacher run and were skipped")
    if no_positive:
        warnings.warn(f"{no_positive} conversation turn(s) have no positive in the qrels and were skipped "
                      f"(missing_positive='skip', as the DiSCo release; 'teacher_top' uses the teacher's top "
                      f"document instead)")
    if few_positives:
        warnings.warn(f"{few_positives} conversation turn(s) have fewer than {n_positives} positives (qrels and "
                      f"soft) in the pool of strategy {strategy!r} and were skipped")
    if no_candidate:
        warnings.warn(f"{no_candidate} conversation turn(s) have no negative candidate for strategy "
                      f"{strategy!r} and were skipped")
    if too_few:
        bound = "fewer than" if strategy == "top" else "at most"
        warnings.warn(f"{too_few} conversation turn(s) have {bound} {n_negatives} negative candidates for "
                      f"strategy {strategy!r}; their negatives were drawn with replacement")
    return examples
