"""Sparsity regularisation: FLOPS on documents, L1 on queries, with SPLADE's quadratic warm-up.

Matched against github SimonLupart/disco-conv-splade ``splade/hf/trainers.py`` (``BaseTrainer._flops``,
``_L1``, ``_L0``, ``IRTrainer.compute_lambdas`` lines 155-158 and the end of ``compute_loss`` lines 253-263 at
be503e8), identical in the follow-up github Janhutter/disco-conv-splade ``splade/hf/trainers.py``.

What the reference does, and so what this module does:

- ``lambda_d * FLOPS(docs)`` over all candidate documents of the batch (positives and negatives, as one
  (B*C, V) matrix) plus ``lambda_q * L1(queries)``; FLOPS is *not* applied to the query side.
- In DiSCo the document encoder is frozen (``freeze_d_model: 1``: ``requires_grad_(False)``) and, in this
  project, document vectors are cached, so the FLOPS term is a constant that trains nothing (``lambda_d`` is
  inert); it is still computed and logged. The L1 term on the queries is what makes the conversation encoder
  sparser.
- An "anti-zero" term ``1/sum(Q)^2 + 1/sum(D)^2`` is always added by the reference (it keeps the
  representations from collapsing to all zeros); ``anti_zero=True`` keeps it. When the student's vector is
  added to a fixed one (``TrainConfig.utterance_weight``, not in the reference), the sum with the utterance's
  vector never nears zero, so the term does not see the student's own part collapse;
  ``TrainConfig.anti_zero_on="student"`` puts the student's own part in ``Q`` instead. A sum of exactly zero
  (every ReLU dead, so no gradient either way) adds nothing instead of an infinite loss.
- The quadratic warm-up ``min(lambda, lambda * (step / (T + 1))^2)``: the reference reads ``T`` from the config
  and no DiSCo or follow-up config sets it, so their runs had none (T = 0); here ``T`` is
  ``TrainConfig.sparsity_warmup_steps`` (``--sparsity-warmup-steps``), default 0 as the reference.

**Presets, named after their source** (``lambda_d`` / ``lambda_q``, as the configs write them):

- ``off`` (default), 0 / 0: the DiSCo release (``conf/disco_topiocqa_mistral_llama.yaml`` lines 32-40) and the
  follow-up's "standard" runs;
- ``paper``, 5e-4 / 1e-3: the DiSCo paper's Section 4.3 ("lambda_q = 1e-3, lambda_d = 5e-4"), also the
  follow-up's ``conf/disco_topiocqa_mistral_standard_lambdas_splade.yaml`` (commit e619182);
- ``followup-low``, 1e-4 / 5e-4: the follow-up's ``..._standard_lambdas_splade_low.yaml`` (e619182);
- ``followup-high``, 1e-3 / 5e-3: the follow-up's ``..._standard_lambdas_splade_high.yaml`` (e619182);
- ``followup-readme-higher``, 1e-2 / 5e-2, and ``followup-readme-highest``, 5e-2 / 1e-1: the follow-up's README
  (section "6. Lambda regularization") and its reproducibility report's Table 6; no committed config, and its
  three strongest runs (FLOPS 1.84 / 1.37 / 0.47) have no committed lambdas, so which runs these two are is not
  known.

No stronger level exists in either repository; a stronger one would be this project's own.

**What the reference actually trained with (decision).** The presets keep the values the configs state, each
on the term it names. In the reference, when ``lambda_d, lambda_q > 0``: (1) ``lambda_d`` acts on the frozen
documents only, so it trains nothing; (2) ``splade/hf/convertl2i2hf.py`` (lines 146-155 at be503e8, the same
in the follow-up) reads ``L1.lambda_q`` and ``L1.T`` in one ``try``; no config has ``L1.T``, so the struct-mode
config raises and the fallback sets ``lambda_q = lambda_d``. The follow-up's lambda runs therefore trained an
L1 on queries weighted by the YAML's ``lambda_d`` (e.g. ``followup-high`` ran with an effective ``lambda_q`` of
1e-3, not 5e-3). To train as they effectively did, override the query weight:
``--regularization followup-high --lambda-q 1e-3`` (``TrainConfig.lambda_q``). The 0 / 0 default is
unaffected.

**Paper vs release.** The paper's Section 4.3 says "default experiments with SPLADE use FLOPS and L1
regularization ... lambda_q = 1e-3, lambda_d = 5e-4" (preset ``paper``); the released DiSCo configs train with
0 / 0 (preset ``off``), and so do the released checkpoints trained from them. The default is ``off``: it is what
the authors' models were trained with, and the reference bug above makes the paper's values act as an L1 of
5e-4 on the queries in the authors' own code.
"""
from dataclasses import dataclass, replace
from typing import Dict, Optional, Tuple, Union

import numpy as np
import scipy.sparse as sp
import torch


def flops_regularizer(reps: torch.Tensor) -> torch.Tensor:
    """FLOPS regulariser of a batch of representations (n, V): ``sum_j (1/n sum_i |w_ij|)^2``."""
    return torch.sum(torch.mean(torch.abs(reps), dim=0) ** 2)


def l1(reps: torch.Tensor) -> torch.Tensor:
    """L1 regulariser of a batch of representations (n, V): ``1/n sum_i sum_j |w_ij|``."""
    return torch.sum(torch.abs(reps), dim=-1).mean()


def l0(reps: torch.Tensor) -> torch.Tensor:
    """Mean number of non-zero terms per representation (for logging)."""
    return torch.count_nonzero(reps, dim=-1).float().mean()


def anti_zero(queries: torch.Tensor, docs_sum: torch.Tensor) -> torch.Tensor:
    """``1 / (sum of all query weights)^2 + 1 / (sum of all document weights)^2``, as in the reference
    (``docs_sum``: the documents' sum, see :func:`document_terms`); a zero sum's part is left out."""
    return sum(1 / s ** 2 if s > 0 else s * 0 for s in (torch.sum(queries), docs_sum))


def document_terms(docs: Union[torch.Tensor, sp.spmatrix]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(FLOPS, sum of all weights, mean non-zeros per row) of (n, V) document vectors.

    Frozen (cached) document vectors may come as a scipy sparse matrix: the same three numbers, as
    constants, from their non-zeros only instead of the dense (n, V) tensor.
    """
    if isinstance(docs, torch.Tensor):
        return flops_regularizer(docs), torch.sum(docs), l0(docs.detach())
    docs = sp.csr_matrix(docs)
    column_means = np.asarray(abs(docs).sum(axis=0), dtype=np.float64).ravel() / docs.shape[0]
    as_tensor = lambda x: torch.tensor(float(x), dtype=torch.float32)  # noqa: E731
    return (as_tensor(np.sum(column_means ** 2)), as_tensor(docs.sum(dtype=np.float64)),
            as_tensor(docs.getnnz(axis=1).mean()))


def warmup_lambda(lam: float, step: int, warmup_steps: int) -> float:
    """Quadratic warm-up ``min(lam, lam * (step / (T + 1))^2)`` with ``T = warmup_steps``.

    ``step`` counts optimisation steps from 1 (the reference increments its counter before computing, so
    its first batch uses step 1). With ``T = 0`` (the reference default when the config sets no ``T``)
    the full lambda applies from the first step.
    """
    if step < 0 or warmup_steps < 0:
        raise ValueError("step and warmup_steps must be >= 0")
    return min(lam, lam * (step / (warmup_steps + 1)) ** 2)


@dataclass(frozen=True)
class SparsityConfig:
    """Sparsity regularisation weights and warm-up (``warmup_d`` / ``warmup_q``: the warm-up ``T`` in steps).

    Presets (:meth:`preset`, see the module docstring for their sources): ``off``, ``paper``,
    ``followup-low``, ``followup-high``, ``followup-readme-higher``, ``followup-readme-highest``.
    """
    lambda_d: float = 0.0
    lambda_q: float = 0.0
    warmup_d: int = 0
    warmup_q: int = 0
    anti_zero: bool = True

    def __post_init__(self):
        if self.lambda_d < 0 or self.lambda_q < 0:
            raise ValueError("lambda_d and lambda_q must be >= 0")
        if self.warmup_d < 0 or self.warmup_q < 0:
            raise ValueError("the sparsity warm-up steps must be >= 0")

    @classmethod
    def preset(cls, name: str, **overrides) -> "SparsityConfig":
        """A named preset (see the class docstring), optionally with some fields overridden."""
        if name not in SPARSITY_PRESETS:
            raise ValueError(f"unknown sparsity preset {name!r}; choose one of {', '.join(SPARSITY_PRESETS)}")
        return replace(SPARSITY_PRESETS[name], **overrides)

    def lambdas(self, step: int) -> Dict[str, float]:
        """The warmed-up ``lambda_d`` and ``lambda_q`` for optimisation step ``step`` (from 1)."""
        return {"lambda_d": warmup_lambda(self.lambda_d, step, self.warmup_d),
                "lambda_q": warmup_lambda(self.lambda_q, step, self.warmup_q)}

    def compute(self, queries: torch.Tensor, docs: torch.Tensor, step: int,
                own: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """Regularisation for one batch: ``{"loss": ..., "flops_d", "l1_q", "anti_zero", "L0_q", "L0_d",
        "lambda_d", "lambda_q"}`` (everything but ``loss`` detached, for logging).

        Args:
            queries: (B, V) query representations.
            docs: (B, C, V) or (n, V) candidate document representations (reshaped to (n, V)), or frozen
                ones as an (n, V) scipy sparse matrix.
            step: optimisation step, from 1.
            own: the student's own part of ``queries`` when a fixed vector was added to it (the anti-zero
                term's ``Q``; default ``queries``).
        """
        if isinstance(docs, torch.Tensor):
            docs = docs.reshape(-1, docs.shape[-1])
        lam = self.lambdas(step)
        flops_d, sum_d, l0_d = document_terms(docs)
        flops_d, sum_d = flops_d.to(queries.device), sum_d.to(queries.device)
        l1_q = l1(queries)
        loss = lam["lambda_d"] * flops_d + lam["lambda_q"] * l1_q
        out = {"flops_d": flops_d.detach(), "l1_q": l1_q.detach()}
        if self.anti_zero:
            az = anti_zero(queries if own is None else own, sum_d)
            loss = loss + az
            out["anti_zero"] = az.detach()
        out.update({"loss": loss, "L0_q": l0(queries.detach()), "L0_d": l0_d,
                    "lambda_d": torch.tensor(lam["lambda_d"]), "lambda_q": torch.tensor(lam["lambda_q"])})
        return out


SPARSITY_PRESETS: Dict[str, SparsityConfig] = {  # lambda_d (FLOPS, documents), lambda_q (L1, queries)
    "off": SparsityConfig(0.0, 0.0),
    "paper": SparsityConfig(5e-4, 1e-3),
    "followup-low": SparsityConfig(1e-4, 5e-4),
    "followup-high": SparsityConfig(1e-3, 5e-3),
    "followup-readme-higher": SparsityConfig(1e-2, 5e-2),
    "followup-readme-highest": SparsityConfig(5e-2, 1e-1),
}
