"""Shared steps of the experiment scripts: index, teacher runs, training, evaluation, all cached in --work.

The library (torch, PyTerrier) is imported inside the functions, after the arguments are parsed, so that
``--help`` answers at once.
"""
import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--limit", type=int, default=None, help="only the first N turns of each dataset (small runs)")
    p.add_argument("--work", default="runs/experiments", help="cache folder for indexes, runs and students")
    p.add_argument("--model", default=None,
                   help="document-side SPLADE (paper: naver/splade-cocondenser-ensembledistil); scripts given a "
                        "--student use the student's document model instead")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--max-steps", type=int, default=None, help="cap on training steps (small runs)")
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--lr", type=float, default=2e-5, help="learning rate (paper: 2e-5; short CPU runs: 2e-4)")
    p.add_argument("--device", default=None)
    p.add_argument("--llm", default=None,
                   help="rewriting LLM of the llm and fusion systems (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--backend", default="transformers", choices=["transformers", "vllm"], help="LLM backend")
    p.add_argument("--out", default=None, help="JSON file for the table")
    return p


def frame(dataset: str, limit: Optional[int]):
    import pyterrier_disco as disco

    f = disco.conversations(dataset)
    return f.head(limit) if limit else f


def llm_rewriter(args, *, cache=True):
    """The LLM rewriter of ``--llm`` / ``--backend`` / ``--device``."""
    from pyterrier_disco.rewrite import LLMRewriter

    return LLMRewriter(args.llm, backend=args.backend, device=args.device, cache=cache)


def teacher_run(dataset: str, teachers: Sequence[str], splade, index, work: Path, limit: Optional[int],
                k: int = 1000):
    """The teacher run of ``dataset`` for ``teachers`` (one parquet per teacher and document model, cached)."""
    import pandas as pd

    from pyterrier_disco.index import model_key
    from pyterrier_disco.train import (build_teacher_run, check_teacher_run, load_teacher_run, resolve_teachers,
                                       save_teacher_run)

    conv = frame(dataset, limit)
    runs = []
    for name in teachers:
        stem = f"{dataset.replace('/', '_')}.{name}.{limit or 'all'}.{model_key(splade)}.k{k}"
        path = work / "teacher_runs" / f"{stem}.parquet"
        if path.exists():
            run = load_teacher_run(path)
            check_teacher_run(run, splade.doc_model)
            runs.append(run)
            continue
        run = build_teacher_run(conv, resolve_teachers([name], conv), splade, index, k=k)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_teacher_run(run, path)
        runs.append(run)
    combined = pd.concat(runs, ignore_index=True)
    combined.attrs["teacher_run"] = {**runs[0].attrs.get("teacher_run", {}), "teachers": list(teachers)}
    return combined


def student(dataset: str, teachers: Sequence[str], args, splade, index, work: Path, name: str, **config):
    """Train (or reuse) a student on ``dataset`` with ``teachers`` and extra TrainConfig fields.

    The student lives in ``work/students/<name>`` (``<name>.limit<N>`` with ``--limit N``); a cached one is
    reused only if it was trained on the same dataset, turns, teachers, document model and settings.
    """
    import pyterrier_disco as disco
    from pyterrier_disco.train import TrainConfig, train

    out = work / "students" / (f"{name}.limit{args.limit}" if args.limit else name)
    cfg = TrainConfig(epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr,
                      **{"freeze_embeddings": False, **config})  # the paper trains the whole model
    wanted = {"config": asdict(cfg), "dataset": dataset, "teachers": list(teachers), "limit": args.limit,
              "doc_model": splade.doc_model.source}
    if (out / "pt_meta.json").exists():
        trained = disco.DiSCo.from_pretrained(out, device=args.device)
        recipe = trained.meta.get("recipe", {})
        differ = sorted(k for k, v in json.loads(json.dumps(wanted)).items() if recipe.get(k) != v)
        if differ:
            raise FileExistsError(f"{out} holds a student trained with other settings ({', '.join(differ)} "
                                  "differ); remove it or use another --work")
        return trained
    run = teacher_run(dataset, teachers, splade, index, work, args.limit)
    try:
        positives = disco.datasets.qrels(dataset)
    except ValueError:
        positives = None
    return train(frame(dataset, args.limit), run, disco.datasets.doc_lookup(dataset), out, qrels=positives,
                 config=cfg, doc_model=splade.doc_model, device=args.device, resume=True,
                 provenance={"dataset": dataset, "teachers": list(teachers), "limit": args.limit})


def evaluate(dataset: str, systems: List[str], splade, index, args, students: Dict[str, object] = None,
             llm=None):
    """Compare ``systems`` on ``dataset``'s first ``--limit`` turns and print the table; the llm and fusion
    systems get the ``--llm`` rewriter unless ``llm`` is given."""
    import pyterrier_disco as disco
    from pyterrier_disco.evaluation import compare, format_table, standard_systems

    topics = frame(dataset, args.limit)
    if llm is None and ("llm" in systems or "fusion" in systems):
        llm = llm_rewriter(args)
    chosen = standard_systems(systems, splade, students=students or {}, llm=llm)
    summary, _ = compare(chosen, topics, disco.datasets.qrels(dataset), index,
                         vocab=splade.doc_model.vocab_fingerprint)
    print(f"\n== {dataset} ({len(topics)} turns)")
    print(format_table(summary))
    return summary


def setup(args, dataset: str, doc_model=None):
    """``(work, splade, index)``: SPLADE with ``doc_model`` (a student's document model, loaded already)
    or ``--model``, and the index of ``dataset``'s passages under ``work/indexes``, one per document model."""
    import pyterrier_disco as disco
    from pyterrier_disco.index import dataset_index, index_folder

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if doc_model is not None and args.model and args.model != doc_model.source:
        print(f"--model {args.model} ignored: the student's document model ({doc_model.name}) encodes the passages")
    splade = disco.Splade(doc_model if doc_model is not None else args.model, device=args.device)
    return work, splade, dataset_index(dataset, splade, index_folder(dataset, splade, work / "indexes"))


def write(args, records: List[dict]) -> None:
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(records, indent=2))
        print(f"written: {args.out}")


def records(summary, **extra) -> List[dict]:
    from pyterrier_disco.evaluation import summary_records

    return [{**r, **extra} for r in summary_records(summary)]
