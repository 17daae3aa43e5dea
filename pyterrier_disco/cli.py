"""The ``disco`` command line."""
import argparse
import sys
from typing import List, Optional


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None,
                   help="SPLADE checkpoint: a local folder or hub id (default: the embedded SPLADE-tiny)")
    p.add_argument("--batch-size", type=int, default=32, help="encoding batch size (default: 32)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")


def cmd_index(args) -> None:
    import pyterrier_disco as disco
    from pyterrier_disco.index import index_dataset

    splade = disco.Splade(args.model, device=args.device)
    index = index_dataset(args.dataset, args.out, backend=args.backend, splade=splade,
                          batch_size=args.batch_size, overwrite=args.overwrite)
    print(f"indexed {args.dataset} into {index.path} ({args.backend})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="disco", description="DiSCo conversational sparse retrieval (PyTerrier)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("index", help="encode a registered dataset's passages and build a sparse index")
    p.add_argument("--dataset", required=True, help="ir_datasets id, e.g. disco-mini/train or ikat/2023/train")
    p.add_argument("--out", required=True, help="index folder to create")
    p.add_argument("--backend", choices=["numba", "pisa"], default="numba",
                   help="numba: exact dot product (default); pisa: pyterrier-pisa, quantised weights")
    p.add_argument("--overwrite", action="store_true", help="replace an existing index folder")
    _add_model_args(p)
    p.set_defaults(func=cmd_index)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (FileNotFoundError, FileExistsError, ValueError, KeyError, TypeError) as e:
        print(f"disco {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
