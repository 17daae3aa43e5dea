"""Table 3 (DiSCo): in-domain results on TopiOCQA (dev) and QReCC (test), students trained on the train splits.

Rows per dataset, as the paper's: SPLADE on the full conversation (no rewrite); SPLADE on each teacher's rewrite
(T0 T5QR, T1 LlamaQR, T2 MistralQR, T3 HumanQR where the dataset has human rewrites); a DiSCo student per
teacher set (TopiOCQA: T0, T2, T1+T2; QReCC: T0, T2, T3, T2+T3). Measures: R@100, R@10, MRR, nDCG@3.

    python experiments/table3_in_domain.py --model naver/splade-cocondenser-ensembledistil      # the paper's run
    python experiments/table3_in_domain.py --datasets disco-mini --teachers human,llm --students human llm \\
        human,llm --lr 2e-4 --epochs 3 --limit 60                                                 # small, on CPU

--teachers (rewrite rows) and --students (one student per teacher set, each comma-separated) default to the
paper's per dataset; a teacher is KIND or KIND=MODEL (human, t5, llm=mistral, llm=HuggingFaceTB/..., ...).
"""
from _lib import (check_splits, evaluate, parser, records, rewrite_systems, setup, student_systems, students,
                  teachers, write)

# (train, test, rewrite rows, student teacher sets), the paper's Table 3
PAPER = {
    "topiocqa": ("topiocqa/train", "topiocqa/dev", "t5,llm=llama,llm=mistral", ["t5", "llm=mistral",
                                                                              "llm=llama,llm=mistral"]),
    "qrecc": ("qrecc/train", "qrecc/test", "human,t5,llm=llama,llm=mistral", ["t5", "llm=mistral", "human",
                                                                             "llm=mistral,human"]),
    "disco-mini": ("disco-mini/train", "disco-mini/test", "human,llm", ["human", "llm", "human,llm"]),
}


def main():
    p = parser(__doc__)
    p.add_argument("--datasets", nargs="+", default=["topiocqa", "qrecc"], choices=sorted(PAPER))
    p.add_argument("--teachers", default=None, help="rewrite rows, comma-separated (default: the paper's)")
    p.add_argument("--students", nargs="+", default=None,
                   help="one student per teacher set, each comma-separated (default: the paper's)")
    args = p.parse_args()
    from pyterrier_disco.evaluation import standard_systems

    out = []
    for name in args.datasets:
        train_id, test_id, rows, sets = PAPER[name]
        check_splits(train_id, test_id)
        work, splade, index = setup(args, test_id)
        trained = students(train_id, args.students or sets, args, splade, work, "table3")
        systems = (standard_systems(["fc"], splade) + rewrite_systems(teachers(args.teachers or rows, test_id, args),
                                                                      splade) + student_systems(trained))
        summary, _ = evaluate(test_id, systems, splade, index, args)
        out += records(summary, dataset=test_id, trained_on=train_id)
    write(args, out)


if __name__ == "__main__":
    main()
