"""Table 5 (DiSCo): latency per query on TREC CAsT 2020: rewriting vs retrieval, students trained on QReCC train.

Rows, as the paper's: SPLADE T5QR, LlamaQR, MistralQR (rewrite >> SPLADE, every LLM call timed: no rewrite
cache); convSPLADE (a student trained with InfoNCE on the qrels only, the SFT baseline); DiSCo Mistral; DiSCo
multi-teach (Mistral + Human); DiSCo Fusion = SPLADE MistralQR fused with DiSCo Mistral (the Table 5 caption).
Columns: rewrite, retrieval (query encoding + search) and total ms per query, and R@100. A fusion's total is the
slower of its two pipelines plus fusing, as they run in parallel (the paper's footnote 5: "we report the maximum
execution time of the two"); ``total_sum_ms`` gives them run one after the other.

    python experiments/table5_latency.py --model naver/splade-cocondenser-ensembledistil --backend vllm
    python experiments/table5_latency.py --train disco-mini/train --dataset ikat/2023/train --teachers llm \\
        --students human --convsplade human --fuse llm "DiSCo T3" --lr 2e-4 --limit 20      # small, on CPU

The paper measures rewriting and encoding on an A100 GPU and search on CPU; the figures here are this machine's.
"""
from _lib import (check_splits, evaluate, fusion_system, parser, pretrained, rewrite_systems, setup, student,
                  student_systems, students, teachers, write)


def main():
    from pyterrier.measures import R

    p = parser(__doc__)
    p.add_argument("--train", default="qrecc/train", help="training split of the students")
    p.add_argument("--dataset", default="trec-cast/v1/2020", help="test split (default: the paper's)")
    p.add_argument("--teachers", default="t5,llm=llama,llm=mistral", help="rewrite rows, comma-separated")
    p.add_argument("--students", nargs="+", default=["llm=mistral", "llm=mistral,human"],
                   help="one student per teacher set, each comma-separated")
    p.add_argument("--convsplade", default="llm=mistral", help="teacher run whose negatives train convSPLADE "
                   "(its loss uses the qrels only); '' to leave the row out")
    p.add_argument("--student", nargs="+", default=None, metavar="LABEL=FOLDER",
                   help="trained students to time instead of training --students / --convsplade")
    p.add_argument("--fuse", nargs=2, default=["llm=mistralai/Mistral-7B-Instruct-v0.2", "DiSCo T2"],
                   metavar=("TEACHER", "STUDENT"), help="the fusion row: a rewrite row and a student row")
    args = p.parse_args()
    check_splits(args.train, args.dataset)
    given = pretrained(args.student, args.device) if args.student else None
    work, splade, index = setup(args, args.dataset, doc_model=next(iter(given.values())).doc_model if given else None)
    trained = given
    if trained is None:
        trained = students(args.train, args.students, args, splade, work, "table5")
        if args.convsplade:
            trained["convSPLADE"] = student(args.train, teachers(args.convsplade, args.train, args), args, splade,
                                            work, f"convsplade-{args.train.replace('/', '_')}", loss="infonce")
    systems = rewrite_systems(teachers(args.teachers, args.dataset, args, cache=False), splade)
    systems += student_systems(trained)
    by_name = {s.name: s for s in systems}
    if all(n in by_name for n in args.fuse):
        systems.append(fusion_system(by_name[args.fuse[0]], by_name[args.fuse[1]]))
    summary, _ = evaluate(args.dataset, systems, splade, index, args, measures=[R @ 100])
    rows = []
    for _, r in summary.iterrows():
        rewrite = r.get("rewrite_ms_per_query")
        rewrite = 0.0 if rewrite != rewrite or rewrite is None else float(rewrite)  # NaN: no rewriting
        rows.append({"system": r["label"], "rewrite_ms": rewrite, "retrieval_ms": float(r["ms_per_query"]) - rewrite,
                     "total_ms": float(r["ms_per_query"]), "total_sum_ms": float(r["ms_per_query_sum"]),
                     "R@100": float(r["R@100"]), "llm_calls_per_query": float(r["llm_calls_per_query"])})
    print("\nTable 5 (ms per query; a fusion's total is its slower pipeline plus fusing, total_sum_ms one after "
          "the other)")
    for row in rows:
        print(f"{row['system']:<60} rewrite {row['rewrite_ms']:9.1f}  retrieval {row['retrieval_ms']:8.1f}  "
              f"total {row['total_ms']:9.1f}  (sum {row['total_sum_ms']:9.1f})  R@100 {row['R@100']:.3f}")
    write(args, [{**row, "dataset": args.dataset} for row in rows])


if __name__ == "__main__":
    main()
