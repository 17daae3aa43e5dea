"""Recipe search with the transfer experiment: train one student per configuration on every collection but the
held-out one, evaluate it on the held-out set, and log every configuration with its figures.

    python experiments/recipe_search.py --data ../shared/data --held-out ikat/2023/train \\
        --config lr2e-4_e2:lr=2e-4,epochs=2 --config mse100:lr=2e-4,epochs=2,mse_weight=100 \\
        --log experiments/results/transfer_search.json

Each ``--config NAME:FIELD=VALUE,...`` changes :class:`~pyterrier_disco.train.TrainConfig` fields (the rest keep
their defaults). One pt.Experiment per configuration compares raw utterance, human rewrite, the student and the
student fused with the raw run (the untrained full context is in ``transfer.py``: it does not change with the
recipe). Students, indexes and teacher runs are cached under ``--work`` by their settings, so a configuration
already trained is only evaluated again. The log (JSON, one record per configuration and held-out set, replaced
when the same pair is run again) is also written as a Markdown table next to it.
"""
import argparse
import json
import time
from pathlib import Path

from _transfer import HELD_OUT, data_home, student, systems, targets, training_ids
from transfer import parse_settings

COLUMNS = ["RR", "nDCG@3", "R@10", "R@100", "q_len"]


def parse_config(text):
    name, _, settings = text.partition(":")
    return name, parse_settings([s for s in settings.split(",") if s]) if settings else {}


def markdown(records):
    lines = ["| held out | config | settings | student RR | nDCG@3 | R@100 | q_len | share of human RR | "
             "student+raw RR | nDCG@3 | raw RR | human RR | train s |", "|" + "---|" * 13]
    for r in records:
        s, f, raw, human = (r["systems"][k] for k in ("disco", "disco+raw", "raw", "human"))
        settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items()) or "defaults"
        lines.append(f"| {r['held_out']} | {r['config']} | {settings} | {s['RR']:.3f} | {s['nDCG@3']:.3f} | "
                     f"{s['R@100']:.3f} | {s['q_len']:.1f} | {s['RR'] / human['RR']:.2f} | {f['RR']:.3f} | "
                     f"{f['nDCG@3']:.3f} | {raw['RR']:.3f} | {human['RR']:.3f} | {r['train_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--held-out", default="ikat/2023/train", choices=list(HELD_OUT))
    p.add_argument("--config", action="append", required=True, metavar="NAME:FIELD=VALUE,...")
    p.add_argument("--data", default=None, help="folder of the official files (../shared/data)")
    p.add_argument("--work", default="runs/transfer", help="cache of indexes, teacher runs and students")
    p.add_argument("--log", default="experiments/results/transfer_search.json")
    p.add_argument("--device", default=None)
    args = p.parse_args()
    work = Path(args.work)
    data_home(args.data, work)

    import pyterrier_disco as disco
    from pyterrier_disco.evaluation import compare, format_table, summary_records
    from pyterrier_disco.index import dataset_index, index_folder
    from pyterrier_disco.train import TrainConfig

    splade = disco.Splade(device=args.device)
    ids = training_ids(args.held_out)
    eval_id = HELD_OUT[args.held_out][1]
    topics = disco.conversations(eval_id)
    index = dataset_index(eval_id, splade, index_folder(eval_id, splade, work / "indexes"))
    log = Path(args.log)
    records = json.loads(log.read_text()) if log.exists() else []
    for name, settings in map(parse_config, args.config):
        started = time.monotonic()
        model = student(ids, TrainConfig(**settings), splade, work, label=f"search-{name}", device=args.device)
        seconds = model.meta.get("train_seconds") or time.monotonic() - started
        summary, _ = compare(systems(splade, model, names=("raw", "human")), topics, disco.datasets.qrels(eval_id),
                             index, vocab=splade.doc_model.vocab_fingerprint)
        print(f"\n== {name} ({settings}); held out {args.held_out}")
        print(format_table(summary))
        record = {"held_out": args.held_out, "eval_dataset": eval_id, "config": name, "settings": settings,
                  "train_datasets": ids, "train_seconds": seconds,
                  "systems": {r["name"]: r for r in summary_records(summary)}, "targets": targets(summary)}
        records = [r for r in records if (r["held_out"], r["config"]) != (args.held_out, name)] + [record]
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(json.dumps(records, indent=2))
        log.with_suffix(".md").write_text(markdown(records))


if __name__ == "__main__":
    main()
