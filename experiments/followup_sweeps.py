"""The 2026 follow-up's sweeps: contrastive weight, sampling strategy, number of negatives, and sparsity
regularisation presets (query FLOPs vs. Recall@100).

    python experiments/followup_sweeps.py --sweep regularization --train topiocqa/train --test topiocqa/dev
    python experiments/followup_sweeps.py --sweep negatives --train disco-mini/train --test disco-mini/test \
        --limit 60 --max-steps 10          # a small run that fits this CPU machine
"""
from _lib import evaluate, parser, records, setup, student, write

SWEEPS = {
    "weight": [{"loss": "kld"}, {"loss": "followup", "infonce_weight": 0.01}, {"loss": "followup"},
               {"loss": "followup", "infonce_weight": 0.1}],
    "sampling": [{"strategy": s} for s in ("reference", "top", "uniform")],
    "negatives": [{"n_negatives": n} for n in (8, 16, 32, 70)],
    "regularization": [{"regularization": r} for r in ("off", "splade", "high", "higher", "highest")],
}


def main():
    p = parser(__doc__)
    p.add_argument("--sweep", required=True, choices=sorted(SWEEPS))
    p.add_argument("--train", default="topiocqa/train")
    p.add_argument("--test", default="topiocqa/dev")
    p.add_argument("--teachers", default="human")
    args = p.parse_args()
    work, splade, index = setup(args, args.test)
    teachers = args.teachers.split(",")
    students = {}
    for setting in SWEEPS[args.sweep]:
        label = ",".join(f"{k}={v}" for k, v in setting.items())
        students[label] = student(args.train, teachers, args, splade, index, work,
                                  f"sweep-{args.train.replace('/', '_')}-{label.replace('=', '-')}", **setting)
    summary = evaluate(args.test, ["raw", "disco"], splade, index, args, students=students)
    print(summary[["label", "R@100", "q_len", "FLOPs"]].to_string(index=False))
    write(args, records(summary, sweep=args.sweep))


if __name__ == "__main__":
    main()
