"""Table 3 (DiSCo): in-domain training and evaluation on TopiOCQA and QReCC.

    python experiments/table3_in_domain.py --datasets topiocqa qrecc [--teachers human,llm] [--limit N]

Full scale needs the official collections (25M / 54M passages) under $IR_DATASETS_HOME and a GPU.
"""
from _lib import evaluate, llm_rewriter, parser, records, setup, student, write

SPLITS = {"topiocqa": ("topiocqa/train", "topiocqa/dev"), "qrecc": ("qrecc/train", "qrecc/test"),
          "ikat": ("ikat/2023/train", "ikat/2023/train"), "disco-mini": ("disco-mini/train", "disco-mini/test")}


def main():
    p = parser(__doc__)
    p.add_argument("--datasets", nargs="+", default=["topiocqa", "qrecc"], choices=sorted(SPLITS))
    p.add_argument("--teachers", default="human", help="comma-separated teacher names (human, llm, t5, ...)")
    p.add_argument("--systems", default="raw,fc,human,disco", help="comma-separated: raw, fc, human, llm, disco, "
                   "fusion (llm and fusion rewrite with --llm)")
    args = p.parse_args()
    systems = args.systems.split(",")
    llm = llm_rewriter(args) if {"llm", "fusion"} & set(systems) else None  # loaded once, for every dataset
    out = []
    for name in args.datasets:
        train_id, test_id = SPLITS[name]
        work, splade, index = setup(args, test_id)
        teachers = args.teachers.split(",")
        s = student(train_id, teachers, args, splade, index, work, f"{name}-{'+'.join(teachers)}")
        summary = evaluate(test_id, systems, splade, index, args, students={"disco": s}, llm=llm)
        out += records(summary, dataset=test_id, teachers=teachers)
    write(args, out)


if __name__ == "__main__":
    main()
