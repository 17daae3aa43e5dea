"""Figures 5 and 6 (DiSCo): effectiveness vs. cost, and effectiveness / query length by conversation depth.

    python experiments/figures5_6.py --dataset ikat/2023/train --student DIR --plots runs/fig56 [--limit N]

The index and the SPLADE baselines use the student's document model. Writes the plots (and the table as
CSV/JSON) into --plots, and the table's records into --out when given.
"""
from _lib import frame, llm_rewriter, parser, records, setup, write


def main():
    p = parser(__doc__)
    p.add_argument("--dataset", default="ikat/2023/train")
    p.add_argument("--student", required=True)
    p.add_argument("--plots", default="runs/figures5_6")
    args = p.parse_args()
    import pyterrier_disco as disco
    from pyterrier_disco.evaluation import compare, format_table, standard_systems, write_outputs

    student = disco.DiSCo.from_pretrained(args.student, device=args.device)
    work, splade, index = setup(args, args.dataset, doc_model=student.doc_model)
    systems = standard_systems(["raw", "fc", "human", "llm", "disco", "fusion"], splade,
                               students={"disco": student}, llm=llm_rewriter(args))
    summary, per_turn = compare(systems, frame(args.dataset, args.limit), disco.datasets.qrels(args.dataset), index,
                                vocab=splade.doc_model.vocab_fingerprint)
    print(format_table(summary))
    print("written: " + ", ".join(str(p) for p in write_outputs(summary, per_turn, args.plots).values()))
    write(args, records(summary, dataset=args.dataset))


if __name__ == "__main__":
    main()
