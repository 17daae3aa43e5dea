"""The training recipe, :class:`TrainConfig`: one place for every option's default, choices and help text.

The ``disco train`` command line is generated from these fields (their ``metadata``), so a choice or a
default is defined once, here or in the library constant it points to.
"""
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Mapping, Optional, Sequence

from .losses import LOSS_PRESETS, LossConfig
from .regularization import SPARSITY_PRESETS, SparsityConfig
from .sampling import MISSING_POSITIVE, STRATEGIES
from .teacher import AGGREGATIONS


def option(default: Any, help: str, *, choices: Optional[Sequence[str]] = None, flag: Optional[str] = None,
           cli: bool = True):
    """A :class:`TrainConfig` field with what the command line needs: ``help``, ``choices``, ``flag`` (the
    option name when it is not the field name with dashes) and ``cli=False`` for library-only fields."""
    return field(default=default, metadata={"help": help, "choices": tuple(choices) if choices else None,
                                            "flag": flag, "cli": cli})


@dataclass
class TrainConfig:
    """The training recipe. Defaults: the DiSCo release (AdamW, linear decay with 1% warm-up, batch 10, KLD + 0.01
    InfoNCE, no sparsity regularisation, reference negative sampling) with the project's transfer recipe for a small
    student and little data: lr 2e-4, 2 epochs, frozen word embeddings. Measured with experiments/transfer.py
    (results in experiments/results/): trained on TREC CAsT 2019-2022 and evaluated on iKAT 2023, SPLADE-tiny reaches
    RR 0.464 with it against 0.443 with trainable embeddings and 0.365 with the release's lr 2e-5 (one epoch);
    the paper's settings are ``lr=2e-5, epochs=5, freeze_embeddings=False``.

    With ``grad_accum > 1`` each optimiser step averages the losses of its non-empty micro-batches of
    ``batch_size`` examples (at the end of an epoch a step may have fewer than ``grad_accum`` of them).
    The quadratic sparsity warm-up (``min(lambda, lambda * (step / (T + 1))^2)``) counts *optimiser steps*
    from 1 (every micro-batch of a step uses the same step), whereas the reference code counts
    ``compute_loss`` calls, i.e. micro-batches; the two agree when ``grad_accum == 1`` (the DiSCo default).
    """
    loss: str = option("disco", "training loss preset: disco = 0.99 KLD + 0.01 InfoNCE (tau 1, the DiSCo "
                       "release); followup = KLD + weighted InfoNCE of the 2026 follow-up; kld: distillation "
                       "only; mse: representation distillation of a rewrite (ConvDR/coSPLADE); infonce: "
                       "contrastive on qrels only (convSPLADE)", choices=LOSS_PRESETS)
    infonce_weight: Optional[float] = option(None, "override the loss preset's InfoNCE weight w")
    infonce_tau: Optional[float] = option(None, "override the loss preset's InfoNCE temperature")
    mse_weight: Optional[float] = option(None, "override the loss preset's weight of an added MSE term towards the "
                                         "--mse-teacher rewrite's SPLADE vector (mean over all vocabulary entries, "
                                         "about 1e-3 for SPLADE-tiny, so weights of 10-1000 matter)")
    regularization: str = option("off", "sparsity preset, lambda_d (FLOPS, documents) / lambda_q (L1, queries): " +
                                 "; ".join(f"{name} {c.lambda_d:g}/{c.lambda_q:g}"
                                           for name, c in SPARSITY_PRESETS.items()), choices=SPARSITY_PRESETS)
    n_negatives: int = option(16, "negatives per turn", flag="--negatives")
    strategy: str = option("reference", "negative sampling: reference = uniform over teacher ranks 10..960 "
                           "(DiSCo code); top = next-best ranks; uniform = the whole teacher run",
                           choices=STRATEGIES, flag="--sampling")
    aggregate: str = option("mean", "multi-teacher score of a document, over the teachers that retrieved it",
                            choices=AGGREGATIONS)
    missing_positive: str = option("skip", "turns without a qrels positive: skip them (DiSCo) or use the "
                                   "teacher's top document (teacher_top)", choices=MISSING_POSITIVE)
    epochs: int = option(2, "passes over the training turns (negatives re-drawn each; paper: 5)")
    batch_size: int = option(10, "turns per batch")
    grad_accum: int = option(1, "gradient accumulation steps")
    lr: float = option(2e-4, "AdamW learning rate (linear decay after the warm-up; paper: 2e-5)")
    warmup_ratio: float = option(0.01, "fraction of the steps with a linear learning-rate warm-up")
    weight_decay: float = option(0.0, "AdamW weight decay")
    max_steps: Optional[int] = option(None, "cap on optimiser steps (the schedule is planned for the cap)")
    checkpoint_every: int = option(100, "checkpoint every N optimiser steps")
    seed: int = option(42, "seeds sampling, batch order and dropout: same seed, same weights")
    max_length: int = option(256, "conversation tokens the student reads")
    include_responses: bool = option(True, "put the system responses of the history in the student's input")
    max_response_tokens: Optional[int] = option(None, "cut each response of the history to its first N tokens")
    freeze_embeddings: bool = option(True, "keep the word embeddings (and the tied output layer) as they are: "
                                     "3.9M of SPLADE-tiny's 4.4M parameters (paper: no)")
    mse_teacher: str = option("human_rewrite", "with --loss mse: the rewrite column whose SPLADE vector the "
                              "student imitates")
    cache_documents: bool = option(True, "encode each frozen candidate document once", cli=False)

    def loss_config(self) -> LossConfig:
        overrides = {k: v for k, v in (("weight", self.infonce_weight), ("tau", self.infonce_tau),
                                       ("mse_weight", self.mse_weight)) if v is not None}
        return LossConfig.preset(self.loss, **overrides)

    def sparsity_config(self) -> SparsityConfig:
        return SparsityConfig.preset(self.regularization)

    @classmethod
    def from_dict(cls, d: Mapping) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown training option(s): {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def cli_fields(cls):
        """``(field, flag)`` for every field the command line exposes, in declaration order."""
        return [(f, f.metadata.get("flag") or "--" + f.name.replace("_", "-"))
                for f in fields(cls) if f.metadata.get("cli", True)]


def field_type(f) -> type:
    """The scalar type of a field: ``Optional[int]`` -> ``int``."""
    args = [a for a in typing.get_args(f.type) if a is not type(None)]
    return args[0] if args else f.type
