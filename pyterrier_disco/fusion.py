"""Score and rank fusion of several pipelines' results (DiSCo's multi-teacher / multi-run fusion).

The DiSCo paper fuses runs with the *average of min-max normalised scores*. In ranx terms that is
``ranx.fuse(runs, norm="min-max", method="wsum", params={"weights": [1/n] * n})``: each run's scores are
min-max normalised per query (``(s - min) / max(max - min, 1e-9)``, so a query with a single result gets 0),
a document missing from a run contributes 0, and the weighted sum with equal weights ``1/n`` is the mean.

The three built-in methods (``mean-minmax``, ``rrf``, ``wsum``) have a pandas implementation (the default
``backend="pandas"``) that gives the same numbers as ranx without ranx's numba compilation (about 30 s on
the first call in a fresh process with an empty numba cache). Pass ``backend="ranx"`` to compute them with
ranx, or any other ranx fusion method name (``"mnz"``, ``"max"``, ``"isr"``, ``"bordafuse"``, ...), which
always runs through ranx. Importing ranx switches numba's threading layer to ``workqueue`` process-wide,
so it is imported only when used.
"""
import warnings
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
import pyterrier as pt

NATIVE_METHODS = ("mean-minmax", "rrf", "wsum")
BACKENDS = ("pandas", "ranx")
_RESULT_COLUMNS = ["qid", "docno", "score", "rank"]
_MINMAX_EPS = 1e-9  # ranx's floor on (max - min): identical scores normalise to 0 rather than NaN


def _empty_results(template: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """No rows; the columns of ``template`` (with their dtypes) then ``docno, score, rank``."""
    frame = pd.DataFrame({"qid": pd.Series(dtype=str)}) if template is None else template.iloc[:0].copy()
    frame["docno"] = pd.Series(dtype=str)
    frame["score"] = pd.Series(dtype="float64")
    frame["rank"] = pd.Series(dtype="int64")
    return frame


def _check_results(res: pd.DataFrame, i: int) -> pd.DataFrame:
    """The ``qid, docno, score`` of one pipeline's results, ids as ``str`` and scores as float64."""
    if len(res) == 0:
        return pd.DataFrame({"qid": pd.Series(dtype=str), "docno": pd.Series(dtype=str),
                             "score": pd.Series(dtype="float64")})
    try:
        pt.validate.result_frame(res, extra_columns=["score"])
    except pt.validate.InputValidationError as err:
        raise ValueError(f"results of pipeline {i} are not a result frame: {err}") from err
    res = res[["qid", "docno", "score"]].astype({"qid": str, "docno": str, "score": "float64"})
    if res.duplicated(["qid", "docno"]).any():
        raise ValueError(f"results of pipeline {i} list the same (qid, docno) more than once")
    return res


def _check_options(n_runs: int, method: str, weights: Optional[Sequence[float]], backend: str) -> List[float]:
    if n_runs < 2:
        raise ValueError(f"fusion needs at least two result sets, got {n_runs}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if weights is not None and method != "wsum":
        raise ValueError(f"weights are only used by method='wsum', not {method!r}")
    if weights is None:
        return [1.0 / n_runs] * n_runs
    if len(weights) != n_runs:
        raise ValueError(f"{len(weights)} weights given for {n_runs} pipelines")
    return [float(w) for w in weights]


def _minmax(res: pd.DataFrame) -> pd.Series:
    by_qid = res.groupby("qid")["score"]
    low, high = by_qid.transform("min"), by_qid.transform("max")
    return (res["score"] - low) / np.maximum(high - low, _MINMAX_EPS)


def _fuse_pandas(runs: List[pd.DataFrame], method: str, weights: List[float], k: int) -> pd.DataFrame:
    parts = []
    for res, weight in zip(runs, weights):
        if len(res) == 0:
            continue
        if method == "rrf":
            rank1 = res.groupby("qid")["score"].rank(ascending=False, method="first")  # 1 = best
            contribution = 1.0 / (k + rank1)
        else:
            contribution = weight * _minmax(res)
        parts.append(res[["qid", "docno"]].assign(score=contribution.to_numpy()))
    if not parts:
        return pd.DataFrame({"qid": pd.Series(dtype=str), "docno": pd.Series(dtype=str),
                             "score": pd.Series(dtype="float64")})
    return pd.concat(parts, ignore_index=True).groupby(["qid", "docno"], as_index=False, sort=False)["score"].sum()


def _fuse_ranx(runs: List[pd.DataFrame], method: str, weights: List[float], k: int,
               norm: Optional[str], params: Optional[Dict]) -> pd.DataFrame:
    # imported here: importing ranx sets numba's threading layer process-wide
    import ranx
    from numba.core.errors import NumbaTypeSafetyWarning
    from ranx.data_structures.generic import create_empty_results_dict

    qids = sorted(set().union(*(set(r["qid"]) for r in runs)))
    ranx_runs = []
    for i, res in enumerate(runs):
        if len(res):  # ranx wants `object` ids (pandas 3 defaults to `str`)
            run = ranx.Run.from_df(res.astype({"qid": object, "docno": object}),
                                   q_id_col="qid", doc_id_col="docno", score_col="score", name=f"run{i}")
        else:
            run = ranx.Run(name=f"run{i}")
        for qid in qids:  # ranx.fuse requires every run to hold every query
            if qid not in run.run:
                run.run[qid] = create_empty_results_dict()
        run.sort()
        ranx_runs.append(run)
    if method == "mean-minmax":
        norm, method, params = "min-max", "wsum", {"weights": weights}
    elif method == "wsum":
        params = {"weights": weights}
    elif method == "rrf":
        norm, params = None, {"k": k}
    with warnings.catch_warnings():  # ranx's own uint64 -> int64 index cast; harmless
        warnings.simplefilter("ignore", NumbaTypeSafetyWarning)
        fused = ranx.fuse(ranx_runs, norm=norm, method=method, params=params or {}).to_dataframe()
    return fused.rename(columns={"q_id": "qid", "doc_id": "docno"}).astype(
        {"qid": str, "docno": str, "score": "float64"})


def fuse(*results: pd.DataFrame, method: str = "mean-minmax", weights: Optional[Sequence[float]] = None,
         k: int = 60, num_results: Optional[int] = 1000, backend: str = "pandas",
         norm: Optional[str] = "min-max", params: Optional[Dict] = None) -> pd.DataFrame:
    """Fuse two or more result frames into one with columns ``qid, docno, score, rank``.

    Args:
        results: result frames (``qid, docno, score``); a query may be missing from some of them.
        method: ``"mean-minmax"`` (mean of per-query min-max normalised scores, missing documents count 0),
            ``"rrf"`` (sum of ``1 / (k + rank)``, rank 1 for the best document of each run),
            ``"wsum"`` (``sum_i weights[i] * minmax_i``; equal weights ``1/n`` by default), or any other
            ranx fusion method name (computed by ranx, with ``norm`` and ``params`` passed to ``ranx.fuse``).
        weights: one weight per result frame, ``method="wsum"`` only.
        k: the RRF constant.
        num_results: how many fused documents to keep per query (``None``: all).
        backend: ``"pandas"`` or ``"ranx"`` for the built-in methods; other methods always use ranx.
        norm, params: ranx normalisation and method parameters for methods other than the built-in ones.

    Returns:
        The fused results sorted by ``qid`` then ``rank`` (0-based, PyTerrier's convention); ties in the
        fused score are ordered by decreasing ``docno``, as trec_eval and ir_measures do.
    """
    weights = _check_options(len(results), method, weights, backend)
    runs = [_check_results(res, i) for i, res in enumerate(results)]
    if all(len(r) == 0 for r in runs):
        return _empty_results()
    if method in NATIVE_METHODS and backend == "pandas":
        fused = _fuse_pandas(runs, method, weights, k)
    else:
        fused = _fuse_ranx(runs, method, weights, k, norm, params)
    # equal scores: docno descending, the order trec_eval / ir_measures evaluate them in
    fused = fused.sort_values(["qid", "score", "docno"], ascending=[True, False, False], ignore_index=True)
    fused["rank"] = fused.groupby("qid").cumcount().astype("int64")
    if num_results is not None:
        fused = fused[fused["rank"] < num_results].reset_index(drop=True)
    return fused[_RESULT_COLUMNS]


class Fusion(pt.Transformer):
    """Runs each pipeline on the input and fuses their results (see :func:`fuse` for the methods).

    The input is a query frame (or a result frame, when the pipelines re-rank); the output has the
    input's query columns (all columns of a query frame, e.g. ``query``, ``history``) plus
    ``docno, score, rank``, sorted by ``qid`` then ``rank``.

    Example::

        fused = Fusion(disco >> pisa, rewrite >> bm25, method="mean-minmax") >> pt.text.get_text(dataset)
    """
    schematic = {"inner_pipelines_mode": "combine", "label": "Fusion"}

    def __init__(self, *pipelines: pt.Transformer, method: str = "mean-minmax",
                 weights: Optional[Sequence[float]] = None, k: int = 60, num_results: Optional[int] = 1000,
                 backend: str = "pandas", norm: Optional[str] = "min-max", params: Optional[Dict] = None,
                 verbose: bool = False):
        """See :func:`fuse` for ``method, weights, k, num_results, backend, norm, params``; ``verbose`` shows a
        progress bar over the pipelines."""
        _check_options(len(pipelines), method, weights, backend)
        for i, p in enumerate(pipelines):
            if not isinstance(p, pt.Transformer):
                raise TypeError(f"pipeline {i} is a {type(p).__name__}, not a pt.Transformer")
        self.pipelines = list(pipelines)
        self.method = method
        self.weights = None if weights is None else list(weights)
        self.k = k
        self.num_results = num_results
        self.backend = backend
        self.norm = norm
        self.params = params
        self.verbose = verbose

    def subtransformers(self) -> Dict[str, List[pt.Transformer]]:
        return {"pipelines": list(self.pipelines)}

    def fuse_rank_cutoff(self, k: int) -> Optional["Fusion"]:
        """``fusion % k`` as a fusion keeping ``k`` documents per query (the pipelines still return all theirs:
        a document below their top ``k`` can still make the fused top ``k``)."""
        if self.num_results is None or k < self.num_results:
            return pt.inspect.transformer_apply_attributes(self, num_results=k)
        return None

    def transform_inputs(self) -> List[List[str]]:
        """Column sets that satisfy every pipeline (the union of one accepted set per pipeline), with ``qid``."""
        configs: Optional[List[List[str]]] = None
        for p in self.pipelines:
            accepted = pt.inspect.transformer_inputs(p, strict=False)
            if accepted is None:
                continue
            if configs is None:
                configs = [list(c) for c in accepted]
            else:
                configs = [list(dict.fromkeys(a + list(b))) for a in configs for b in accepted]
        # fusion groups by qid whatever the pipelines read (a query encoder alone needs only ``query``)
        configs = [list(dict.fromkeys(["qid", *c])) for c in configs or [["query"]]]
        unique = {tuple(sorted(c)): c for c in reversed(configs)}  # keep the first of equal sets
        return [c for c in configs if unique.get(tuple(sorted(c))) is c]

    def transform_outputs(self, input_columns: List[str]) -> List[str]:
        for p in self.pipelines:  # a column some pipeline needs is missing: its InputValidationError
            try:
                pt.inspect.transformer_outputs(p, input_columns)
            except pt.inspect.InspectError:
                pass  # a pipeline that cannot be inspected
        return self._carried_columns(input_columns) + ["docno", "score", "rank"]

    @staticmethod
    def _carried_columns(columns: List[str]) -> List[str]:
        with pt.validate.any(columns) as v:
            v.query_frame(mode="queries")
            v.result_frame(mode="results")
        if "docno" not in columns:
            return [c for c in columns if c not in ("docno", "score", "rank")]
        return list(pt.model.query_columns(pd.DataFrame(columns=columns)))

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        """Run every pipeline on ``inp`` and fuse their results."""
        carried = self._carried_columns(list(inp.columns))
        if len(inp) == 0:
            return _empty_results(inp[carried])
        results = [p(inp) for p in pt.tqdm(self.pipelines, desc="Fusion", unit="pipeline", disable=not self.verbose)]
        fused = fuse(*results, method=self.method, weights=self.weights, k=self.k, num_results=self.num_results,
                     backend=self.backend, norm=self.norm, params=self.params)
        queries = inp[carried].drop_duplicates(subset=["qid"]).astype({"qid": str})
        out = fused.merge(queries, on="qid", how="left")
        return out[carried + ["docno", "score", "rank"]]
