"""Build the default student shipped as ``DiSCo.default()``: train with the recipe on the MIT-licensed real
collections and export the changed tensors as an fp16 delta on the embedded SPLADE-tiny.

    python experiments/default_student.py --data ../shared/data --held-out ikat/2023/train \\
        [--set field=value ...] [--out pyterrier_disco/data/default_student]

``--held-out ikat/2023/train`` (the shipped choice) trains on TREC CAsT 2019-2022 only, so the student's
figures on iKAT 2023 (``transfer.py`` / ``recipe_search.py`` with the same settings reuse the same cached
student) are a true zero-shot evaluation; ``--held-out none`` trains on every MIT collection (CAsT and iKAT).
The recipe is the ``TrainConfig`` defaults (``freeze_embeddings`` is forced on: only then is the delta small).
"""
import argparse
from pathlib import Path

from _transfer import HELD_OUT, data_home, student, student_folder, training_ids
from transfer import parse_settings


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--held-out", default="ikat/2023/train", choices=list(HELD_OUT) + ["none"])
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="TrainConfig fields to change")
    p.add_argument("--data", default=None, help="folder of the official files (../shared/data)")
    p.add_argument("--work", default="runs/transfer", help="cache of indexes, teacher runs and students")
    p.add_argument("--label", default=None, help="the cached student's label (as given to recipe_search.py)")
    p.add_argument("--out", default=None, help="delta folder (default: the package's data/default_student)")
    args = p.parse_args()
    data_home(args.data, Path(args.work))

    import pyterrier_disco as disco
    from pyterrier_disco.default_student import FOLDER, export_delta
    from pyterrier_disco.train import TrainConfig

    held_out = None if args.held_out == "none" else args.held_out
    config = TrainConfig(**{**parse_settings(args.set), "freeze_embeddings": True})
    label = args.label or f"default-{(held_out or 'none').replace('/', '_')}"
    ids, splade, work = training_ids(held_out), disco.Splade(), Path(args.work)
    student(ids, config, splade, work, label=label)
    info = export_delta(student_folder(ids, config, splade, work, label=label), args.out or FOLDER)
    print(f"default student: {info['tensors']} tensors, {info['parameters']:,} parameters ({info['dtype']}) "
          f"written to {args.out or FOLDER}")


if __name__ == "__main__":
    main()
