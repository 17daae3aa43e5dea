"""Table 5 (DiSCo): query rewriting vs. retrieval latency (ms per query, by stage).

    python experiments/table5_latency.py --dataset ikat/2023/train --student DIR [--llm MODEL] [--limit 20]

Reports, per system, the time spent rewriting (LLM), encoding and retrieving. The rewrite cache is disabled
here so that every LLM call is timed (the model is loaded before timing). With --student, the index and the
SPLADE baselines use the student's document model.
"""
from _lib import frame, llm_rewriter, parser, setup, write


def main():
    p = parser(__doc__)
    p.add_argument("--dataset", default="ikat/2023/train")
    p.add_argument("--student", default=None)
    args = p.parse_args()
    import pyterrier_disco as disco
    from pyterrier_disco.evaluation import compare, standard_systems

    student = disco.DiSCo.from_pretrained(args.student, device=args.device) if args.student else None
    work, splade, index = setup(args, args.dataset, doc_model=student.doc_model if student else None)
    students = {"disco": student} if student else {}
    llm = llm_rewriter(args, cache=False)
    names = ["raw", "llm"] + (["disco", "fusion"] if students else [])
    summary, _ = compare(standard_systems(names, splade, students=students, llm=llm), frame(args.dataset, args.limit),
                         disco.datasets.qrels(args.dataset), index, vocab=splade.doc_model.vocab_fingerprint)
    cols = ["label"] + [c for c in summary.columns if c.endswith("_ms_per_query")] + ["ms_per_query", "RR"]
    print(summary[cols].to_string(index=False))
    table = summary[["name"] + cols].astype(object)
    write(args, table.where(table.notna(), None).to_dict(orient="records"))  # stages a system lacks: null


if __name__ == "__main__":
    main()
