"""Table 5 (DiSCo): query rewriting vs. retrieval latency (ms per query, by stage).

    python experiments/table5_latency.py --dataset ikat/2023/train --student DIR [--llm MODEL] [--limit 20]

Reports, per system, the time spent rewriting (LLM), encoding and retrieving. The rewrite cache is disabled
here so that every LLM call is timed.
"""
import pyterrier_disco as disco
from pyterrier_disco.evaluation import compare, standard_systems
from pyterrier_disco.rewrite import LLMRewriter
from _lib import frame, parser, setup, write


def main():
    p = parser(__doc__)
    p.add_argument("--dataset", default="ikat/2023/train")
    p.add_argument("--student", default=None)
    p.add_argument("--llm", default=None, help="rewriter model (default: SmolLM2-135M-Instruct)")
    p.add_argument("--backend", default="transformers", choices=["transformers", "vllm"])
    args = p.parse_args()
    work, splade, index = setup(args, args.dataset)
    students = {"disco": disco.DiSCo.from_pretrained(args.student)} if args.student else {}
    llm = LLMRewriter(args.llm, backend=args.backend, cache=False, device=args.device)
    names = ["raw", "llm"] + (["disco", "fusion"] if students else [])
    summary, _ = compare(standard_systems(names, splade, students=students, llm=llm), frame(args.dataset, args.limit),
                         disco.datasets.qrels(args.dataset), index)
    cols = ["label"] + [c for c in summary.columns if c.endswith("_ms_per_query")] + ["ms_per_query", "RR"]
    print(summary[cols].to_string(index=False))
    write(args, summary[["name"] + cols].to_dict(orient="records"))


if __name__ == "__main__":
    main()
