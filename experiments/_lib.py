"""Shared steps of the experiment scripts: index, teacher runs, training, evaluation, all cached in --work."""
import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pandas as pd

import pyterrier_disco as disco
from pyterrier_disco.evaluation import compare, dataset_index, format_table, standard_systems, summary_records
from pyterrier_disco.train import TrainConfig, build_teacher_run, load_teacher_run, resolve_teachers, save_teacher_run


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--limit", type=int, default=None, help="only the first N turns of each dataset (small runs)")
    p.add_argument("--work", default="runs/experiments", help="cache folder for indexes, runs and students")
    p.add_argument("--model", default=None, help="document-side SPLADE (paper: naver/splade-cocondenser-ensembledistil)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--max-steps", type=int, default=None, help="cap on training steps (small runs)")
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--lr", type=float, default=2e-5, help="learning rate (paper: 2e-5; short CPU runs: 2e-4)")
    p.add_argument("--device", default=None)
    p.add_argument("--out", default=None, help="JSON file for the table")
    return p


def frame(dataset: str, limit: Optional[int]) -> pd.DataFrame:
    f = disco.conversations(dataset)
    return f.head(limit) if limit else f


def teacher_run(dataset: str, teachers: Sequence[str], splade, index, work: Path, limit: Optional[int],
                k: int = 1000) -> pd.DataFrame:
    """The teacher run of ``dataset`` for ``teachers`` (one parquet per teacher, cached)."""
    conv = frame(dataset, limit)
    runs = []
    for name in teachers:
        path = work / f"{dataset.replace('/', '_')}.{name}.{limit or 'all'}.parquet"
        if path.exists():
            runs.append(load_teacher_run(path))
            continue
        run = build_teacher_run(conv, resolve_teachers([name], conv), splade, index, k=k)
        save_teacher_run(run, path)
        runs.append(run)
    combined = pd.concat(runs, ignore_index=True)
    combined.attrs["teacher_run"] = {**runs[0].attrs.get("teacher_run", {}), "teachers": list(teachers)}
    return combined


def student(dataset: str, teachers: Sequence[str], args, splade, index, work: Path, name: str, **config):
    """Train (or reuse) a student on ``dataset`` with ``teachers`` and extra TrainConfig fields."""
    from pyterrier_disco.train import train

    out = work / "students" / name
    cfg = TrainConfig(epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr, **config)
    if (out / "pt_meta.json").exists():
        trained = disco.DiSCo.from_pretrained(out, device=args.device)
        if trained.meta["recipe"]["config"] != asdict(cfg):
            raise FileExistsError(f"{out} holds a student trained with other settings; remove it or use another --work")
        return trained
    run = teacher_run(dataset, teachers, splade, index, work, args.limit)
    try:
        positives = disco.datasets.qrels(dataset)
    except ValueError:
        positives = None
    return train(frame(dataset, args.limit), run, disco.datasets.doc_lookup(dataset), out, qrels=positives,
                 config=cfg, doc_model=splade.doc_model, device=args.device, resume=True,
                 provenance={"dataset": dataset, "teachers": list(teachers)})


def evaluate(dataset: str, systems: List[str], splade, index, args, students: Dict[str, object] = None,
             llm=None) -> pd.DataFrame:
    topics = frame(dataset, args.limit)
    chosen = standard_systems(systems, splade, students=students or {}, llm=llm)
    summary, _ = compare(chosen, topics, disco.datasets.qrels(dataset), index)
    print(f"\n== {dataset} ({len(topics)} turns)")
    print(format_table(summary))
    return summary


def setup(args, dataset: str):
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    splade = disco.Splade(args.model, device=args.device)
    return work, splade, dataset_index(dataset, splade, work / "indexes" / dataset.replace("/", "_"))


def write(args, records: List[dict]) -> None:
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(records, indent=2))
        print(f"written: {args.out}")


def records(summary: pd.DataFrame, **extra) -> List[dict]:
    return [{**r, **extra} for r in summary_records(summary)]
