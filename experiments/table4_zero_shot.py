"""Table 4 (DiSCo): zero-shot (out of domain) results on the test topics of TREC CAsT 2020, CAsT 2022 and iKAT
2023, students trained on QReCC train.

Rows, as the paper's: SPLADE on each teacher's rewrite (HumanQR, T5QR, LlamaQR, MistralQR); DiSCo students
(Mistral, Human, multi-teach = Mistral + Human); DiSCo Fusion = SPLADE MistralQR fused with DiSCo multi-teach
(the Table 4 caption). Measures: R@100, MRR, nDCG@3.

    python experiments/table4_zero_shot.py --model naver/splade-cocondenser-ensembledistil        # the paper's
    python experiments/table4_zero_shot.py --train disco-mini/train --datasets ikat/2023/train \\
        --teachers human --students human --fuse human "DiSCo T3" --lr 2e-4 --limit 40             # small, on CPU

--student LABEL=FOLDER evaluates trained students instead of training them (their document model then encodes
the passages).
"""
from _lib import (check_splits, evaluate, fusion_system, parser, pretrained, records, rewrite_systems, setup,
                  student_systems, students, teachers, write)


def main():
    from pyterrier.measures import RR, R, nDCG

    p = parser(__doc__)
    p.add_argument("--train", default="qrecc/train", help="training split of the students")
    p.add_argument("--datasets", nargs="+", default=["trec-cast/v1/2020", "trec-cast/v3/2022", "ikat/2023/test"],
                   help="test splits (default: the paper's)")
    p.add_argument("--teachers", default="human,t5,llm=llama,llm=mistral", help="rewrite rows, comma-separated")
    p.add_argument("--students", nargs="+", default=["llm=mistral", "human", "llm=mistral,human"],
                   help="one student per teacher set, each comma-separated")
    p.add_argument("--student", nargs="+", default=None, metavar="LABEL=FOLDER",
                   help="trained students to evaluate instead of training --students")
    p.add_argument("--fuse", nargs=2, default=["llm=mistralai/Mistral-7B-Instruct-v0.2", "DiSCo T2+T3"],
                   metavar=("TEACHER", "STUDENT"), help="the fusion row: a rewrite row and a student row")
    args = p.parse_args()
    for test_id in args.datasets:
        check_splits(args.train, test_id)
    given = pretrained(args.student, args.device) if args.student else None
    out = []
    for test_id in args.datasets:
        doc_model = next(iter(given.values())).doc_model if given else None
        work, splade, index = setup(args, test_id, doc_model=doc_model)
        trained = given or students(args.train, args.students, args, splade, work, "table4")
        systems = rewrite_systems(teachers(args.teachers, test_id, args), splade) + student_systems(trained)
        by_name = {s.name: s for s in systems}
        if args.fuse and all(n in by_name for n in args.fuse):
            systems.append(fusion_system(by_name[args.fuse[0]], by_name[args.fuse[1]]))
        summary, _ = evaluate(test_id, systems, splade, index, args, measures=[R @ 100, RR, nDCG @ 3])
        out += records(summary, dataset=test_id, trained_on=args.train)
    write(args, out)


if __name__ == "__main__":
    main()
