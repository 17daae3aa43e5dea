"""Table 4 (DiSCo): zero-shot evaluation of a student on TREC CAsT 2020, CAsT 2022 and iKAT 2023.

    python experiments/table4_zero_shot.py --student runs/topiocqa-student [--datasets ...] [--limit N]

The CAsT collections (38M / 106M passages) must be indexed with the student's document model (GPU advised);
ikat/2023/train runs here on its provenance passages.
"""
from _lib import evaluate, llm_rewriter, parser, records, setup, write


def main():
    p = parser(__doc__)
    p.add_argument("--student", required=True, help="DiSCo student folder")
    p.add_argument("--datasets", nargs="+", default=["trec-cast/v1/2020", "trec-cast/v3/2022", "ikat/2023/train"])
    p.add_argument("--systems", default="raw,fc,human,disco", help="comma-separated: raw, fc, human, llm, disco, "
                   "fusion (llm and fusion rewrite with --llm)")
    args = p.parse_args()
    import pyterrier_disco as disco

    student = disco.DiSCo.from_pretrained(args.student, device=args.device)
    systems = args.systems.split(",")
    llm = llm_rewriter(args) if {"llm", "fusion"} & set(systems) else None  # loaded once, for every dataset
    out = []
    for dataset in args.datasets:
        # indexes and baselines use the student's document model (--model is ignored here)
        work, splade, index = setup(args, dataset, doc_model=student.doc_model)
        summary = evaluate(dataset, systems, splade, index, args, students={"disco": student}, llm=llm)
        out += records(summary, dataset=dataset)
    write(args, out)


if __name__ == "__main__":
    main()
