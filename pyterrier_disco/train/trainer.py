"""The DiSCo trainer: distil teacher retrieval scores into a conversation query encoder.

The document encoder is frozen, so each candidate document is encoded once and its sparse vector cached
(the reference code re-encodes every candidate at every step). The student starts from the document-side
SPLADE checkpoint unless another is given.

Output folder while training: ``run.json`` (the recipe), ``train_log.csv`` (loss parts per step) and
``checkpoint-<step>/`` folders (model, optimizer, scheduler, RNG and data position; each written to a temp
folder and renamed). When training ends the student (safetensors, tokenizer, config) and its
``pt_meta.json`` are written; ``DiSCo.from_pretrained(out)`` loads it.
"""
import csv
import json
import math
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pandas as pd
import pyterrier as pt
import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from .._utils import atomic_dir, atomic_file, write_json
from ..conversation import ConversationFormatter
from ..encoders import SpladeModel
from ..student import DiSCo
from .checkpoint import adamw, rng_state, set_rng_state
from .config import TrainConfig
from .documents import DocSource, DocumentCache
from .sampling import TrainingExample, build_examples
from .teacher import check_teacher_run

LOG_FIELDS = ["step", "epoch", "lr", "loss", "kld", "infonce", "mse", "flops_d", "l1_q", "anti_zero", "L0_q"]


def _plan(n_examples: int, config: TrainConfig) -> Dict[str, int]:
    batches = math.ceil(n_examples / config.batch_size)
    steps_per_epoch = math.ceil(batches / config.grad_accum)
    total = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    return {"batches_per_epoch": batches, "steps_per_epoch": steps_per_epoch, "total_steps": total,
            "warmup_steps": math.ceil(config.warmup_ratio * total)}


def _is_training_folder(folder: Path) -> bool:
    """True when ``folder`` holds a DiSCo training run (``run.json``) or a trained DiSCo student."""
    if (folder / "run.json").is_file():
        return True
    try:
        return json.loads((folder / "pt_meta.json").read_text()).get("type") == "disco_student"
    except (OSError, ValueError, AttributeError):
        return False


class Trainer:
    """Trains a DiSCo student; see :func:`train` for the usual entry point."""

    def __init__(self, conversations: pd.DataFrame, teacher_run: pd.DataFrame, docs: DocSource, out,
                 *, qrels: Optional[pd.DataFrame] = None, config: Optional[TrainConfig] = None,
                 base_model=None, doc_model=None, device: Optional[str] = None, verbose: bool = True,
                 provenance: Optional[dict] = None):
        self.config = config or TrainConfig()
        self.out = Path(out)
        self.verbose = verbose
        missing = [c for c in ("qid", "query", "history") if c not in conversations.columns]
        if missing:
            raise KeyError(f"the conversation frame lacks column(s) {missing}")
        self.conversations = conversations.assign(qid=conversations["qid"].astype(str)).set_index("qid", drop=False)
        self.teacher_run = teacher_run
        self.qrels = qrels
        self.provenance = provenance or {}
        self.doc_model = doc_model if isinstance(doc_model, SpladeModel) else SpladeModel(doc_model, device=device)
        self.doc_model.requires_grad_(False)
        if teacher_run.attrs.get("teacher_run"):
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
            raise KeyError(f"the mse loss imitates the rewrite column {self.config.mse_teacher!r} "
                           "(TrainConfig.mse_teacher / --mse-teacher), which the conversation frame lacks; "
                           f"available rewrite columns: {', '.join(map(repr, rewrites)) or 'none'}")
        self.sparsity = self.config.sparsity_config()
        self.cache = DocumentCache(self.doc_model, docs, enabled=self.config.cache_documents)
        self.examples_of_epoch = {}
        self.plan = _plan(len(self.examples(0)), self.config)

    # -- data --------------------------------------------------------------------------------------
    def examples(self, epoch: int) -> List[TrainingExample]:
        """The epoch's examples: negatives are re-drawn every epoch, as in the reference code."""
        if epoch not in self.examples_of_epoch:
            self.examples_of_epoch = {epoch: build_examples(
                self.conversations.reset_index(drop=True), self.teacher_run, self.qrels,
                n_negatives=self.config.n_negatives, strategy=self.config.strategy,
                seed=(self.config.seed, epoch), missing_positive=self.config.missing_positive,
                aggregate=self.config.aggregate)}
            if not self.examples_of_epoch[epoch]:
                raise ValueError("no training example: no conversation turn has both a teacher run and a positive")
        return self.examples_of_epoch[epoch]

    def batch(self, step: int, micro: int) -> List[TrainingExample]:
        """Micro-batch ``micro`` of optimiser step ``step`` (0-based); the order is a seeded shuffle per epoch."""
        epoch, in_epoch = divmod(step, self.plan["steps_per_epoch"])
        examples = self.examples(epoch)
        order = np.random.default_rng((self.config.seed, epoch, 1)).permutation(len(examples))
        b = in_epoch * self.config.grad_accum + micro
        return [examples[i] for i in order[b * self.config.batch_size:(b + 1) * self.config.batch_size]]

    def query_texts(self, batch: List[TrainingExample]) -> List[str]:
        rows = self.conversations.loc[[e.qid for e in batch]]
        return self.formatter.format_frame(rows, self.student.tokenizer)

    # -- one step ----------------------------------------------------------------------------------
    def compute_loss(self, batch: List[TrainingExample], step: int) -> Dict[str, torch.Tensor]:
        q = self.student(self.query_texts(batch))
        n_cand = len(batch[0].docnos)
        doc_matrix = self.cache.matrix([d for e in batch for d in e.docnos])
        docs = torch.from_numpy(doc_matrix.toarray()).to(q.device).view(len(batch), n_cand, -1)
        teacher = torch.tensor(np.stack([e.teacher_scores for e in batch]), device=q.device)
        teacher_q = None
        if self.loss.needs_teacher_queries:
            with torch.no_grad():
                rewrites = list(self.conversations.loc[[e.qid for e in batch], self.config.mse_teacher])
                teacher_q = self.doc_model(rewrites)
        parts = self.loss.compute(q, docs, teacher, teacher_q)
        reg = self.sparsity.compute(q, doc_matrix, step + 1)  # frozen documents: their terms from the non-zeros
        parts["loss"] = parts["loss"] + reg.pop("loss")
        parts.update(reg)
        return parts

    def accumulate(self, step: int) -> Dict[str, float]:
        """Zero the gradients and back-propagate the loss of optimiser step ``step`` (0-based): the mean
        over its non-empty micro-batches (the last step of an epoch may have fewer than ``grad_accum``).
        Returns the loss parts averaged the same way, for the log."""
        self.student.zero_grad(set_to_none=True)
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
        return sorted(self.out.glob("checkpoint-*[0-9]"), key=lambda p: int(p.name.split("-")[1]))

    def save_checkpoint(self, step: int, optimizer, scheduler) -> None:
        with atomic_dir(self.out / f"checkpoint-{step:07d}", overwrite=True) as tmp:
            save_model(self.student.mlm, str(tmp / "model.safetensors"))
            opt = optimizer.state_dict()
            save_file({f"{i}.{k}": v.contiguous() for i, st in opt["state"].items() for k, v in st.items()},
                      str(tmp / "optimizer.safetensors"))
            save_file(rng_state(), str(tmp / "rng.safetensors"))
            sched = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
            (tmp / "state.json").write_text(json.dumps(
                {"step": step, "param_groups": opt["param_groups"], "scheduler": sched}))
        for old in self._checkpoints()[:-1]:
            shutil.rmtree(old, ignore_errors=True)

    def load_checkpoint(self, path: Path, optimizer, scheduler) -> int:
        state = json.loads((path / "state.json").read_text())
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
        run_file = self.out / "run.json"
        recipe = self._recipe()
        if self.out.exists() and not self.out.is_dir():
            raise FileExistsError(f"{self.out} exists and is not a folder; choose another --out")
        if self.out.exists() and any(self.out.iterdir()):
            if overwrite:
                if not _is_training_folder(self.out):
                    raise FileExistsError(f"{self.out} is not empty and is not a DiSCo training folder (no run.json "
                                          "nor a DiSCo student's pt_meta.json): --overwrite only replaces a "
                                          "previous training run; choose another --out or empty it yourself")
                shutil.rmtree(self.out)
            elif not run_file.exists():
                raise FileExistsError(f"{self.out} exists and is not a DiSCo training folder; "
                                      "choose another --out or pass --overwrite")
            else:
                previous = json.loads(run_file.read_text())
                if previous != json.loads(json.dumps(recipe)):
                    raise FileExistsError(f"{self.out} holds a different training run (see {run_file}); "
                                          "choose another --out or pass --overwrite")
                if (self.out / "pt_meta.json").exists():
                    raise FileExistsError(f"{self.out} already holds this trained student; pass --overwrite "
                                          "to train it again")
                if not resume:
                    raise FileExistsError(f"{self.out} holds an unfinished run of this recipe: pass --resume to "
                                          "continue it or --overwrite to start again")
                return bool(self._checkpoints())
        self.out.mkdir(parents=True, exist_ok=True)
        write_json(run_file, recipe)
        return False

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
        self.student.mlm.eval()
        self.save_student(step)
        return DiSCo(self.student, self.doc_model, formatter=self.formatter,
                     meta=json.loads((self.out / "pt_meta.json").read_text()))

    def save_student(self, step: int) -> None:
        tmp = Path(str(self.out) + ".student.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.student.save(tmp)
        for f in tmp.iterdir():
            os.replace(f, self.out / f.name)
        tmp.rmdir()
        formatter = {"include_responses": self.formatter.include_responses,
                     "max_response_tokens": self.formatter.max_response_tokens,
                     "max_length": self.formatter.max_length, "sep": self.formatter.sep}
        write_json(self.out / "pt_meta.json", {
            "type": "disco_student", "format": "hf", "package_hint": "pyterrier-disco",
            "name": f"DiSCo({self.out.name})", "doc_model": self.doc_model.source,
            "max_length": self.config.max_length, "formatter": formatter, "steps": step,
            "recipe": self._recipe()})
        for ckpt in self._checkpoints():
            shutil.rmtree(ckpt, ignore_errors=True)


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
