"""The 2026 follow-up's sweeps (arXiv 2606.04650; configs of github Janhutter/disco-conv-splade, conf/ at
e619182): students trained on TopiOCQA train with the Mistral teacher for 7 epochs, evaluated on TopiOCQA dev
with MRR (no cutoff; the follow-up's "MRR" is mrr_1000), MRR@10 (what its configs monitor), R@10, R@100, nDCG@3,
query length and FLOPs.

Sweeps and their values, each a setting of `disco train` (TrainConfig):
  weight          InfoNCE weight w of (1 - w) KLD + w InfoNCE, tau 0.08: 0 (KLD alone), 0.05, 0.10, 0.20
  negatives       1, 8, 16, 32, 70 negatives ("standard" loss: 0.99 KLD + 0.01 CE, the disco preset)
  positives       1 and 16 positives (16: the "improved" soft-positive setup, no reported result)
  sampling        reference / top / uniform negative sampling (this project's; the follow-up keeps reference)
  regularization  the sparsity presets: off, followup-low, paper, followup-high, followup-readme-higher,
                  followup-readme-highest

    python experiments/followup_sweeps.py --sweep regularization --model naver/splade-cocondenser-ensembledistil
    python experiments/followup_sweeps.py --sweep negatives --train disco-mini/train --test disco-mini/test \\
        --teachers human --max-steps 30 --lr 2e-4 --limit 200                                   # small, on CPU
"""
from _lib import check_splits, evaluate, parser, records, setup, student, student_systems, teachers, write

SWEEPS = {
    "weight": [{"loss": "kld"}] + [{"loss": "followup", "infonce_weight": w} for w in (0.05, 0.10, 0.20)],
    "negatives": [{"n_negatives": n} for n in (1, 8, 16, 32, 70)],
    "positives": [{"n_positives": n} for n in (1, 16)],
    "sampling": [{"strategy": s} for s in ("reference", "top", "uniform")],
    "regularization": [{"regularization": r} for r in ("off", "followup-low", "paper", "followup-high",
                                                       "followup-readme-higher", "followup-readme-highest")],
}


def main():
    from pyterrier.measures import RR, R, nDCG

    p = parser(__doc__, epochs=7)
    p.add_argument("--sweep", required=True, choices=sorted(SWEEPS))
    p.add_argument("--train", default="topiocqa/train", help="training split of the students")
    p.add_argument("--test", default="topiocqa/dev", help="test split")
    p.add_argument("--teachers", default="llm=mistral", help="teacher set of every student (comma-separated)")
    args = p.parse_args()
    check_splits(args.train, args.test)
    work, splade, index = setup(args, args.test)
    teacher_map = teachers(args.teachers, args.train, args)
    trained = {}
    for setting in SWEEPS[args.sweep]:
        name = ",".join(f"{k}={v}" for k, v in setting.items())
        trained[name] = student(args.train, teacher_map, args, splade, work,
                                f"sweep-{args.train.replace('/', '_')}-{name.replace('=', '-')}", **setting)
    summary, _ = evaluate(args.test, student_systems(trained), splade, index, args,
                          measures=[RR, RR @ 10, R @ 10, R @ 100, nDCG @ 3])
    write(args, records(summary, sweep=args.sweep, dataset=args.test, trained_on=args.train))


if __name__ == "__main__":
    main()
