"""Transfer: leave one collection out, train a student on the others, evaluate on the one left out.

    python experiments/transfer.py --data ../shared/data --out runs/transfer/transfer.json [--llm]

For each held-out collection (``--held-out``; default both): a student is trained with the ``disco train``
recipe (``TrainConfig`` defaults; ``--set field=value`` changes one) on every other real collection with human
rewrites, and compared in ONE pt.Experiment on the held-out turns: raw utterance, full context (untrained), human
rewrite, the student, the student fused with the raw utterance run (0 LLM calls) and, with ``--llm``, the LLM
rewrite and the student fused with it. Prints the table, writes the JSON (systems, targets of issue 11) and,
per held-out set, ``results.csv/json``, ``per_turn.csv``, ``by_depth.png`` and ``tradeoff.png`` under ``--plots``.

Evaluation corpora: ``ikat/2023/train`` on its own 194 provenance passages with the official provenance qrels
(the plain dataset: 76 judged turns); ``trec-cast/v3/2022`` on its topic passages (the 199 responses, each turn's
own response its positive).
"""
import argparse
import json
from pathlib import Path

from _transfer import HELD_OUT, data_home, student, systems, targets, training_ids


def parse_settings(pairs):
    """``["lr=2e-4", "freeze_embeddings=true"]`` -> TrainConfig keyword arguments, typed by the fields."""
    from dataclasses import fields

    from pyterrier_disco.train import TrainConfig
    from pyterrier_disco.train.config import field_type

    types = {f.name: field_type(f) for f in fields(TrainConfig)}
    out = {}
    for pair in pairs or []:
        key, _, value = pair.partition("=")
        if key not in types:
            raise SystemExit(f"--set {pair}: unknown TrainConfig field {key!r} (fields: {', '.join(types)})")
        kind = types[key]
        if value.lower() == "none":
            out[key] = None
        elif kind is bool:
            out[key] = value.lower() in ("1", "true", "yes")
        else:
            out[key] = kind(value)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--held-out", nargs="+", default=list(HELD_OUT), choices=list(HELD_OUT),
                   help="collections to leave out, one at a time")
    p.add_argument("--eval", default=None, help="evaluation dataset instead of the held-out default (one held-out)")
    p.add_argument("--mini", action="store_true", help="also train on the project-written disco-mini")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="TrainConfig fields to change")
    p.add_argument("--data", default=None, help="folder of the official files (../shared/data) when "
                   "IR_DATASETS_HOME does not hold them: linked into WORK/irds")
    p.add_argument("--work", default="runs/transfer", help="cache of indexes, teacher runs and students")
    p.add_argument("--label", default=None, help="the cached students' label (default transfer-<held out>; "
                   "search-<config> reuses a recipe_search.py student of the same settings)")
    p.add_argument("--limit", type=int, default=None, help="first N turns of each training dataset (small runs)")
    p.add_argument("--eval-limit", type=int, default=None, help="first N held-out turns (small runs)")
    p.add_argument("--device", default=None)
    p.add_argument("--llm", nargs="?", const="default", default=None,
                   help="add the LLM rewrite and DiSCo + LLM fusion (optionally a model; default SmolLM2-135M)")
    p.add_argument("--backend", default="transformers", choices=["transformers", "vllm"])
    p.add_argument("--out", default=None, help="JSON file: per held-out set, the systems and the targets")
    p.add_argument("--plots", default=None, help="folder for per held-out tables and plots (default: next to --out)")
    args = p.parse_args()
    work = Path(args.work)
    data_home(args.data, work)

    import pyterrier_disco as disco
    from pyterrier_disco.evaluation import compare, format_table, summary_records, write_outputs
    from pyterrier_disco.index import dataset_index, index_folder
    from pyterrier_disco.train import TrainConfig

    config = TrainConfig(**parse_settings(args.set))
    splade = disco.Splade(device=args.device)
    llm = None
    if args.llm:
        from pyterrier_disco.rewrite import LLMRewriter
        llm = LLMRewriter(None if args.llm == "default" else args.llm, backend=args.backend, device=args.device)
    plots = Path(args.plots) if args.plots else (Path(args.out).parent if args.out else None)
    report = []
    for held_out in args.held_out:
        ids = training_ids(held_out, args.mini)
        label = args.label or f"transfer-{held_out.replace('/', '_')}"
        model = student(ids, config, splade, work, limit=args.limit, label=label, device=args.device)
        eval_id = args.eval or HELD_OUT[held_out][1]
        topics = disco.conversations(eval_id)
        topics = topics.head(args.eval_limit) if args.eval_limit else topics
        index = dataset_index(eval_id, splade, index_folder(eval_id, splade, work / "indexes"))
        summary, per_turn = compare(systems(splade, model, llm=llm), topics, disco.datasets.qrels(eval_id), index,
                                    vocab=splade.doc_model.vocab_fingerprint)
        print(f"\n== held out: {held_out}; evaluated on {eval_id} ({len(topics)} turns); trained on {', '.join(ids)}")
        print(format_table(summary))
        goals = targets(summary)
        print(json.dumps(goals, indent=1))
        report.append({"held_out": held_out, "eval_dataset": eval_id, "train_datasets": ids,
                       "student": str(model.meta.get("name")), "recipe": model.meta.get("recipe", {}).get("config"),
                       "systems": summary_records(summary), "targets": goals})
        if plots:
            write_outputs(summary, per_turn, plots / held_out.replace("/", "_"))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2))
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()
