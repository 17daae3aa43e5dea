"""The ``disco`` command line."""
import argparse
import errno
import os
import sys
import typing
from pathlib import Path
from typing import List, Optional


from pyterrier_disco import _preflight as preflight
from pyterrier_disco._utils import atomic_file


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only where the help text does not already say it and there is one to show."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None,
                   help="SPLADE checkpoint: a local folder or hub id (default: the embedded SPLADE-tiny)")
    p.add_argument("--batch-size", type=int, default=32, help="encoding batch size (default: 32)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")


def _add_config_args(p: argparse.ArgumentParser, config_cls) -> None:
    """One option per command-line field of a config dataclass, with its default, choices and help."""
    from pyterrier_disco.train.config import field_type

    for f, flag in config_cls.cli_fields():
        kind = field_type(f)
        metavar = None if f.metadata["choices"] else flag.lstrip("-").replace("-", "_").upper()
        if kind is bool:
            kind, metavar = _yes_no, "{yes,no}"
        elif type(None) in typing.get_args(f.type) and f.default is not None:
            kind, metavar = _or_none(kind), f"{metavar}|none"
        p.add_argument(flag, dest=f.name, type=kind, default=f.default, choices=f.metadata["choices"],
                       metavar=metavar, help=f.metadata["help"])


def _or_none(kind):
    """An option's type that also takes ``none`` (unset), for optional fields with a default."""
    def parse(text: str):
        return None if text.lower() == "none" else kind(text)
    parse.__name__ = kind.__name__  # argparse names the type in its errors
    return parse


def _yes_no(text: str) -> bool:
    value = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected yes or no, got {text!r}")
    return value


def _config_from_args(args, config_cls):
    return config_cls(**{f.name: getattr(args, f.name) for f, _ in config_cls.cli_fields()})


def cmd_index(args) -> None:
    import pyterrier_disco as disco
    from pyterrier_disco.index import index_dataset
    from pyterrier_disco.index.artifact import is_index_folder
    from pyterrier_disco.index.pisa import is_pisa_folder
    from pyterrier_disco.index.shard_build import is_sharded_folder

    preflight.at_least_one(batch_size=args.batch_size)
    preflight.device(args.device)
    sharded = args.shards is not None or args.ray is not None
    ours = is_sharded_folder if sharded else is_pisa_folder if args.backend == "pisa" else is_index_folder
    preflight.output_folder(args.out, overwrite=args.overwrite, what="an index", ours=ours,
                            reuse=is_sharded_folder if sharded else None)  # an unfinished sharded build resumes
    if args.ray is not None:  # an unreachable cluster is refused before the model loads
        from pyterrier_disco.index._ray import connect

        connect(args.ray)
    splade = disco.Splade(args.model, device=args.device)
    index = index_dataset(args.dataset, args.out, backend=args.backend, splade=splade,
                          batch_size=args.batch_size, overwrite=args.overwrite, shards=args.shards, ray=args.ray,
                          num_gpus=args.num_gpus)
    kind = f"{len(index.meta['shards'])} shards" if sharded else args.backend
    print(f"indexed {args.dataset} into {index.path} ({kind})")


def cmd_teacher_run(args) -> None:
    import pyterrier_disco as disco
    from pyterrier_disco.index import open_index
    from pyterrier_disco.train.teacher import build_teacher_run, is_teacher_run, save_teacher_run
    from pyterrier_disco.train.teacher_specs import resolve_teachers

    from pyterrier_disco.train.data import limit_turns

    preflight.at_least_one(batch_size=args.batch_size, k=args.k, limit=args.limit)
    preflight.device(args.device)
    preflight.output_file(args.out, is_teacher_run, "a teacher run")
    index = open_index(args.index)
    frame = limit_turns(disco.conversations(args.dataset), args.limit)
    splade = disco.Splade(args.model, device=args.device, batch_size=args.batch_size)
    teachers = resolve_teachers(args.teachers, frame, device=args.device)
    run = build_teacher_run(frame, teachers, splade, index, k=args.k)
    save_teacher_run(run, args.out)
    print(f"teacher run: {len(run)} rows, {run['qid'].nunique()} turns, teachers {', '.join(teachers)} -> {args.out}")
    for name, info in run.attrs["teacher_run"]["teacher_details"].items():
        prompt = f", prompt {info['prompt_hash']}, policy {info['policy']}" if info.get("prompt_hash") else ""
        print(f"  {name}: model {info['model']}{prompt}; {info['fallbacks']} of {info['turns']} rewrites fell "
              "back to the utterance")


def cmd_train(args) -> None:
    from pyterrier_disco._folders import read_marker
    from pyterrier_disco.train.data import training_data
    from pyterrier_disco.train import TrainConfig, train
    from pyterrier_disco.train.folder import KINDS, is_training_folder
    from pyterrier_disco.train.teacher import load_teacher_run

    config = _config_from_args(args, TrainConfig)
    preflight.device(args.device)
    preflight.output_folder(args.out, overwrite=args.overwrite, ours=is_training_folder, what="a training folder",
                            reuse=lambda p: (read_marker(p) or {}).get("type") in KINDS or is_training_folder(p))
    run = load_teacher_run(args.teacher_run)
    data = training_data(args.dataset, run, docs=args.docs, limit=args.limit)
    if args.teachers:  # train on these teachers of the run, refusing a run built with other models or prompts
        from pyterrier_disco.train.teacher_specs import check_teachers, resolve_teachers

        teachers = resolve_teachers(args.teachers, data.conversations, device=args.device)
        check_teachers(run, teachers)
        attrs = run.attrs
        run = run[run["teacher"].isin(list(teachers))].reset_index(drop=True)
        run.attrs = {"teacher_run": {**attrs["teacher_run"], "teachers": list(teachers)}}
    for name in data.teacher_top:
        print(f"{name}: no qrels in the documents the teacher run retrieved: each turn's positive is the "
              "teacher's top document")
    train(data.conversations, run, data.docs, args.out, qrels=data.qrels, config=config,
          base_model=args.base_model, doc_model=args.model, device=args.device, resume=args.resume,
          overwrite=args.overwrite, provenance={**data.provenance(), "teacher_run": str(args.teacher_run),
                                                "teachers": sorted(run["teacher"].unique().tolist())})
    print(f"student saved to {args.out}; load it with pyterrier_disco.DiSCo.from_pretrained({str(args.out)!r})")


def cmd_evaluate(args) -> None:
    import json

    from pyterrier_disco.evaluation import evaluate_dataset, format_table, summary_records, write_outputs

    preflight.at_least_one(limit=args.limit)
    if args.out:
        preflight.output_file(args.out, preflight.is_results_json, "a results file of `disco evaluate`")
    if args.plots:
        preflight.plots_folder(args.plots)
    default = "raw,fc,human,llm,disco,fusion" if args.student else "raw,fc,human,llm"
    systems = [s.strip() for s in (args.systems or default).split(",") if s.strip()]
    from pyterrier_disco.datasets import dataset_ids

    datasets = dataset_ids(args.dataset)
    llm = None
    if {"llm", "fusion"} & set(systems):
        from pyterrier_disco.rewrite import LLMRewriter
        llm = LLMRewriter(args.llm, policy=args.llm_policy, verbose=True)
    summary, per_turn = evaluate_dataset(args.dataset, systems=systems, student=args.student, index_dir=args.index,
                                         model=args.model, llm=llm, limit=args.limit, baseline=args.baseline)
    print(f"{', '.join(datasets)}: {per_turn['qid'].nunique()} evaluated turns")
    print(format_table(summary))
    if args.out:
        out = Path(args.out)
        with atomic_file(out) as f:
            json.dump([{**r, "datasets": datasets} for r in summary_records(summary)], f, indent=2)
        print(f"written: {out}")
    if args.plots:
        write_outputs(summary, per_turn, args.plots)
        print(f"tables and plots written to {args.plots}")


def cmd_check(args) -> None:
    from pyterrier_disco._utils import read_json
    from pyterrier_disco.index import SparseIndex
    from pyterrier_disco.student import verify_student

    path = Path(args.path)
    if not (path / "pt_meta.json").exists():
        raise FileNotFoundError(f"{path} is neither an index nor a DiSCo student: it has no pt_meta.json")
    meta = read_json(path / "pt_meta.json", "artifact metadata")
    kind = (meta.get("type"), meta.get("format"))
    if kind == ("sparse_index", "numba"):
        report = SparseIndex(path).verify()
        what = f"index of {report['num_docs']} documents, {report['num_postings']} postings"
    elif kind[0] == "disco_student":
        report, what = verify_student(path), "DiSCo student"
    elif kind == ("sparse_index", "pisa"):
        from pyterrier_disco.index import PisaBackend

        report, what = PisaBackend(path, verbose=False).verify(), "PISA index"
    else:
        raise ValueError(f"{path} holds a {kind[0]}.{kind[1]} artifact, not an index or a DiSCo student")
    sums = f"{report['files_hashed']} files match their sha256" if report["checksums"] else \
        "no checksums recorded (written by an older version or by PISA): only the structure was checked"
    print(f"{path}: ok: {what}; {sums}")


def cmd_demo(args) -> None:
    from pyterrier_disco.demo import DemoConfig, run_demo

    run_demo(_config_from_args(args, DemoConfig))


def build_parser() -> argparse.ArgumentParser:
    from pyterrier_disco.index import BACKENDS
    from pyterrier_disco.demo import DemoConfig
    from pyterrier_disco.train import TrainConfig

    parser = argparse.ArgumentParser(prog="disco", description="DiSCo conversational sparse retrieval (PyTerrier)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("index", help="encode a registered dataset's passages and build a sparse index",
                       formatter_class=_Help)
    p.add_argument("--dataset", required=True,
                   help="ir_datasets id, e.g. ikat/2023/train, or several comma-separated: one pooled index whose "
                        "docnos are '<corpus>::<docno>'")
    p.add_argument("--out", required=True, help="index folder to create")
    p.add_argument("--backend", choices=BACKENDS, default="numba",
                   help="numba: exact dot product (default); pisa: pyterrier-pisa, quantised weights")
    p.add_argument("--overwrite", action="store_true", help="replace an existing index folder")
    p.add_argument("--shards", type=int, default=None,
                   help="build a sharded numba index of N contiguous shards (rerun to resume an interrupted build)")
    p.add_argument("--ray", nargs="?", const=True, default=None, metavar="ADDRESS",
                   help="encode and index on Ray (needs pyterrier-disco[ray]): alone, Ray's default (a local "
                        "cluster); or 'auto', 'local', host:port, ray://host:port")
    p.add_argument("--num-gpus", type=float, default=None,
                   help="GPUs per encoder actor with --ray (default: 1 when the cluster has GPUs, else 0)")
    _add_model_args(p)
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("teacher-run", help="retrieve with each teacher's rewrites and store the run (parquet)",
                       formatter_class=_Help)
    p.add_argument("--dataset", required=True,
                   help="conversational ir_datasets id, e.g. ikat/2023/train, or several comma-separated (qids "
                        "become '<dataset>::<qid>'); the index may hold other datasets' passages")
    p.add_argument("--teachers", default="human",
                   help="comma-separated teachers, each KIND or KIND=MODEL: human, automatic (rewrite columns), "
                        "llm[=MODEL] (the Table 2 prompt; default the packaged SmolLM2-135M-Instruct; short names "
                        "mistral, llama: the paper's), t5[=MODEL] (default castorini/t5-base-canard), or any column "
                        "of the conversation frame; e.g. human,llm=mistralai/Mistral-7B-Instruct-v0.2,t5")
    p.add_argument("--index", required=True, help="index folder built by `disco index` for the same dataset")
    p.add_argument("--out", required=True, help="parquet file to write (qid, docno, score, rank, teacher)")
    p.add_argument("--k", type=int, default=1000, help="documents retrieved per turn and teacher")
    p.add_argument("--limit", type=int, default=None, help="only the first N turns of each dataset (a quick run)")
    _add_model_args(p)
    p.set_defaults(func=cmd_teacher_run)

    p = sub.add_parser("train", help="train a DiSCo student from a teacher run",
                       formatter_class=_Help)
    p.add_argument("--dataset", required=True,
                   help="conversational dataset id(s) the teacher run was built on (comma-separated for several)")
    p.add_argument("--teacher-run", required=True, help="parquet file from `disco teacher-run`")
    p.add_argument("--docs", default=None,
                   help="the dataset id(s) given to `disco index` for the teacher run's index (default: --dataset); "
                        "datasets whose qrels point elsewhere train on the teacher's top document")
    p.add_argument("--limit", type=int, default=None,
                   help="only the first N turns of each dataset (as given to `disco teacher-run`)")
    p.add_argument("--out", required=True, help="output folder: checkpoints while training, then the student")
    p.add_argument("--teachers", default=None,
                   help="train on these teachers of the run (same syntax as teacher-run); a run built with another "
                        "model or prompt for one of them is refused (default: every teacher of the run)")
    _add_config_args(p, TrainConfig)
    p.add_argument("--model", default=None, help="document-side SPLADE (default: embedded SPLADE-tiny)")
    p.add_argument("--base-model", default=None, help="student start point (default: the document model)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="discard what --out holds and train from scratch")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="compare raw / full-context / rewrite / DiSCo / fusion systems on a dataset",
                       formatter_class=_Help)
    p.add_argument("--dataset", required=True,
                   help="conversational ir_datasets id with passages and qrels, or several comma-separated (one "
                        "pooled index and one pt.Experiment over all their turns)")
    p.add_argument("--student", default=None, help="DiSCo student folder (for the disco and fusion systems)")
    p.add_argument("--index", default=None, help="index folder to reuse or build (default: the user cache)")
    p.add_argument("--systems", default=None,
                   help="comma-separated: raw, fc (full context, untrained), human, llm, disco, fusion "
                        "(default: all of them with --student, else raw,fc,human,llm)")
    p.add_argument("--llm", default=None,
                   help="rewriting LLM of the llm and fusion systems: hub id, folder or .gguf (default: the packaged "
                        "SmolLM2-135M-Instruct)")
    p.add_argument("--llm-policy", default="rewrite", choices=["rewrite", "utterance+rewrite"],
                   help="what the llm system encodes: the rewrite alone (the paper's LLM-QR) or the utterance "
                        "followed by the rewrite")
    p.add_argument("--baseline", default="raw", help="system the paired t-tests compare against")
    p.add_argument("--limit", type=int, default=None, help="only the first N turns")
    p.add_argument("--model", default=None, help="document-side SPLADE when no student is given")
    p.add_argument("--out", default=None, help="JSON file: one object per system")
    p.add_argument("--plots", default=None, help="folder for results.csv/json, per_turn.csv and the two plots")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("check", help="verify an index or a student: every file against its recorded sha256",
                       formatter_class=_Help)
    p.add_argument("path", help="index or student folder")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("demo", help="the whole method end to end on the embedded disco-mini collection",
                       formatter_class=_Help)
    _add_config_args(p, DemoConfig)
    p.set_defaults(func=cmd_demo)
    return parser


def _user_errors() -> tuple:
    """What the user can fix (input, options, files, the environment): printed as one line. Anything else
    (TypeError, KeyError, AttributeError... raised by a bug) keeps its traceback."""
    import sqlite3

    from safetensors import SafetensorError

    from pyterrier_disco._errors import DiscoError
    from pyterrier_disco.datasets._files import DocsUnavailableError

    # ArithmeticError: a NaN training loss (FloatingPointError)
    return DiscoError, OSError, ValueError, ArithmeticError, sqlite3.Error, SafetensorError, DocsUnavailableError


_OS_HINTS = {errno.ENOSPC: "free some disk space", errno.EDQUOT: "free some disk space",
             errno.EROFS: "choose a writable location", errno.EACCES: "check the permissions or choose another path",
             errno.EPERM: "check the permissions or choose another path"}


def error_line(e: BaseException) -> str:
    """``e`` as one line: an OSError with its file and what to do, a KeyError without quotes."""
    if isinstance(e, OSError) and e.strerror:
        where = " -> ".join(str(f) for f in (e.filename, e.filename2) if f) + ": " if e.filename else ""
        text = f"{where}{e.strerror}" + (f" ({_OS_HINTS[e.errno]})" if e.errno in _OS_HINTS else "")
    elif isinstance(e, KeyError) and e.args:
        text = str(e.args[0])
    else:
        text = str(e) or type(e).__name__
    return " ".join(text.split())


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except Exception as e:
        if os.environ.get("DISCO_TRACEBACK") or not isinstance(e, _user_errors()):
            raise
        print(f"disco {args.command}: error: {error_line(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
