"""Training losses for DiSCo: score distillation (KLD), in-batch InfoNCE and representation MSE.

Matched against the DiSCo release, github SimonLupart/disco-conv-splade, ``splade/hf/trainers.py``
(``IRTrainer.compute_loss``), and its follow-up, github Janhutter/disco-conv-splade,
``splade/hf/trainers.py`` (``kldiv_InfoNCE_with_weights``, ``contrastive_weight``, ``infonce_temperature``).

Shapes: ``B`` queries (conversations) in a batch, ``C = P + N`` candidates per query with the ``P`` positives
first (``P = 1`` in DiSCo; more with the follow-up's soft positives, the qrels positive always first), ``V``
vocabulary terms.

**Paper vs code.** The paper (Section 3, Eq. 3) trains with "a single contrastive distillation KLD loss"; the
released code adds a 1% contrastive term: ``0.99 * KLD + 0.01 * CE`` (``kldiv_contrastive_with_weights``,
the default loss of SimonLupart/disco-conv-splade ``splade/hf/args.py`` lines 114-117, weights at
``splade/hf/trainers.py`` lines 209 and 243 at be503e8). The ``disco`` preset (the training default) follows
the code, because the released checkpoints were trained with it and the follow-up's reproduction of the paper's
numbers used it; the paper's loss alone is the ``kld`` preset. The paper's KLD is "within the batch"; the code's
(and this module's) is over each query's own ``1 + N`` candidates, in-batch documents entering only the CE term.

**Follow-up.** ``followup`` is ``(1 - w) KLD + w InfoNCE`` with w = 0.05 and tau = 0.08, the values of its
sweep configs (github Janhutter/disco-conv-splade ``conf/disco_topiocqa_mistral_infonce_005*.yaml``; its sweep
runs w in 0, 0.05, 0.10, 0.20: ``--infonce-weight``). Its older per-dataset configs and its code default use
tau = 0.05 (``splade/hf/args.py`` lines 178-181): ``--infonce-tau 0.05``.

**Soft positives** (``n_positives > 1``; the follow-up's "improved" setup, ``splade/hf/datasets.py`` lines
233-273 at d9e501d). The follow-up's code had two bugs this module does not reproduce: its KLD compared the
student's first ``1 + N`` columns (positives, then negatives) with teacher scores ``[max, negatives]``, so soft
positives were matched to negatives' teacher scores; here every candidate has its own teacher score and the KLD
covers all ``P + N`` of them. Its InfoNCE positive was a random one of the shuffled positives and, on its main
branch, the other positives counted as negatives; here the positive is the qrels positive (column 0) and the
soft positives are left out of the InfoNCE negatives (as its ``equal-positive-negatives`` branch, e619182).
"""
from dataclasses import dataclass, replace
from typing import Dict, Optional

import torch
import torch.nn.functional as F

LOSS_NAMES = ("kld", "kld+infonce", "mse", "infonce")


def kld(student_scores: torch.Tensor, teacher_scores: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher || student) over each query's candidates, summed over candidates, averaged over the batch.

    ``loss = 1/B * sum_b sum_c p_bc * (log p_bc - log q_bc)`` with ``p = softmax(teacher / T)`` and
    ``q = softmax(student / T)`` over the ``C`` candidates of row ``b``.

    This is ``torch.nn.KLDivLoss(reduction="none")(log_softmax(student), softmax(teacher)).sum(1).mean(0)``
    exactly as in the reference ``IRTrainer.compute_loss`` (input in log space, target as probabilities,
    ``log_target=False``), i.e. the "batchmean" KL divergence. The reference multiplies the scores by a
    hard-coded ``temperature = 1``; here the scores are divided by ``temperature`` (identical at 1).

    Args:
        student_scores: (B, C) student scores (dot products of query and candidate representations).
        teacher_scores: (B, C) teacher scores for the same candidates, same order.
    """
    if student_scores.shape != teacher_scores.shape or student_scores.dim() != 2:
        raise ValueError(f"kld expects two (B, C) tensors of the same shape, got {tuple(student_scores.shape)} "
                         f"and {tuple(teacher_scores.shape)}")
    teacher_scores = teacher_scores.to(device=student_scores.device, dtype=student_scores.dtype)
    log_q = torch.log_softmax(student_scores / temperature, dim=1)
    p = torch.softmax(teacher_scores / temperature, dim=1)
    return F.kl_div(log_q, p, reduction="none").sum(dim=1).mean(dim=0)


def in_batch_scores(q: torch.Tensor, d_pos: torch.Tensor, d_negs: torch.Tensor) -> torch.Tensor:
    """(B, 1 + B*N) scores: column 0 is each query's own positive, then every negative of every query.

    As in the reference (``all_scores = cat([scores_positive, q @ negatives.T])``), the in-batch candidates
    are the negatives of all queries of the batch (the query's own included); other queries' positives are
    not used as negatives.
    """
    if q.dim() != 2 or d_pos.shape != q.shape or d_negs.dim() != 3 or d_negs.shape[0] != q.shape[0] \
            or d_negs.shape[2] != q.shape[1]:
        raise ValueError(f"expected q (B, V), d_pos (B, V), d_negs (B, N, V); got {tuple(q.shape)}, "
                         f"{tuple(d_pos.shape)}, {tuple(d_negs.shape)}")
    pos = (q * d_pos).sum(dim=1, keepdim=True)
    negs = q @ d_negs.reshape(-1, d_negs.shape[2]).T
    return torch.cat([pos, negs], dim=1)


def infonce(q: torch.Tensor, d_pos: torch.Tensor, d_negs: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """In-batch InfoNCE (the convSPLADE contrastive baseline; qrels positives only, no teacher).

    ``loss = -1/B * sum_b log( exp(s_b+ / tau) / (exp(s_b+ / tau) + sum_{j, k} exp(q_b . d_jk- / tau)) )``
    where ``s_b+ = q_b . d_b+`` and ``d_jk-`` runs over the ``N`` negatives of every query ``j`` of the batch
    (see :func:`in_batch_scores`). Reference: ``CrossEntropyLoss(all_scores / infonce_temperature, 0)``;
    the DiSCo release's ``contrastive`` loss is the same with ``tau = 1``.

    Args:
        q: (B, V) query representations; d_pos: (B, V) positives; d_negs: (B, N, V) negatives.
    """
    scores = in_batch_scores(q, d_pos, d_negs) / tau
    labels = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
    return F.cross_entropy(scores, labels)


def candidate_scores(q: torch.Tensor, docs: torch.Tensor) -> torch.Tensor:
    """(B, C) dot products of each query (B, V) with its own candidates (B, C, V)."""
    if q.dim() != 2 or docs.dim() != 3 or docs.shape[0] != q.shape[0] or docs.shape[2] != q.shape[1]:
        raise ValueError(f"expected q (B, V) and docs (B, C, V); got {tuple(q.shape)} and {tuple(docs.shape)}")
    return torch.bmm(docs, q.unsqueeze(2)).squeeze(2)


def kld_infonce(q: torch.Tensor, docs: torch.Tensor, teacher_scores: torch.Tensor, weight: float = 0.01,
                tau: float = 1.0, temperature: float = 1.0, n_positives: int = 1) -> torch.Tensor:
    """``(1 - weight) * kld(q . docs, teacher_scores) + weight * infonce(q, docs[:, 0], docs[:, P:], tau)``.

    ``docs`` is (B, C, V) with each query's ``P = n_positives`` positives first (its qrels positive at column
    0); ``teacher_scores`` is (B, C). The DiSCo release (``kldiv_contrastive_with_weights``) uses weight 0.01
    (0.99 on the KLD) and no temperature (tau 1); the follow-up (``kldiv_InfoNCE_with_weights``) makes both
    configurable.
    """
    if not 1 <= n_positives < docs.shape[1]:
        raise ValueError(f"kld_infonce needs 1 <= n_positives < C and at least one negative per query; got "
                         f"n_positives {n_positives} with docs of shape {tuple(docs.shape)}")
    distil = kld(candidate_scores(q, docs), teacher_scores, temperature)
    contrastive = infonce(q, docs[:, 0], docs[:, n_positives:], tau)
    return (1.0 - weight) * distil + weight * contrastive


def mse(student_q: torch.Tensor, teacher_q: torch.Tensor) -> torch.Tensor:
    """Representation distillation (ConvDR / coSPLADE baseline): mean over all B*V entries of
    ``(student_q - teacher_q)^2`` between the student's conversation vector and the teacher's rewrite
    vector (``torch.nn.MSELoss()``). The teacher vector is treated as a constant (detached)."""
    if student_q.shape != teacher_q.shape:
        raise ValueError(f"mse expects tensors of the same shape, got {tuple(student_q.shape)} and "
                         f"{tuple(teacher_q.shape)}")
    return F.mse_loss(student_q, teacher_q.detach().to(student_q.device, student_q.dtype))


@dataclass(frozen=True)
class LossConfig:
    """Which training loss to use, by name, with its knobs.

    ``name`` is one of ``kld``, ``kld+infonce``, ``mse``, ``infonce``. ``weight`` is the InfoNCE weight ``w``
    of ``kld+infonce``; ``tau`` the InfoNCE temperature; ``temperature`` the KLD softmax temperature.
    ``mse_weight`` adds ``mse_weight * mse(q, teacher_q)`` (representation distillation of a rewrite, see
    :func:`mse`: a mean over all ``B * V`` entries, about 1e-3 for SPLADE-tiny vectors) to a score-based loss.
    Presets (:meth:`preset`): ``disco`` (kld+infonce, w 0.01, tau 1: the DiSCo release), ``followup``
    (kld+infonce, w 0.05, tau 0.08: the follow-up's sweep configs), ``kld`` (the paper's Eq. 3 alone), ``mse``,
    ``infonce``.
    """
    name: str = "kld+infonce"
    weight: float = 0.01
    tau: float = 1.0
    temperature: float = 1.0
    mse_weight: float = 0.0

    def __post_init__(self):
        if self.name not in LOSS_NAMES:
            raise ValueError(f"unknown loss {self.name!r}; choose one of {', '.join(LOSS_NAMES)}")
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"weight must be in [0, 1], got {self.weight}")
        if self.tau <= 0 or self.temperature <= 0:
            raise ValueError("tau and temperature must be positive")
        if self.mse_weight < 0 or (self.mse_weight and self.name == "mse"):
            raise ValueError(f"mse_weight must be >= 0 and adds to a score loss, not to {self.name!r}")

    @classmethod
    def preset(cls, name: str, **overrides) -> "LossConfig":
        """A named preset (see the class docstring), optionally with some fields overridden."""
        if name not in LOSS_PRESETS:
            raise ValueError(f"unknown loss preset {name!r}; choose one of {', '.join(LOSS_PRESETS)}")
        return replace(LOSS_PRESETS[name], **overrides)

    @property
    def needs_teacher_scores(self) -> bool:
        return self.name in ("kld", "kld+infonce")

    @property
    def needs_teacher_queries(self) -> bool:
        return self.name == "mse" or self.mse_weight > 0

    @property
    def weighs_infonce(self) -> bool:
        """Whether ``weight`` mixes an InfoNCE term into the loss (``kld+infonce``)."""
        return self.name == "kld+infonce"

    def compute(self, q: torch.Tensor, docs: Optional[torch.Tensor] = None,
                teacher_scores: Optional[torch.Tensor] = None,
                teacher_q: Optional[torch.Tensor] = None, n_positives: int = 1) -> Dict[str, torch.Tensor]:
        """The loss for one batch, as ``{"loss": total, <term>: value, ...}`` (terms for logging).

        Args:
            q: (B, V) student conversation representations.
            docs: (B, C, V) candidate representations, positives first (all losses but ``mse``).
            teacher_scores: (B, C) teacher scores of the candidates (``kld``, ``kld+infonce``).
            teacher_q: (B, V) teacher rewrite representations (``mse``).
            n_positives: the positives at the front of ``docs`` (the qrels positive first): InfoNCE's
                positive is column 0 and its negatives are the columns from ``n_positives`` on.
        """
        if self.needs_teacher_scores and teacher_scores is None:
            raise ValueError(f"loss {self.name!r} needs teacher_scores")
        if self.needs_teacher_queries and teacher_q is None:
            raise ValueError(f"loss {self.name!r} needs teacher_q")
        if self.name != "mse" and docs is None:
            raise ValueError(f"loss {self.name!r} needs docs")
        if self.name == "mse":
            value = mse(q, teacher_q)
            return {"loss": value, "mse": value.detach()}
        if self.name == "infonce":
            value = infonce(q, docs[:, 0], docs[:, n_positives:], self.tau)
            parts = {"loss": value, "infonce": value.detach()}
        else:
            distil = kld(candidate_scores(q, docs), teacher_scores, self.temperature)
            parts = {"loss": distil, "kld": distil.detach()}
            if self.name == "kld+infonce":
                contrastive = infonce(q, docs[:, 0], docs[:, n_positives:], self.tau)
                parts = {"loss": (1.0 - self.weight) * distil + self.weight * contrastive, "kld": distil.detach(),
                         "infonce": contrastive.detach()}
        if self.mse_weight:
            imitation = mse(q, teacher_q)
            parts["loss"] = parts["loss"] + self.mse_weight * imitation
            parts["mse"] = imitation.detach()
        return parts


LOSS_PRESETS: Dict[str, LossConfig] = {
    "disco": LossConfig("kld+infonce", weight=0.01, tau=1.0),
    "followup": LossConfig("kld+infonce", weight=0.05, tau=0.08),
    "kld": LossConfig("kld", weight=0.0),
    "mse": LossConfig("mse", weight=0.0),
    "infonce": LossConfig("infonce", weight=1.0),
}
