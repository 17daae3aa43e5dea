"""Table 4 (DiSCo): zero-shot evaluation of a student on TREC CAsT 2020, CAsT 2022 and iKAT 2023.

    python experiments/table4_zero_shot.py --student runs/topiocqa-student [--datasets ...] [--limit N]

The CAsT collections (38M / 106M passages) must be indexed with the student's document model (GPU advised);
ikat/2023/train runs here on its provenance passages.
"""
import pyterrier_disco as disco
from _lib import evaluate, parser, records, setup, write


def main():
    p = parser(__doc__)
    p.add_argument("--student", required=True, help="DiSCo student folder")
    p.add_argument("--datasets", nargs="+", default=["trec-cast/v1/2020", "trec-cast/v3/2022", "ikat/2023/train"])
    p.add_argument("--systems", default="raw,fc,human,disco")
    args = p.parse_args()
    student = disco.DiSCo.from_pretrained(args.student, device=args.device)
    args.model = student.doc_model.source
    out = []
    for dataset in args.datasets:
        work, splade, index = setup(args, dataset)
        summary = evaluate(dataset, args.systems.split(","), splade, index, args, students={"disco": student})
        out += records(summary, dataset=dataset)
    write(args, out)


if __name__ == "__main__":
    main()
