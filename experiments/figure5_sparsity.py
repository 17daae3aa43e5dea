"""Figure 5 (DiSCo): effectiveness vs efficiency on TopiOCQA (dev): MRR against query FLOPs (Eq. 7) for DiSCo
students trained with increasing sparsity regularisation, with the teachers' rewrite >> SPLADE as reference
points; the annotation of each point gives its average query length (the paper's "avg q_len").

The paper trains "the same DiSCo T5 model" at several (lambda_q, lambda_d) without listing them; the default
levels are this project's presets named after their source (off = the release, followup-low, paper (Section 4.3),
followup-high, followup-readme-higher, followup-readme-highest; see pyterrier_disco.train.regularization).

    python experiments/figure5_sparsity.py --model naver/splade-cocondenser-ensembledistil     # the paper's
    python experiments/figure5_sparsity.py --train disco-mini/train --test disco-mini/test --teacher human \\
        --references human --presets off followup-readme-highest --lr 2e-4 --epochs 2 --limit 60  # small, on CPU
"""
from _lib import (check_splits, evaluate, parser, records, rewrite_systems, setup, student, student_systems,
                  teachers, write)

PRESETS = ["off", "followup-low", "paper", "followup-high", "followup-readme-higher", "followup-readme-highest"]


def main():
    from pyterrier.measures import RR, R

    p = parser(__doc__)
    p.add_argument("--train", default="topiocqa/train", help="training split of the students")
    p.add_argument("--test", default="topiocqa/dev", help="test split")
    p.add_argument("--teacher", default="t5", help="teacher (set) of the students (the paper: DiSCo T5)")
    p.add_argument("--references", default="llm=mistral,t5", help="teachers drawn as reference points")
    p.add_argument("--presets", nargs="+", default=PRESETS, help="sparsity presets, one student each")
    p.add_argument("--warmup", type=int, default=0, help="sparsity warm-up steps T of every student")
    p.add_argument("--plot", default="runs/figure5.png", help="PNG of MRR against FLOPs")
    args = p.parse_args()
    check_splits(args.train, args.test)
    from pyterrier_disco.plots import plot_tradeoff

    work, splade, index = setup(args, args.test)
    teacher_map = teachers(args.teacher, args.train, args)
    trained = {f"DiSCo {args.teacher} [{preset}]":
               student(args.train, teacher_map, args, splade, work,
                       f"figure5-{args.train.replace('/', '_')}-{'+'.join(teacher_map)}-{preset}".replace("=", "_")
                       .replace("/", "_"), regularization=preset, sparsity_warmup_steps=args.warmup)
               for preset in args.presets}
    systems = rewrite_systems(teachers(args.references, args.test, args), splade) + student_systems(trained)
    summary, _ = evaluate(args.test, systems, splade, index, args, measures=[RR, R @ 100])
    points = summary.assign(point=[f"{n} (avg q_len {q:.1f})" for n, q in zip(summary["label"], summary["q_len"])])
    print("written: " + str(plot_tradeoff(points, args.plot, x="FLOPs", y="RR", label="point",
                                          title="MRR vs FLOPs across sparsity regularisation")))
    write(args, records(summary, dataset=args.test, trained_on=args.train))


if __name__ == "__main__":
    main()
