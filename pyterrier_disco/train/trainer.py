"""The DiSCo trainer: distil teacher retrieval scores into a conversation query encoder.

The document encoder is frozen, so each candidate document is encoded once and its sparse vector cached
(the reference code re-encodes every candidate at every step). The student starts from the document-side
SPLADE checkpoint unless another is given.

Output folder while training: ``run.json`` (the recipe), ``train_log.csv`` (loss parts per step) and
``checkpoint-<step>/`` folders (model, optimizer, scheduler, RNG and data position; each written to a temp
folder and renamed). When training ends the student (safetensors, tokenizer, config) and its
``pt_meta.json`` are written; ``DiSCo.from_pretrained(out)`` loads it.
"""
import contextlib
import csv
import errno
import json
import math
import os
import re
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pandas as pd
import pyterrier as pt
import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from safetensors import SafetensorError

from .._errors import CorruptFileError, InputKeyError
from .._folders import atomic_dir, output_lock
from .._utils import atomic_file, read_json
from ..conversation import ConversationFormatter
from ..encoders import SpladeModel
from ..student import DiSCo
from .checkpoint import adamw, rng_state, set_rng_state
from .config import TrainConfig
from .documents import DocSource, DocumentCache
from .folder import TrainingFolder
from .losses import LossConfig
from .regularization import l0
from .sampling import TrainingExample, build_examples
from .teacher import check_teacher_run

LOG_FIELDS = ["step", "epoch", "lr", "loss", "kld", "infonce", "mse", "flops_d", "l1_q", "anti_zero", "L0_q",
              "L0_student"]


def _plan(n_examples: int, config: TrainConfig) -> Dict[str, int]:
    batches = math.ceil(n_examples / config.batch_size)
    steps_per_epoch = math.ceil(batches / config.grad_accum)
    total = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    return {"batches_per_epoch": batches, "steps_per_epoch": steps_per_epoch, "total_steps": total,
            "warmup_steps": math.ceil(config.warmup_ratio * total)}


class Trainer:
    """Trains a DiSCo student; see :func:`train` for the usual entry point."""

    def __init__(self, conversations: pd.DataFrame, teacher_run: pd.DataFrame, docs: DocSource, out,
                 *, qrels: Optional[pd.DataFrame] = None, config: Optional[TrainConfig] = None,
                 base_model=None, doc_model=None, device: Optional[str] = None, verbose: bool = True,
                 provenance: Optional[dict] = None):
        self.config = config or TrainConfig()
        self.out = Path(out)
        self.folder = TrainingFolder(self.out)
        self.verbose = verbose
        missing = [c for c in ("qid", "query", "history") if c not in conversations.columns]
        if missing:
            raise InputKeyError(f"the conversation frame lacks column(s) {missing}")
        self.conversations = conversations.assign(qid=conversations["qid"].astype(str)).set_index("qid", drop=False)
        self.teacher_run = teacher_run
        self.qrels = qrels
        self.provenance = provenance or {}
        if isinstance(doc_model, SpladeModel):  # the caller's model: left trainable, only ever run under no_grad
            self.doc_model = doc_model
        else:
            self.doc_model = SpladeModel(doc_model, device=device).requires_grad_(False)
        if "teacher_run" in teacher_run.attrs:  # a run without metadata (built in memory) is not checked
            check_teacher_run(teacher_run, self.doc_model)
        self.student = SpladeModel(base_model if base_model is not None else self.doc_model.name_or_path,
                                   device=device, max_length=self.config.max_length)
        if self.student.vocab != self.doc_model.vocab:
            raise ValueError("the student and the document model must share a vocabulary")
        if self.config.freeze_embeddings:  # with tied weights this also freezes the output layer
            self.student.mlm.get_input_embeddings().weight.requires_grad_(False)
        self.formatter = ConversationFormatter(include_responses=self.config.include_responses,
                                               max_response_tokens=self.config.max_response_tokens,
                                               max_length=self.config.max_length)
        self.loss = self.config.loss_config()
        if self.loss.needs_teacher_queries and self.config.mse_teacher not in self.conversations.columns:
            rewrites = [str(c) for c in conversations.columns if "rewrite" in str(c).lower()]
            raise InputKeyError(f"the mse loss imitates the rewrite column {self.config.mse_teacher!r} "
                           "(TrainConfig.mse_teacher / --mse-teacher), which the conversation frame lacks; "
                           f"available rewrite columns: {', '.join(map(repr, rewrites)) or 'none'}")
        self.sparsity = self.config.sparsity_config()
        self.cache = DocumentCache(self.doc_model, docs, enabled=self.config.cache_documents)
        self.examples_of_epoch = {}
        self._order = (None, None)
        self._planned_epochs = 0
        self.plan = _plan(len(self.examples(0)), self.config)

    # -- data --------------------------------------------------------------------------------------
    def examples(self, epoch: int) -> List[TrainingExample]:
        """The epoch's examples: negatives are re-drawn every epoch, as in the reference code."""
        if epoch not in self.examples_of_epoch:
            self.examples_of_epoch = {epoch: build_examples(
                self.conversations.reset_index(drop=True), self.teacher_run, self.qrels,
                n_negatives=self.config.n_negatives, strategy=self.config.strategy,
                seed=(self.config.seed, epoch), missing_positive=self.config.missing_positive,
                aggregate=self.config.aggregate, n_positives=self.config.n_positives)}
            if not self.examples_of_epoch[epoch]:
                raise ValueError("no training example: no conversation turn has both a teacher run and a positive")
        return self.examples_of_epoch[epoch]

    def batch(self, step: int, micro: int) -> List[TrainingExample]:
        """Micro-batch ``micro`` of optimiser step ``step`` (0-based); the order is a seeded shuffle per epoch."""
        epoch, in_epoch = divmod(step, self.plan["steps_per_epoch"])
        examples = self.examples(epoch)
        if self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng((self.config.seed, epoch, 1)).permutation(len(examples)))
        order = self._order[1]
        b = in_epoch * self.config.grad_accum + micro
        return [examples[i] for i in order[b * self.config.batch_size:(b + 1) * self.config.batch_size]]

    def query_texts(self, batch: List[TrainingExample]) -> List[str]:
        rows = self.conversations.loc[[e.qid for e in batch]]
        return self.formatter.format_frame(rows, self.student.tokenizer)

    def _plan_documents(self, step: int) -> None:
        """Fix the document cache's encoding groups for every epoch up to ``step``'s, in order, so that a resumed
        run encodes each document with the same other documents as an uninterrupted one."""
        per_epoch, total = self.plan["steps_per_epoch"], self.plan["total_steps"]
        while self.cache.enabled and self._planned_epochs <= step // per_epoch:
            first = self._planned_epochs * per_epoch
            self.cache.plan([d for e in self.batch(s, m) for d in e.docnos]
                            for s in range(first, min(first + per_epoch, total)) for m in range(self.config.grad_accum))
            self._planned_epochs += 1

    # -- one step ----------------------------------------------------------------------------------
    def compute_loss(self, batch: List[TrainingExample], step: int) -> Dict[str, torch.Tensor]:
        q = own = self.student(self.query_texts(batch))  # own: the student's part, before the utterance's vector
        student_terms = l0(own.detach())
        if self.config.utterance_weight:
            with torch.no_grad():
                utterances = self.doc_model(list(self.conversations.loc[[e.qid for e in batch], "query"]))
            q = q + self.config.utterance_weight * utterances
        n_cand = len(batch[0].docnos)
        doc_matrix = self.cache.matrix([d for e in batch for d in e.docnos])
        docs = torch.from_numpy(doc_matrix.toarray()).to(q.device).view(len(batch), n_cand, -1)
        teacher = torch.tensor(np.stack([e.teacher_scores for e in batch]), device=q.device)
        teacher_q = None
        if self.loss.needs_teacher_queries:
            with torch.no_grad():
                rewrites = list(self.conversations.loc[[e.qid for e in batch], self.config.mse_teacher])
                teacher_q = self.doc_model(rewrites)
        parts = self.loss_at(step).compute(q, docs, teacher, teacher_q, n_positives=batch[0].n_positives)
        guarded = own if self.config.anti_zero_on == "student" else None
        reg = self.sparsity.compute(q, doc_matrix, step + 1, own=guarded)  # frozen documents: from the non-zeros
        parts["loss"] = parts["loss"] + reg.pop("loss")
        parts.update(reg)
        parts["L0_student"] = student_terms
        return parts

    def loss_at(self, step: int) -> LossConfig:
        """The loss of optimiser step ``step`` (0-based): during ``infonce_warmup_steps`` the InfoNCE weight
        ramps up linearly. Early on the untrained conversation vector ranks the positive far down, and InfoNCE
        at a low temperature then dominates the loss and switches the student's own terms off (measured: from
        about 120 to under 1 within 25 steps), where KLD alone keeps 10-40 of them."""
        warmup = self.config.infonce_warmup_steps
        if step >= warmup:
            return self.loss
        return replace(self.loss, weight=self.loss.weight * (step + 1) / warmup)

    def accumulate(self, step: int) -> Dict[str, float]:
        """Zero the gradients and back-propagate the loss of optimiser step ``step`` (0-based): the mean
        over its non-empty micro-batches (the last step of an epoch may have fewer than ``grad_accum``).
        Returns the loss parts averaged the same way, for the log."""
        self.student.zero_grad(set_to_none=True)
        self._plan_documents(step)
        batches = [b for b in (self.batch(step, m) for m in range(self.config.grad_accum)) if b]
        totals: Dict[str, float] = {}
        for batch in batches:
            parts = self.compute_loss(batch, step)
            if not torch.isfinite(parts["loss"]):
                raise FloatingPointError(
                    f"the training loss is {parts['loss'].item()} at step {step + 1} (parts: "
                    + ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in parts.items()) +
                    "); lower the learning rate or the regularisation, or check the teacher scores")
            (parts["loss"] / len(batches)).backward()
            for k, v in parts.items():
                totals[k] = totals.get(k, 0.0) + float(v.detach()) / len(batches)
        return totals

    # -- checkpoints ---------------------------------------------------------------------------------
    def _checkpoints(self) -> List[Path]:
        return self.folder.checkpoints()

    def save_checkpoint(self, step: int, optimizer, scheduler) -> None:
        folder = self.out / f"checkpoint-{step:07d}"
        with self._write_failure(f"the checkpoint of step {step}"), \
                atomic_dir(folder, True, kind="disco_checkpoint") as tmp:
            save_model(self.student.mlm, str(tmp / "model.safetensors"))
            opt = optimizer.state_dict()
            save_file({f"{i}.{k}": v.contiguous() for i, st in opt["state"].items() for k, v in st.items()},
                      str(tmp / "optimizer.safetensors"))
            save_file(rng_state(), str(tmp / "rng.safetensors"))
            sched = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
            (tmp / "state.json").write_text(json.dumps(
                {"step": step, "param_groups": opt["param_groups"], "scheduler": sched}))
        self.folder.drop_checkpoints(keep=1)

    def load_checkpoint(self, path: Path, optimizer, scheduler) -> int:
        try:
            return self._load_checkpoint(path, optimizer, scheduler)
        except (ValueError, KeyError, SafetensorError) as e:
            raise CorruptFileError(f"the checkpoint {path} is damaged ({type(e).__name__}: {e}); delete it and "
                                   "rerun with --resume to train from the start, or pass --overwrite") from e

    def _load_checkpoint(self, path: Path, optimizer, scheduler) -> int:
        state = read_json(path / "state.json", "checkpoint state")
        load_model(self.student.mlm, str(path / "model.safetensors"), device=str(self.student.device))
        tensors = load_file(str(path / "optimizer.safetensors"))
        opt_state: Dict[int, dict] = {}
        for key, value in tensors.items():
            i, name = key.split(".", 1)
            opt_state.setdefault(int(i), {})[name] = value
        optimizer.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
        scheduler.load_state_dict({**state["scheduler"], "lr_lambdas": [None] * len(optimizer.param_groups)})
        set_rng_state(load_file(str(path / "rng.safetensors")))
        return state["step"]

    # -- the run ----------------------------------------------------------------------------------------
    def _recipe(self) -> dict:
        return {"config": asdict(self.config), "doc_model": self.doc_model.source,
                "base_model": self.student.source, "n_examples": len(self.examples(0)),
                "plan": self.plan, **self.provenance}

    def _prepare_folder(self, resume: bool, overwrite: bool) -> bool:
        """Check the output folder; returns True when resuming from a checkpoint."""
        return self.folder.prepare(json.loads(json.dumps(self._recipe())), resume, overwrite)

    def _log_writer(self, resumed_step: int):
        log_file = self.out / "train_log.csv"
        kept = []
        if resumed_step and log_file.exists():
            with open(log_file) as f:
                kept = [r for r in csv.DictReader(f) if int(r["step"]) <= resumed_step]
        with atomic_file(log_file) as f:
            writer = csv.DictWriter(f, LOG_FIELDS)
            writer.writeheader()
            writer.writerows(kept)
        f = open(log_file, "a", newline="")
        return f, csv.DictWriter(f, LOG_FIELDS)

    def train(self, resume: bool = False, overwrite: bool = False,
              time_budget_s: Optional[float] = None) -> DiSCo:
        """Run (or resume) training and save the student; returns it as a :class:`DiSCo`.

        ``time_budget_s`` stops early (saving the student as it is) once that much time has passed.
        """
        with output_lock(self.out):  # one writer per output folder
            return self._train(resume, overwrite, time_budget_s)

    def _train(self, resume: bool, overwrite: bool, time_budget_s: Optional[float]) -> DiSCo:
        cfg, plan = self.config, self.plan
        resuming = self._prepare_folder(resume, overwrite)
        torch.manual_seed(cfg.seed)
        params = [p for p in self.student.parameters() if p.requires_grad]
        optimizer = adamw(params, cfg.lr, cfg.weight_decay)
        from transformers import get_linear_schedule_with_warmup
        scheduler = get_linear_schedule_with_warmup(optimizer, plan["warmup_steps"], plan["total_steps"])
        step = self.load_checkpoint(self._checkpoints()[-1], optimizer, scheduler) if resuming else 0
        log_file, log = self._log_writer(step)
        self.student.mlm.train()
        started = time.monotonic()
        bar = pt.tqdm(total=plan["total_steps"], initial=step, desc="training DiSCo", unit="step",
                      disable=not self.verbose)
        totals: Dict[str, float] = {}
        try:
            while step < plan["total_steps"]:
                if time_budget_s is not None and time.monotonic() - started > time_budget_s:
                    break
                totals = self.accumulate(step)
                optimizer.step()
                scheduler.step()
                step += 1
                log.writerow({"step": step, "epoch": step / plan["steps_per_epoch"],
                              "lr": scheduler.get_last_lr()[0], **{k: totals.get(k, "") for k in LOG_FIELDS[3:]}})
                log_file.flush()
                bar.update(1)
                bar.set_postfix(loss=f"{totals.get('loss', float('nan')):.4f}")
                if step % cfg.checkpoint_every == 0 and step < plan["total_steps"]:
                    self.save_checkpoint(step, optimizer, scheduler)
        finally:
            bar.close()
            log_file.close()
        if step and totals.get("L0_student", 1.0) == 0:
            remedies = "another seed, a lower lr or the disco loss"
            if self.loss.weighs_infonce and not cfg.infonce_warmup_steps:
                warmup = f"--infonce-warmup-steps, e.g. {plan['steps_per_epoch']}"
                remedies = f"infonce_warmup_steps ({warmup}), {remedies}"
            if cfg.utterance_weight:
                remedies = f"anti_zero_on='student' (--anti-zero-on student), {remedies}"
            warnings.warn("the student's own query vectors were empty over the last step (L0_student 0 in "
                          "train_log.csv): it has collapsed and " + (
                              "adds nothing to the utterance's vector" if cfg.utterance_weight else "retrieves nothing")
                          + f"; train again with {remedies}")
        self.student.mlm.eval()
        self.save_student(step)
        return DiSCo.from_models(self.student, self.doc_model, formatter=self.formatter, path=self.out,
                                 meta=read_json(self.out / "pt_meta.json"))

    def save_student(self, step: int) -> None:
        """Write the student (atomically: ``pt_meta.json`` last) and only then drop the checkpoints."""
        formatter = {"include_responses": self.formatter.include_responses,
                     "max_response_tokens": self.formatter.max_response_tokens,
                     "max_length": self.formatter.max_length, "sep": self.formatter.sep}
        meta = {"type": "disco_student", "format": "hf", "package_hint": "pyterrier-disco",
                "name": f"DiSCo({self.out.name})", "doc_model": self.doc_model.source,
                "max_length": self.config.max_length, "formatter": formatter,
                "utterance_weight": self.config.utterance_weight or 0.0, "steps": step,
                "recipe": self._recipe()}
        with self._write_failure("the trained student"):
            self.folder.commit_student(self.student.save, meta)

    @contextlib.contextmanager
    def _write_failure(self, what: str):
        """A failed write (a full disk: OSError, or SafetensorError from safetensors) says what is kept."""
        try:
            yield
        except (OSError, SafetensorError) as e:
            kept = self._checkpoints()
            then = (f"the last checkpoint ({kept[-1].name}) is kept: fix this and rerun with --resume"
                    if kept else "no checkpoint is kept")
            code, reason = getattr(e, "errno", None), getattr(e, "strerror", None) or str(e)
            found = re.search(r"\(os error (\d+)\)|Os \{ code: (\d+)", str(e))  # how safetensors reports it
            if code is None and found:
                code = int(found.group(1) or found.group(2))
                reason = os.strerror(code)
            raise OSError(code or errno.EIO, f"{what} could not be written ({reason}); {then}",
                          getattr(e, "filename", None) or str(self.out)) from e


def train(conversations: pd.DataFrame, teacher_run: pd.DataFrame, docs: DocSource, out, *,
          qrels: Optional[pd.DataFrame] = None, config: Optional[TrainConfig] = None, base_model=None,
          doc_model=None, device: Optional[str] = None, resume: bool = False, overwrite: bool = False,
          time_budget_s: Optional[float] = None, verbose: bool = True, provenance: Optional[dict] = None) -> DiSCo:
    """Train a DiSCo student on a conversation frame and a teacher run; returns the loaded student.

    Args:
        conversations: conversation frame (``qid, query, history`` and, for ``mse``, the rewrite column).
        teacher_run: ``qid, docno, score[, rank, teacher]`` (see :mod:`pyterrier_disco.train.teacher`).
        docs: docno -> text, a mapping or a function of a list of docnos.
        out: output folder (the student is saved there).
        qrels: ``qid, docno, label`` positives; ``None``: the teacher's top document is the positive.
        config: :class:`TrainConfig`.
        base_model / doc_model: student start point and document-side SPLADE (default: embedded SPLADE-tiny;
            the student starts from the document model).
        resume: continue from the last checkpoint in ``out``; overwrite: discard the previous training run
            ``out`` holds (only a DiSCo training folder, with ``run.json`` or a DiSCo student's
            ``pt_meta.json``, is deleted; any other non-empty folder raises ``FileExistsError``).
    """
    trainer = Trainer(conversations, teacher_run, docs, out, qrels=qrels, config=config, base_model=base_model,
                      doc_model=doc_model, device=device, verbose=verbose, provenance=provenance)
    return trainer.train(resume=resume, overwrite=overwrite, time_budget_s=time_budget_s)
