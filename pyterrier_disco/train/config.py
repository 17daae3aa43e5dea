"""The training recipe, :class:`TrainConfig`: one place for every option's default, choices and help text.

The ``disco train`` command line is generated from these fields (their ``metadata``), so a choice or a
default is defined once, here or in the library constant it points to.
"""
import math
import numbers
import typing
from dataclasses import dataclass, field, fields
from typing import Any, List, Mapping, Optional, Sequence

from .losses import LOSS_PRESETS, LossConfig
from .regularization import SPARSITY_PRESETS, SparsityConfig
from .sampling import MISSING_POSITIVE, STRATEGIES
from .teacher import AGGREGATIONS

ANTI_ZERO_ON = ("query", "student")


def option(default: Any, help: str, *, choices: Optional[Sequence[str]] = None, flag: Optional[str] = None,
           cli: bool = True):
    """A :class:`TrainConfig` field with what the command line needs: ``help``, ``choices``, ``flag`` (the
    option name when it is not the field name with dashes) and ``cli=False`` for library-only fields."""
    return field(default=default, metadata={"help": help, "choices": tuple(choices) if choices else None,
                                            "flag": flag, "cli": cli})


class CommandLineFields:
    """For a dataclass of :func:`option` fields: the command line is generated from them (``disco train``,
    ``disco demo``)."""

    @classmethod
    def cli_fields(cls):
        """``(field, flag)`` for every field the command line exposes, in declaration order."""
        return [(f, f.metadata.get("flag") or "--" + f.name.replace("_", "-"))
                for f in fields(cls) if f.metadata.get("cli", True)]

    def field_problems(self) -> List[str]:
        """Each field whose value is outside its ``choices`` or not of its type, as ``"name=value is not ..."``."""
        problems = []
        for f in fields(self):
            value, choices = getattr(self, f.name), f.metadata.get("choices")
            if value is None and type(None) in typing.get_args(f.type):
                continue
            if choices and value not in choices:
                problems.append(f"{f.name}={value!r} is not one of {', '.join(choices)}")
            elif not _is_a(value, field_type(f)):
                problems.append(f"{f.name}={value!r} is not of type {field_type(f).__name__}")
        return problems

    @staticmethod
    def _rules():
        """``(field, "must be ...", ok)`` for each value rule beyond the field's type and choices."""
        return []

    def _refuse_invalid(self, what: str) -> None:
        """Raise one ValueError naming every field outside its type, choices or rules (None passes the rules)."""
        problems = self.field_problems()
        if not problems:
            problems = [f"{name}={getattr(self, name)!r} {rule}" for name, rule, ok in self._rules()
                        if getattr(self, name) is not None and not ok(getattr(self, name))]
        if problems:
            raise ValueError(f"invalid {what} option(s): " + "; ".join(problems))


AT_LEAST_1 = ("must be >= 1", lambda v: v >= 1)
POSITIVE = ("must be > 0", lambda v: 0 < v < math.inf)


@dataclass
class TrainConfig(CommandLineFields):
    """The training recipe. Defaults follow the DiSCo paper's Section 4.3 where the paper and its released code
    agree (AdamW, batch 10, 16 negatives, the document encoder frozen, 256 tokens) and the released code where
    they disagree (no sparsity regularisation, the paper: lambda_q 1e-3 / lambda_d 5e-4, preset ``paper``, see
    :mod:`~pyterrier_disco.train.regularization`; linear decay with 1% warm-up, not in the paper; negatives drawn
    from the teacher's ranks 10..960, the paper gives no window).

    Five defaults are the project's transfer recipe for a small student and little data, chosen with
    experiments/transfer.py and recipe_search.py (results in experiments/results/): lr 2e-4, 2 epochs, frozen
    word embeddings, the follow-up's loss (0.95 KLD + 0.05 InfoNCE, tau 0.08; see
    :mod:`~pyterrier_disco.train.losses`) and the raw utterance's vector added to the student's
    (``utterance_weight`` 1). Trained on TREC CAsT 2019-2022 and evaluated on iKAT 2023, SPLADE-tiny reaches
    RR 0.592 with it (raw utterance 0.513, human rewrite 0.628) against 0.464 with the DiSCo release's loss and
    no utterance vector. :data:`DISCO_RELEASE` holds the release's choices for the fields the recipe changes
    (the paper: also ``lr=2e-5, epochs=5``).

    With ``grad_accum > 1`` each optimiser step averages the losses of its non-empty micro-batches of
    ``batch_size`` examples (at the end of an epoch a step may have fewer than ``grad_accum`` of them).
    The quadratic sparsity warm-up (``min(lambda, lambda * (step / (T + 1))^2)``) counts *optimiser steps*
    from 1 (every micro-batch of a step uses the same step), whereas the reference code counts
    ``compute_loss`` calls, i.e. micro-batches; the two agree when ``grad_accum == 1`` (the DiSCo default).
    """
    loss: str = option("followup", "training loss preset: disco = 0.99 KLD + 0.01 InfoNCE (tau 1, the DiSCo "
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
                                           for name, c in SPARSITY_PRESETS.items()) +
                                 " (off: the DiSCo release; paper: DiSCo Section 4.3; followup-*: the follow-up's "
                                 "configs or README, see pyterrier_disco.train.regularization)",
                                 choices=SPARSITY_PRESETS)
    lambda_q: Optional[float] = option(None, "override the preset's lambda_q (L1 on queries); the follow-up's "
                                       "lambda runs effectively used their lambda_d here (a config bug)")
    lambda_d: Optional[float] = option(None, "override the preset's lambda_d (FLOPS on the frozen documents: "
                                       "logged, trains nothing)")
    sparsity_warmup_steps: int = option(0, "T of the quadratic sparsity warm-up min(lambda, lambda (step/(T+1))^2), "
                                        "in optimiser steps (0: full lambda from the first step, as the reference)")
    infonce_warmup_steps: int = option(0, "ramp the InfoNCE weight w linearly from w/N to w over the first N "
                                       "optimiser steps (0: full weight from the first step, as the follow-up)")
    n_negatives: int = option(16, "negatives per turn (the paper: 16; the follow-up's sweeps: 1, 8, 16, 32, 70)",
                              flag="--negatives")
    n_positives: int = option(1, "positives per turn: 1 (DiSCo); more adds the follow-up's soft positives (its "
                              "'improved' setup: the teacher's best non-gold documents of the sampling pool)",
                              flag="--positives")
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
    utterance_weight: Optional[float] = option(1.0, "add this weight times the document model's SPLADE vector of "
                                               "the raw utterance to the student's query vector, in training and "
                                               "at search time: the student learns what the conversation adds to "
                                               "the utterance (0: DiSCo's single conversation encoder)")
    anti_zero_on: str = option("query", "the reference's anti-zero term 1/sum(Q)^2: Q the query vector the loss "
                               "scores (query, the reference) or, with --utterance-weight, the student's own part "
                               "before the utterance's vector is added (student: keeps that part from collapsing)",
                               choices=ANTI_ZERO_ON)
    freeze_embeddings: bool = option(True, "keep the word embeddings (and the tied output layer) as they are: "
                                     "3.9M of SPLADE-tiny's 4.4M parameters (paper: no)")
    mse_teacher: str = option("human_rewrite", "with --loss mse: the rewrite column whose SPLADE vector the "
                              "student imitates")
    cache_documents: bool = option(True, "encode each frozen candidate document once", cli=False)

    def __post_init__(self):
        """Refuse a nonsensical recipe before any work (a count below 1, a learning rate that is not > 0...)."""
        self._refuse_invalid("training")
        if self.infonce_warmup_steps and not self.loss_config().weighs_infonce:
            raise ValueError(f"infonce_warmup_steps ramps the InfoNCE weight of the KLD + InfoNCE losses (disco, "
                             f"followup); loss {self.loss!r} has no such weight")

    @staticmethod
    def _rules():
        return [(name, *AT_LEAST_1) for name in ("n_negatives", "epochs", "batch_size", "grad_accum", "max_steps",
                                                "checkpoint_every")] + [
            ("lr", *POSITIVE), ("infonce_tau", *POSITIVE),
            ("infonce_weight", "must be >= 0", lambda v: 0 <= v < math.inf),
            ("weight_decay", "must be >= 0", lambda v: 0 <= v < math.inf),
            ("utterance_weight", "must be >= 0", lambda v: 0 <= v < math.inf),
            ("warmup_ratio", "must be in [0, 1)", lambda v: 0 <= v < 1),
            ("seed", "must be >= 0", lambda v: v >= 0),
            ("infonce_warmup_steps", "must be >= 0", lambda v: v >= 0),
            ("max_length", "must be >= 8 tokens", lambda v: v >= 8)]

    def loss_config(self) -> LossConfig:
        overrides = {k: v for k, v in (("weight", self.infonce_weight), ("tau", self.infonce_tau),
                                       ("mse_weight", self.mse_weight)) if v is not None}
        return LossConfig.preset(self.loss, **overrides)

    def sparsity_config(self) -> SparsityConfig:
        overrides = {k: v for k, v in (("lambda_q", self.lambda_q), ("lambda_d", self.lambda_d)) if v is not None}
        return SparsityConfig.preset(self.regularization, warmup_d=self.sparsity_warmup_steps,
                                     warmup_q=self.sparsity_warmup_steps, **overrides)

    @classmethod
    def from_dict(cls, d: Mapping) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown training option(s): {sorted(unknown)}")
        return cls(**d)


# the DiSCo release's choices for the fields where the transfer recipe (the defaults) departs from it
DISCO_RELEASE = {"loss": "disco", "freeze_embeddings": False, "utterance_weight": None}
# named recipes: the fields they set on top of a TrainConfig (`disco demo --recipe`)
RECIPES = {"transfer": {f: TrainConfig.__dataclass_fields__[f].default for f in DISCO_RELEASE},
           "release": DISCO_RELEASE}


def field_type(f) -> type:
    """The scalar type of a field: ``Optional[int]`` -> ``int``."""
    args = [a for a in typing.get_args(f.type) if a is not type(None)]
    return args[0] if args else f.type


def _is_a(value, kind: type) -> bool:
    """``value`` fits a field of type ``kind`` (an int is a float; a bool is not a number)."""
    if kind in (int, float):
        return isinstance(value, numbers.Integral if kind is int else numbers.Real) and not isinstance(value, bool)
    return isinstance(value, kind)
