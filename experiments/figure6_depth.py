"""Figure 6 (DiSCo): performance (left) and query sparsity (right, non-zero query terms) by conversation depth on
TopiOCQA (dev), for DiSCo (Mistral teacher), convSPLADE (trained with InfoNCE on the qrels only) and SPLADE
MistralQR. The paper does not name the left panel's measure; MRR (RR) is drawn, --metric changes it.

    python experiments/figure6_depth.py --model naver/splade-cocondenser-ensembledistil          # the paper's
    python experiments/figure6_depth.py --train disco-mini/train --test disco-mini/test --teacher human \\
        --lr 2e-4 --epochs 2 --limit 60                                                           # small, on CPU
"""
from _lib import (check_splits, evaluate, parser, records, rewrite_systems, setup, student, student_systems,
                  students, teachers, write)


def main():
    from pyterrier.measures import RR, R, nDCG

    p = parser(__doc__)
    p.add_argument("--train", default="topiocqa/train", help="training split of the students")
    p.add_argument("--test", default="topiocqa/dev", help="test split")
    p.add_argument("--teacher", default="llm=mistral", help="teacher of DiSCo and of the rewrite row")
    p.add_argument("--metric", default="RR", choices=["RR", "R@100", "nDCG@3"], help="left panel's measure")
    p.add_argument("--max-turn", type=int, default=12, help="deeper turns are pooled as '<max-turn>+'")
    p.add_argument("--plot", default="runs/figure6.png", help="PNG of the two panels")
    p.add_argument("--per-turn", default=None, help="CSV of the per-turn measures and query lengths")
    args = p.parse_args()
    check_splits(args.train, args.test)
    from pyterrier_disco.plots import plot_by_depth

    work, splade, index = setup(args, args.test)
    teacher_map = teachers(args.teacher, args.train, args)
    trained = students(args.train, [args.teacher], args, splade, work, "figure6")
    trained["convSPLADE"] = student(args.train, teacher_map, args, splade, work,
                                    f"convsplade-{args.train.replace('/', '_')}", loss="infonce")
    systems = rewrite_systems(teachers(args.teacher, args.test, args), splade) + student_systems(trained)
    summary, per_turn = evaluate(args.test, systems, splade, index, args, measures=[RR, R @ 100, nDCG @ 3])
    labels = dict(zip(summary["name"], summary["label"]))
    depth = per_turn.assign(system=per_turn["system"].map(labels))
    print("written: " + str(plot_by_depth(depth, args.plot, metric=args.metric, max_turn=args.max_turn,
                                          title="Performance and query length by conversation depth")))
    if args.per_turn:
        depth.to_csv(args.per_turn, index=False)
    write(args, records(summary, dataset=args.test, trained_on=args.train))


if __name__ == "__main__":
    main()
