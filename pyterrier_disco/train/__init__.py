"""Training pieces for DiSCo: losses, sparsity regularisation, teacher runs and negative sampling."""
from pyterrier_disco.train.losses import (LOSS_PRESETS, LossConfig, candidate_scores, in_batch_scores, infonce,
                                          kld, kld_infonce, mse)
from pyterrier_disco.train.regularization import (SPARSITY_PRESETS, SparsityConfig, anti_zero, flops_regularizer,
                                                  l0, l1, warmup_lambda)
from pyterrier_disco.train.sampling import STRATEGIES, TrainingExample, build_examples
from pyterrier_disco.train.teacher import (aggregate_teachers, build_teacher_run, check_teacher_run,
                                           doc_model_metadata, load_teacher_run, save_teacher_run)
from pyterrier_disco.train.teacher_specs import TeacherSpec, check_teachers, parse_teachers, resolve_teachers
from pyterrier_disco.train.config import TrainConfig
from pyterrier_disco.train.trainer import Trainer, train

__all__ = [
    "TrainConfig", "Trainer", "train",
    "LOSS_PRESETS", "LossConfig", "candidate_scores", "in_batch_scores", "infonce", "kld", "kld_infonce", "mse",
    "SPARSITY_PRESETS", "SparsityConfig", "anti_zero", "flops_regularizer", "l0", "l1", "warmup_lambda",
    "STRATEGIES", "TrainingExample", "build_examples",
    "aggregate_teachers", "build_teacher_run", "check_teacher_run", "doc_model_metadata", "load_teacher_run",
    "save_teacher_run", "TeacherSpec", "check_teachers", "parse_teachers", "resolve_teachers",
]
