"""Figure 4 (DiSCo): teacher selection on QReCC (test), students trained on QReCC train; y axis Recall@100.

Left panel: each teacher's rewrite >> SPLADE ("SPLADE QR") next to the DiSCo student distilled from it, for
Llama (T1), Mistral (T2) and Human (T3). Right panel: students distilled from the teacher sets T1, T1-T2,
T1-T2-T3 and T2-T3 (the paper's best set, in red there). Writes the two panels as a PNG (--plot).

    python experiments/figure4_teachers.py --model naver/splade-cocondenser-ensembledistil    # the paper's
    python experiments/figure4_teachers.py --train disco-mini/train --test disco-mini/test --teachers human,llm \\
        --sets human human,llm --lr 2e-4 --epochs 3 --limit 60                               # small, on CPU
"""
from _lib import (check_splits, evaluate, parser, records, rewrite_systems, setup, student_systems, students, teachers,
                  write)


def main():
    from pyterrier.measures import R

    p = parser(__doc__)
    p.add_argument("--train", default="qrecc/train", help="training split of the students")
    p.add_argument("--test", default="qrecc/test", help="test split")
    p.add_argument("--teachers", default="llm=llama,llm=mistral,human",
                   help="left panel: each teacher's rewrite and its single-teacher student (comma-separated)")
    p.add_argument("--sets", nargs="+", default=["llm=llama", "llm=llama,llm=mistral", "llm=llama,llm=mistral,human",
                                                 "llm=mistral,human"],
                   help="right panel: one student per teacher set (each comma-separated)")
    p.add_argument("--plot", default="runs/figure4.png", help="PNG of the two panels")
    args = p.parse_args()
    check_splits(args.train, args.test)
    import pandas as pd

    from pyterrier_disco.plots import plot_bars

    work, splade, index = setup(args, args.test)
    rows = teachers(args.teachers, args.test, args)
    singles = students(args.train, list(rows), args, splade, work, "figure4")
    multi = students(args.train, args.sets, args, splade, work, "figure4")
    rewrites = rewrite_systems(rows, splade)
    summary, _ = evaluate(args.test, rewrites + student_systems({**singles, **multi}), splade, index, args,
                          measures=[R @ 100, R @ 10])
    left = summary[summary["name"].isin([s.name for s in rewrites] + list(singles))]
    right = summary[summary["name"].isin(list(multi))]
    panels = pd.concat([left.assign(panel="SPLADE QR and DiSCo, per teacher"),
                        right.assign(panel="Students with multi-teachers")])
    print("written: " + str(plot_bars(panels, args.plot, y="R@100")))
    write(args, records(summary, dataset=args.test, trained_on=args.train))

if __name__ == "__main__":
    main()
