"""Shared steps of the experiment scripts: teachers, indexes, teacher runs, students and evaluation, all cached
in ``--work``.

Teachers are named with their model (``human``, ``t5``, ``llm=mistral``, ``llm=meta-llama/...``; see
:mod:`pyterrier_disco.train.teacher_specs`); the paper's are T0 = ``t5`` (castorini/t5-base-canard), T1 =
``llm=llama`` (meta-llama/Meta-Llama-3.1-8B-Instruct), T2 = ``llm=mistral`` (mistralai/Mistral-7B-Instruct-v0.2)
and T3 = ``human``, LLMs with the Table 2 one-shot prompt and the rewrite alone as the teacher query.

The library (torch, PyTerrier) is imported inside the functions, after the arguments are parsed, so that
``--help`` answers at once.
"""
import argparse
import hashlib
import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence

PAPER_TAGS = {"t5": "T0", "llm=meta-llama/Meta-Llama-3.1-8B-Instruct": "T1",
              "llm=mistralai/Mistral-7B-Instruct-v0.2": "T2", "human": "T3"}
# the splits of these datasets share one passage collection, so they share one index
COLLECTION_OF = {"topiocqa/train": "topiocqa/dev", "qrecc/train": "qrecc/test", "disco-mini/train": "disco-mini/test"}


class _Help(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The script's docstring as written, and each option's default where it has one its help does not give."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def parser(description: str, *, epochs: int = 5) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=_Help)
    p.add_argument("--limit", type=int, default=None,
                   help="only the first N turns of each dataset, for training and testing (small runs)")
    p.add_argument("--work", default="runs/experiments", help="cache folder for indexes, runs and students")
    p.add_argument("--model", default=None, help="document-side SPLADE and student start point (paper: "
                   "naver/splade-cocondenser-ensembledistil; default: the embedded SPLADE-tiny)")
    p.add_argument("--epochs", type=int, default=epochs, help="training epochs")
    p.add_argument("--max-steps", type=int, default=None, help="cap on training steps (small runs)")
    p.add_argument("--batch-size", type=int, default=10, help="training batch size (the paper's: 10)")
    p.add_argument("--lr", type=float, default=2e-5, help="learning rate (paper: 2e-5; short CPU runs: 2e-4)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available)")
    p.add_argument("--backend", default="transformers", choices=["transformers", "vllm"],
                   help="backend of the LLM teachers and LLM-rewrite baselines (vllm: GPU)")
    p.add_argument("--out", default=None, help="JSON file for the table")
    return p


def frame(dataset: str, limit: Optional[int]):
    import pyterrier_disco as disco

    f = disco.conversations(dataset)
    return f.head(limit) if limit else f


def label(teacher: str) -> str:
    """``T2 llm=mistralai/Mistral-7B-Instruct-v0.2`` for the paper's teachers, else the teacher's name."""
    return f"{PAPER_TAGS[teacher]} {teacher}" if teacher in PAPER_TAGS else teacher


def teachers(specs, dataset: str, args, *, cache=True) -> Dict[str, object]:
    """``{name: column or rewriter}`` for comma-separated teacher specs (or a list), checked against
    ``dataset``'s columns; LLMs get ``--backend`` / ``--device``."""
    from pyterrier_disco.train import resolve_teachers

    return resolve_teachers(specs, frame(dataset, 1), backend=args.backend, device=args.device, cache=cache)


def check_splits(train: str, test: str) -> None:
    if train == test:
        raise SystemExit(f"error: training and test split are both {train}; never train and test on the same "
                         "conversations")


def teacher_run(dataset: str, teacher_map: Dict[str, object], splade, index, work: Path, limit: Optional[int],
                k: int = 1000):
    """The teacher run of ``dataset`` for ``teacher_map``: one parquet per teacher, keyed by its name, model,
    prompt hash and policy, the document model and ``k``; a cached run built otherwise is refused."""
    import pandas as pd

    from pyterrier_disco.index import model_key
    from pyterrier_disco.train import (build_teacher_run, check_teacher_run, check_teachers, load_teacher_run,
                                       save_teacher_run)
    from pyterrier_disco.train.teacher_specs import COMPARED, teacher_info

    conv = frame(dataset, limit)
    runs, details = [], {}
    for name, teacher in teacher_map.items():
        identity = json.dumps({key: teacher_info(teacher).get(key) for key in COMPARED}, sort_keys=True)
        key = hashlib.sha1(identity.encode()).hexdigest()[:10]
        stem = (f"{dataset.replace('/', '_')}.{re.sub(r'[^A-Za-z0-9.-]+', '_', name)}.{key}.{limit or 'all'}."
                f"{model_key(splade)}.k{k}")
        path = work / "teacher_runs" / f"{stem}.parquet"
        if path.exists():
            run = load_teacher_run(path)
            check_teacher_run(run, splade.doc_model)
            check_teachers(run, {name: teacher})
        else:
            run = build_teacher_run(conv, {name: teacher}, splade, index, k=k)
            path.parent.mkdir(parents=True, exist_ok=True)
            save_teacher_run(run, path)
        details.update(run.attrs["teacher_run"]["teacher_details"])
        runs.append(run)
    combined = pd.concat(runs, ignore_index=True)
    combined.attrs["teacher_run"] = {**runs[0].attrs["teacher_run"], "teachers": list(teacher_map),
                                     "teacher_details": details}
    return combined


def student(dataset: str, teacher_map: Dict[str, object], args, splade, work: Path, name: str, **config):
    """Train (or reuse) a student on ``dataset`` with ``teacher_map`` and extra TrainConfig fields.

    The student lives in ``work/students/<name>`` (``<name>.limit<N>`` with ``--limit N``); a cached one is
    reused only if it was trained on the same dataset, turns, teachers, document model and settings.
    """
    import pyterrier_disco as disco
    from pyterrier_disco.train import TrainConfig, train
    from pyterrier_disco.train.config import DISCO_RELEASE

    out = work / "students" / (f"{name}.limit{args.limit}" if args.limit else name)
    cfg = TrainConfig(epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr,
                      **{**DISCO_RELEASE, **config})  # the paper's method, not the transfer recipe
    wanted = {"config": asdict(cfg), "dataset": dataset, "teachers": list(teacher_map), "limit": args.limit,
              "doc_model": splade.doc_model.source}
    if (out / "pt_meta.json").exists():
        trained = disco.DiSCo.from_pretrained(out, device=args.device)
        recipe = trained.meta.get("recipe", {})
        differ = sorted(k for k, v in json.loads(json.dumps(wanted)).items() if recipe.get(k) != v)
        if differ:
            raise FileExistsError(f"{out} holds a student trained with other settings ({', '.join(differ)} "
                                  "differ); remove it or use another --work")
        return trained
    run = teacher_run(dataset, teacher_map, splade, index_of(dataset, splade, work), work, args.limit)
    try:
        positives = disco.datasets.qrels(dataset)
    except ValueError:
        positives = None
    return train(frame(dataset, args.limit), run, disco.datasets.doc_lookup(dataset), out, qrels=positives,
                 config=cfg, doc_model=splade.doc_model, device=args.device, resume=True,
                 provenance={"dataset": dataset, "teachers": list(teacher_map), "limit": args.limit})


def students(dataset: str, sets: Sequence[str], args, splade, work: Path, prefix: str, **config) -> Dict[str, object]:
    """``{"DiSCo <set>": student}`` for teacher sets (each comma-separated specs), trained on ``dataset``."""
    out = {}
    for spec in sets:
        teacher_map = teachers(spec, dataset, args)
        tag = "+".join(PAPER_TAGS.get(t, t) for t in teacher_map)
        slug = re.sub(r"[^A-Za-z0-9.+-]+", "_", f"{prefix}-{dataset.replace('/', '_')}-{tag}")
        out[f"DiSCo {tag}"] = student(dataset, teacher_map, args, splade, work, slug, **config)
    return out


def rewrite_systems(teacher_map: Dict[str, object], splade) -> list:
    """One ``rewrite >> SPLADE`` system per teacher (the paper's "SPLADE xQR" rows)."""
    from pyterrier_disco.evaluation import System
    from pyterrier_disco.rewrite import Column

    return [System(name, f"SPLADE QR {label(name)}", splade.query_encoder(),
                   rewriter=Column(t) if isinstance(t, str) else t) for name, t in teacher_map.items()]


def student_systems(trained: Dict[str, object]) -> list:
    from pyterrier_disco.evaluation import System

    return [System(name, name, s.query_encoder()) for name, s in trained.items()]


def fusion_system(first, second):
    """The paper's fusion of two systems (mean of min-max normalised scores)."""
    from pyterrier_disco.evaluation import System

    return System("fusion", f"Fusion({first.label}, {second.label})", first.encoder, parts=[first, second])


def evaluate(dataset: str, systems: list, splade, index, args, measures=None, baseline: Optional[str] = None):
    """Compare ``systems`` on ``dataset``'s first ``--limit`` turns, print and return the table and per-turn
    frame."""
    import pyterrier_disco as disco
    from pyterrier_disco.evaluation import compare, format_table

    topics = frame(dataset, args.limit)
    summary, per_turn = compare(systems, topics, disco.datasets.qrels(dataset), index, baseline=baseline,
                                vocab=splade.doc_model.vocab_fingerprint, measures=measures)
    print(f"\n== {dataset} ({len(topics)} turns)")
    print(format_table(summary))
    return summary, per_turn


def index_of(dataset: str, splade, work: Path):
    """The index of ``dataset``'s passage collection under ``work/indexes``, one per collection and document
    model (the splits in :data:`COLLECTION_OF` share their collection's)."""
    from pyterrier_disco.index import dataset_index, index_folder

    collection = COLLECTION_OF.get(dataset, dataset)
    return dataset_index(collection, splade, index_folder(collection, splade, work / "indexes"))


def setup(args, dataset: str, doc_model=None):
    """``(work, splade, index)``: SPLADE with ``doc_model`` (a student's document model, loaded already)
    or ``--model``, and the index of ``dataset``'s collection."""
    import pyterrier_disco as disco

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if doc_model is not None and args.model and args.model != doc_model.source:
        print(f"--model {args.model} ignored: the student's document model ({doc_model.name}) encodes the passages")
    splade = disco.Splade(doc_model if doc_model is not None else args.model, device=args.device)
    return work, splade, index_of(dataset, splade, work)


def pretrained(specs: Sequence[str], device=None) -> Dict[str, object]:
    """``{label: student}`` from ``LABEL=FOLDER`` (or ``FOLDER``) arguments."""
    import pyterrier_disco as disco

    out = {}
    for spec in specs:
        name, sep, folder = spec.partition("=")
        out[name if sep else f"DiSCo {Path(spec).name}"] = disco.DiSCo.from_pretrained(folder if sep else spec,
                                                                                        device=device)
    return out


def write(args, records: List[dict]) -> None:
    if args.out:
        from pyterrier_disco._utils import atomic_file

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(Path(args.out)) as f:
            json.dump(records, f, indent=2)
        print(f"written: {args.out}")


def records(summary, **extra) -> List[dict]:
    from pyterrier_disco.evaluation import summary_records

    return [{**r, **extra} for r in summary_records(summary)]
