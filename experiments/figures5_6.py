"""Figures 5 and 6 (DiSCo): effectiveness vs. cost, and effectiveness / query length by conversation depth.

    python experiments/figures5_6.py --dataset ikat/2023/train --student DIR --plots runs/fig56 [--limit N]
"""
import pyterrier_disco as disco
from pyterrier_disco.evaluation import compare, standard_systems, write_outputs
from pyterrier_disco.rewrite import LLMRewriter
from _lib import frame, parser, setup


def main():
    p = parser(__doc__)
    p.add_argument("--dataset", default="ikat/2023/train")
    p.add_argument("--student", required=True)
    p.add_argument("--plots", default="runs/figures5_6")
    args = p.parse_args()
    work, splade, index = setup(args, args.dataset)
    students = {"disco": disco.DiSCo.from_pretrained(args.student)}
    systems = standard_systems(["raw", "fc", "human", "llm", "disco", "fusion"], splade, students=students,
                               llm=LLMRewriter())
    summary, per_turn = compare(systems, frame(args.dataset, args.limit), disco.datasets.qrels(args.dataset), index)
    print(write_outputs(summary, per_turn, args.plots))


if __name__ == "__main__":
    main()
