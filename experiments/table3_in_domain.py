"""Table 3 (DiSCo): in-domain training and evaluation on TopiOCQA and QReCC.

    python experiments/table3_in_domain.py --datasets topiocqa qrecc [--teachers human,llm] [--limit N]

Full scale needs the official collections (25M / 54M passages) under $IR_DATASETS_HOME and a GPU.
"""
from _lib import evaluate, parser, records, setup, student, write

SPLITS = {"topiocqa": ("topiocqa/train", "topiocqa/dev"), "qrecc": ("qrecc/train", "qrecc/test"),
          "ikat": ("ikat/2023/train", "ikat/2023/train"), "disco-mini": ("disco-mini/train", "disco-mini/test")}


def main():
    p = parser(__doc__)
    p.add_argument("--datasets", nargs="+", default=["topiocqa", "qrecc"], choices=sorted(SPLITS))
    p.add_argument("--teachers", default="human", help="comma-separated teacher names (human, llm, t5, ...)")
    p.add_argument("--systems", default="raw,fc,human,disco")
    args = p.parse_args()
    out = []
    for name in args.datasets:
        train_id, test_id = SPLITS[name]
        work, splade, index = setup(args, test_id)
        teachers = args.teachers.split(",")
        s = student(train_id, teachers, args, splade, index, work, f"{name}-{'+'.join(teachers)}")
        summary = evaluate(test_id, args.systems.split(","), splade, index, args, students={"disco": s})
        out += records(summary, dataset=test_id, teachers=teachers)
    write(args, out)


if __name__ == "__main__":
    main()
