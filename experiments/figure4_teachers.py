"""Figure 4 (DiSCo): students distilled from different teacher combinations.

    python experiments/figure4_teachers.py --train topiocqa/train --test topiocqa/dev \
        --combinations human llm human,llm [--limit N]
"""
from _lib import evaluate, parser, records, setup, student, write


def main():
    p = parser(__doc__)
    p.add_argument("--train", default="topiocqa/train")
    p.add_argument("--test", default="topiocqa/dev")
    p.add_argument("--combinations", nargs="+", default=["human", "llm", "human,llm"])
    args = p.parse_args()
    work, splade, index = setup(args, args.test)
    students = {}
    for combo in args.combinations:
        teachers = combo.split(",")
        students[f"disco[{combo}]"] = student(args.train, teachers, args, splade, index, work,
                                              f"fig4-{args.train.replace('/', '_')}-{'+'.join(teachers)}")
    summary = evaluate(args.test, ["raw", "human", "disco"], splade, index, args, students=students)
    write(args, records(summary))


if __name__ == "__main__":
    main()
