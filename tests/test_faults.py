"""Fault injection: ``kill -9`` while indexing and training, a full disk, read-only outputs, concurrent writers,
an output appearing while it is written, and bad options and inputs through the command line.

Whatever happens: nothing outside the output changes, nothing a user wrote is deleted, a resumed training ends
with exactly the weights of an uninterrupted one, and every command-line error is one line. A small tmpfs gives
the full and the read-only disks when it can be mounted (tests run as root, so permissions deny nothing);
otherwise the writes are made to fail with ENOSPC / EROFS by patching them.
"""
import contextlib
import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from pyterrier_disco.cli import main
from pyterrier_disco.index import SparseIndex
from pyterrier_disco.train import TrainConfig, save_teacher_run, train
from pyterrier_disco.train.teacher import doc_model_metadata

ENV = {**os.environ, "TQDM_DISABLE": "1"}
SEED = int(os.environ.get("DISCO_FAULT_SEED", random.randrange(10_000)))  # printed on failure: rerun with it


def tree(folder: Path) -> dict:
    """Every path under ``folder`` with its bytes (None for folders): what must not change."""
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*"))}


def one_line(err: str, command: str) -> str:
    """The command's error: exactly one line, no traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"disco {command}: error: "), f"not one error line: {err!r}"
    return lines[0]


def docs(n: int, seed: int = 0, pause_every: int = 0):
    """A synthetic collection of ``n`` documents of 30 terms each."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        if pause_every and i % pause_every == 0:
            time.sleep(0.02)
        terms = rng.choice(500, 30, replace=False)
        yield {"docno": f"d{i}", "toks": {f"t{t}": float(w) for t, w in zip(terms, rng.random(30) + 0.01)}}


@contextlib.contextmanager
def tmpfs(path: Path, size: str, read_only: bool = False):
    """A tmpfs of ``size`` mounted at ``path`` (None when mounting is not allowed here)."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                                 capture_output=True).returncode == 0
    except OSError:
        mounted = False
    try:
        yield path if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fail_writes_under(monkeypatch, folder: Path, code: int) -> None:
    """Without a tmpfs: opening a file for writing under ``folder`` fails with ``code``."""
    real_open, real_mkdir = os.open, os.mkdir

    def guarded(path, flags, *args, **kwargs):
        if str(os.path.abspath(path)).startswith(str(folder)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args, **kwargs)

    def guarded_mkdir(path, *args, **kwargs):
        if str(os.path.abspath(path)).startswith(str(folder)):
            raise OSError(code, os.strerror(code), str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded)
    monkeypatch.setattr(os, "mkdir", guarded_mkdir)


# -- output folders: never delete what is not ours ---------------------------------------------------------

def test_overwrite_replaces_only_an_index_we_wrote(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    (foreign / "run.json").write_text("{}")  # a common name is no proof of ownership
    before = tree(tmp_path)
    with pytest.raises(FileExistsError, match="never deleted"):
        SparseIndex(foreign, verbose=False).indexer(overwrite=True).index(docs(5))
    ours = tmp_path / "ours"
    SparseIndex(ours, verbose=False).indexer().index(docs(5))
    SparseIndex(ours, verbose=False).indexer(overwrite=True).index(docs(7, seed=1))
    assert len(SparseIndex(ours)) == 7
    (ours / "notes.txt").write_text("a note put into our index")
    with pytest.raises(FileExistsError, match="notes.txt"):
        SparseIndex(ours, verbose=False).indexer(overwrite=True).index(docs(5))
    assert (ours / "notes.txt").read_text() == "a note put into our index"
    assert {k: v for k, v in tree(tmp_path).items() if not k.startswith("ours")} == before
    (tmp_path / "empty").mkdir()  # an empty folder holds nothing to lose: it is used
    assert len(SparseIndex(tmp_path / "empty", verbose=False).indexer().index(docs(2))) == 2


def test_the_commit_never_replaces_what_appeared_meanwhile(tmp_path):
    out = tmp_path / "idx"

    def user_creates_it_meanwhile():
        yield from docs(3)
        out.mkdir()
        (out / "theirs.txt").write_text("created while indexing")

    with pytest.raises(FileExistsError, match="appeared while it was being written"):
        SparseIndex(out, verbose=False).indexer().index(user_creates_it_meanwhile())
    assert tree(out) == {"theirs.txt": b"created while indexing"}
    (kept,) = tmp_path.glob("idx.new-*/idx")  # the finished index is kept for the user
    assert len(SparseIndex(kept)) == 3 and SparseIndex(kept).verify()["files_hashed"] == 7


def test_a_second_writer_fails_at_once(tmp_path, capsys):
    out = tmp_path / "idx"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
        "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(120)"),
        str(tmp_path / ".idx.lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(FileExistsError, match="being written by another process"):
            SparseIndex(out, verbose=False).indexer().index(docs(3))
        assert main(["index", "--dataset", "disco-mini/test", "--out", str(out)]) == 2
        assert "being written by another process" in one_line(capsys.readouterr().err, "index")
        assert main(["train", "--dataset", "disco-mini/train", "--teacher-run", str(tmp_path / "r.parquet"),
                     "--out", str(out)]) == 2
        assert "being written by another process" in one_line(capsys.readouterr().err, "train")
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    SparseIndex(out, verbose=False).indexer().index(docs(3))  # the writer is gone: free again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]


# -- kill -9 -------------------------------------------------------------------------------------------------

INDEX_SCRIPT = """
import sys, time
import numpy as np
from pyterrier_disco.index import SparseIndex
from pyterrier_disco.index.writer import SparseIndexer
SparseIndexer.CHUNK_POSTINGS = 300  # many spills: more places to die in
rng = np.random.default_rng(0)
def docs():
    for i in range(600):
        if i % 25 == 0:
            time.sleep(0.02)
        terms = rng.choice(500, 30, replace=False)
        yield {"docno": f"d{i}", "toks": {f"t{t}": float(w) for t, w in zip(terms, rng.random(30) + 0.01)}}
print("started", flush=True)
SparseIndex(sys.argv[1], verbose=False).indexer().index(docs())
"""


def test_kill9_while_indexing_leaves_no_index_or_a_whole_one(tmp_path):
    rng = random.Random(SEED)
    out = tmp_path / "idx"
    (tmp_path / "sibling.txt").write_text("not ours")
    before = tree(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", INDEX_SCRIPT, str(out)], env=ENV, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "started"
    time.sleep(rng.uniform(0, 1.0))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if out.exists():  # it finished before the signal: then it is whole
        SparseIndex(out).verify()
    left = {p.name for p in tmp_path.iterdir()} - {"sibling.txt", "idx"}
    assert all(n.startswith(".idx.") and (n.endswith(".tmp") or n.endswith(".lock")) for n in left), (SEED, left)
    SparseIndex(out, verbose=False).indexer(overwrite=out.exists()).index(docs(600))
    assert SparseIndex(out).verify()["num_docs"] == 600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx", "sibling.txt"], SEED  # leftovers cleaned
    assert tree(tmp_path)["sibling.txt"] == before["sibling.txt"]


@pytest.fixture(scope="module")
def mini_run(tmp_path_factory, splade_model):
    """A small teacher run over disco-mini/train (scores from a seeded generator: the tests need a run, not a
    good one), saved as ``disco teacher-run`` saves it."""
    import ir_datasets

    import pyterrier_disco as disco
    from pyterrier_disco.datasets import qrels

    frame = disco.conversations("disco-mini/train")
    judged = set(qrels("disco-mini/train")["qid"])
    turns = [q for q, t in zip(frame["qid"], frame["turn"]) if t > 0 and q in judged][:8]
    docnos = [d.doc_id for d in ir_datasets.load("disco-mini/train").docs_iter()]
    rng = np.random.default_rng(0)
    rows = [(q, d, 30.0 - r + rng.random(), r, "human") for q in turns
            for r, d in enumerate(rng.choice(docnos, 30, replace=False))]
    run = pd.DataFrame(rows, columns=["qid", "docno", "score", "rank", "teacher"])
    path = tmp_path_factory.mktemp("run") / "run.parquet"
    save_teacher_run(run, path, {**doc_model_metadata(splade_model), "k": 30, "teachers": ["human"]})
    return path


TRAIN_ARGS = ["--dataset", "disco-mini/train", "--max-steps", "6", "--checkpoint-every", "2", "--batch-size", "2",
              "--negatives", "3", "--epochs", "2", "--seed", "7", "--max-length", "64", "--lr", "1e-4"]


def _train(run, out, *extra, **popen):
    cmd = [sys.executable, "-m", "pyterrier_disco.cli", "train", "--teacher-run", str(run), "--out", str(out),
           *TRAIN_ARGS, *extra]
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def test_kill9_during_training_then_resume_gives_exactly_the_same_weights(mini_run, tmp_path):
    """Killed at a random point after the first checkpoint (a step, a checkpoint or the student being written),
    then resumed: every tensor equals the uninterrupted run's, bit for bit."""
    rng = random.Random(SEED)
    full, killed = _train(mini_run, tmp_path / "full"), _train(mini_run, tmp_path / "killed")
    while not list((tmp_path / "killed").glob("checkpoint-*[0-9]")):
        assert killed.poll() is None, killed.stderr.read()[-2000:]
        time.sleep(0.02)
    time.sleep(rng.uniform(0, 1.5))
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert full.wait() == 0, full.stderr.read()[-2000:]
    if not (tmp_path / "killed" / "pt_meta.json").exists():
        resumed = _train(mini_run, tmp_path / "killed", "--resume")
        assert resumed.wait() == 0, resumed.stderr.read()[-2000:]
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "model.safetensors"))
    assert a.keys() == b.keys() and len(a) > 10
    assert all(torch.equal(a[k], b[k]) for k in a), (SEED, [k for k in a if not torch.equal(a[k], b[k])])
    log = pd.read_csv(tmp_path / "killed" / "train_log.csv")
    assert list(log["step"]) == list(range(1, 7))
    assert list(log["loss"]) == list(pd.read_csv(tmp_path / "full" / "train_log.csv")["loss"])
    assert sorted(p.name for p in (tmp_path / "killed").iterdir()) == \
        sorted(p.name for p in (tmp_path / "full").iterdir())  # no checkpoint or temporary file left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "killed"]


# -- a full disk, a read-only output ---------------------------------------------------------------------------

def test_a_full_disk_while_indexing_leaves_nothing(tmp_path, monkeypatch):
    with tmpfs(tmp_path / "small", "16k") as small:
        if small is None:
            small = tmp_path / "small"
            real_save = np.save
            monkeypatch.setattr(np, "save", lambda f, *a, **k: (_ for _ in ()).throw(
                OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))) if str(f).startswith(str(small))
                else real_save(f, *a, **k))
        with pytest.raises(OSError) as e:
            SparseIndex(small / "idx", verbose=False).indexer().index(docs(400))
        assert e.value.errno == errno.ENOSPC
        assert list(small.iterdir()) == []


def test_a_full_disk_while_saving_the_student_keeps_the_checkpoint(mini_run, tmp_path, monkeypatch, splade_model):
    """The student is written only when it fits; the run stops with the last checkpoint kept, and --resume
    then ends with the same weights as a run that had the space."""
    import pyterrier_disco as disco
    from pyterrier_disco.datasets import doc_lookup, qrels
    from pyterrier_disco.encoders import SpladeModel
    from pyterrier_disco.train import load_teacher_run

    frame, run = disco.conversations("disco-mini/train"), load_teacher_run(mini_run)
    config = TrainConfig(max_steps=4, checkpoint_every=2, batch_size=2, n_negatives=3, max_length=64, seed=3,
                         freeze_embeddings=False)  # the whole model: a checkpoint of 53 MB, as the tmpfs is sized
    kw = dict(qrels=qrels("disco-mini/train"), config=config, doc_model=splade_model, verbose=False)
    docs_of = doc_lookup("disco-mini/train")
    train(frame, run, docs_of, tmp_path / "full", **kw)
    with tmpfs(tmp_path / "disk", "64m") as disk:  # room for a checkpoint (53 MB), not for the student after it
        if disk is None:
            disk = tmp_path / "disk"
            real_save = SpladeModel.save
            monkeypatch.setattr(SpladeModel, "save", lambda self, folder: (_ for _ in ()).throw(
                OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder))))
        with pytest.raises(OSError, match="the last checkpoint .checkpoint-0000002. is kept.*--resume") as e:
            train(frame, run, docs_of, disk / "out", **kw)
        assert e.value.errno == errno.ENOSPC
        assert sorted(p.name for p in (disk / "out").iterdir()) == \
            [".pyterrier_disco.json", "checkpoint-0000002", "run.json", "train_log.csv"]
        if (disk / "out").stat().st_dev != tmp_path.stat().st_dev:
            subprocess.run(["mount", "-o", "remount,size=128m", str(disk)], check=True)  # space freed
        else:
            monkeypatch.setattr(SpladeModel, "save", real_save)
        train(frame, run, docs_of, disk / "out", resume=True, **kw)
        a = load_file(str(tmp_path / "full" / "model.safetensors"))
        b = load_file(str(disk / "out" / "model.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert not list((disk / "out").glob("checkpoint-*"))


def test_read_only_outputs_fail_first_in_one_line(mini_run, tmp_path, monkeypatch, capsys):
    with tmpfs(tmp_path / "ro", "1m", read_only=True) as ro:
        if ro is None:
            ro = tmp_path / "ro"
            fail_writes_under(monkeypatch, ro, errno.EROFS)
        index = tmp_path / "idx"
        SparseIndex(index, verbose=False).indexer().index(docs(3))
        commands = {
            "index": ["--dataset", "disco-mini/test", "--out", str(ro / "idx")],
            "teacher-run": ["--dataset", "disco-mini/test", "--index", str(index), "--out", str(ro / "run.parquet")],
            "train": ["--dataset", "disco-mini/train", "--teacher-run", str(mini_run), "--out", str(ro / "student")],
            "evaluate": ["--dataset", "disco-mini/test", "--out", str(ro / "results.json")],
        }
        for command, args in commands.items():
            assert main([command, *args]) == 2
            line = one_line(capsys.readouterr().err, command)
            assert "Read-only file system" in line and str(ro) in line, line
        assert list(ro.iterdir()) == []


# -- command-line errors: one line each, before any work ---------------------------------------------------------

def test_bad_options_are_refused_before_any_work_in_one_line(mini_run, tmp_path, capsys, monkeypatch):
    def refused(args, *expected):
        assert main(args) == 2, args
        line = one_line(capsys.readouterr().err, args[0])
        assert all(e in line for e in expected), line

    train_args = ["train", "--dataset", "disco-mini/train", "--teacher-run", str(mini_run),
                  "--out", str(tmp_path / "s")]
    for option, value, message in [("--epochs", "0", "epochs=0 must be >= 1"), ("--max-steps", "0", "max_steps=0"),
                                   ("--max-steps", "-3", "max_steps=-3"), ("--batch-size", "0", "batch_size=0"),
                                   ("--grad-accum", "0", "grad_accum=0"),
                                   ("--checkpoint-every", "0", "checkpoint_every"),
                                   ("--lr", "0", "lr=0.0 must be > 0"), ("--lr", "nan", "lr=nan"),
                                   ("--warmup-ratio", "1.5", "warmup_ratio")]:
        refused([*train_args, option, value], message)
    assert not (tmp_path / "s").exists()
    refused(["index", "--dataset", "disco-mini/test", "--out", str(tmp_path / "i"), "--batch-size", "0"],
            "--batch-size")
    if not torch.cuda.is_available():
        refused(["index", "--dataset", "disco-mini/test", "--out", str(tmp_path / "i"), "--device", "cuda"], "CUDA")
        refused([*train_args, "--device", "cuda:0"], "CUDA")
    refused(["teacher-run", "--dataset", "disco-mini/test", "--index", str(tmp_path), "--out", str(tmp_path / "r"),
             "--k", "0"], "--k must be >= 1")
    refused(["demo", "--workdir", str(tmp_path / "d"), "--epochs", "0"], "epochs=0 must be >= 1")
    refused(["demo", "--workdir", str(tmp_path / "d"), "--lr", "-1"], "lr=-1.0 must be > 0")
    assert not (tmp_path / "d").exists()
    # outputs that are not ours: never replaced, even with --overwrite
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "run.json").write_text("{}")
    (tmp_path / "work" / "draft.txt").write_text("mine")
    before = tree(tmp_path / "work")
    refused(["index", "--dataset", "disco-mini/test", "--out", str(tmp_path / "work"), "--overwrite"], "never deleted")
    refused([*train_args[:-1], str(tmp_path / "work"), "--overwrite"], "never deleted")
    monkeypatch.chdir(tmp_path / "work")
    refused(["index", "--dataset", "disco-mini/test", "--out", ".", "--overwrite"], "never deleted")
    refused(["teacher-run", "--dataset", "disco-mini/test", "--index", str(tmp_path), "--out", "."], "is a folder")
    refused(["teacher-run", "--dataset", "disco-mini/test", "--index", str(tmp_path), "--out", "draft.txt"],
            "is not a teacher run")
    refused(["evaluate", "--dataset", "disco-mini/test", "--out", "draft.txt"], "never replaced")
    assert tree(tmp_path / "work") == before


def test_damaged_inputs_are_named_in_one_line(mini_run, tmp_path, capsys, splade_model):
    import pyarrow.parquet as pq

    from pyterrier_disco.train.teacher import METADATA_KEY

    def refused(args, *expected):
        assert main(args) == 2, args
        line = one_line(capsys.readouterr().err, args[0])
        assert all(e in line for e in expected), line

    table = pq.read_table(mini_run)
    for name, meta, expected in [("empty.parquet", b"[]", "metadata is damaged"),
                                 ("broken.parquet", b"{not json", "metadata is damaged")]:
        pq.write_table(table.replace_schema_metadata({METADATA_KEY: meta}), tmp_path / name)
        refused(["train", "--dataset", "disco-mini/train", "--teacher-run", str(tmp_path / name), "--out",
                 str(tmp_path / "s")], name, expected)
    (tmp_path / "garbage.parquet").write_bytes(b"not parquet at all")
    refused(["train", "--dataset", "disco-mini/train", "--teacher-run", str(tmp_path / "garbage.parquet"), "--out",
             str(tmp_path / "s")], "garbage.parquet")
    index = tmp_path / "idx"
    SparseIndex(index, verbose=False).indexer().index(docs(5))
    meta = json.loads((index / "pt_meta.json").read_text())
    run_args = ["teacher-run", "--dataset", "disco-mini/test", "--index", str(index), "--out", str(tmp_path / "r")]
    for damaged, expected in [("{oops", "is not valid JSON"), ("[1, 2]", "holds a JSON list"),
                              (json.dumps({k: v for k, v in meta.items() if k != "num_terms"}),
                               "lacks valid num_terms")]:
        (index / "pt_meta.json").write_text(damaged)
        refused(run_args, "pt_meta.json", expected)
    (index / "pt_meta.json").write_text(json.dumps(meta))
    lexicon = json.loads((index / "lexicon.json").read_text())
    (index / "lexicon.json").write_text(json.dumps(lexicon[::-1]))  # same size, other content
    refused(["check", str(index)], "lexicon.json", "sha256")
    # students: a JSON list for metadata, a missing or truncated weights file, a document model outside
    student = tmp_path / "student"
    student.mkdir()
    splade_model.save(student)
    (student / "pt_meta.json").write_text("[]")
    eval_args = ["evaluate", "--dataset", "disco-mini/test", "--student", str(student), "--systems", "disco"]
    refused(eval_args, "pt_meta.json", "JSON list")
    (student / "pt_meta.json").write_text(json.dumps({"type": "disco_student", "doc_model": "/somewhere/else"}))
    refused(eval_args, "/somewhere/else", "--model")
    (student / "pt_meta.json").write_text(json.dumps({"type": "disco_student"}))
    weights = (student / "model.safetensors").read_bytes()
    (student / "model.safetensors").write_bytes(weights[:1000])
    refused(eval_args, "cannot load the model", str(student))
    (student / "model.safetensors").unlink()
    refused(eval_args, "cannot load the model", str(student))
    (student / "model.safetensors").write_bytes(weights)
    for f in ("tokenizer.json", "vocab.txt"):
        (student / f).unlink(missing_ok=True)
    refused(eval_args, "has no tokenizer")


def test_indexes_and_topic_files_that_do_not_fit_are_named(tmp_path, monkeypatch, capsys):
    from pyterrier_disco import CorruptFileError
    from pyterrier_disco.datasets._files import OfficialFile
    from pyterrier_disco.index import CorruptIndexError, PisaBackend

    monkeypatch.setenv("TQDM_DISABLE", "1")
    other = tmp_path / "other"  # an index of another collection, recording no dataset
    SparseIndex(other, verbose=False).indexer().index(docs(5))
    assert main(["evaluate", "--dataset", "disco-mini/test", "--index", str(other), "--systems", "raw"]) == 2
    assert "none of the" in one_line(capsys.readouterr().err, "evaluate")
    pisa = tmp_path / "pisa"
    PisaBackend(pisa, verbose=False).indexer().index(docs(5))
    meta = json.loads((pisa / "pt_meta.json").read_text())
    (pisa / "pt_meta.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "stemmer"}))
    with pytest.raises(CorruptIndexError, match="pt_meta.json lacks the PISA index's stemmer"):
        PisaBackend(pisa, verbose=False)
    (pisa / "pt_meta.json").write_text(json.dumps(meta))
    assert PisaBackend(pisa, verbose=False).verify()["files_hashed"] > 3
    monkeypatch.setenv("IR_DATASETS_HOME", str(tmp_path))
    (tmp_path / "ikat").mkdir()
    (tmp_path / "ikat" / "topics.json").write_text('[{"number": 1, "turns": [')
    with pytest.raises(CorruptFileError, match="topics.json is not valid JSON"):
        OfficialFile("ikat", "topics.json", urls=[], expected={}).load_json()


def test_bugs_keep_their_traceback(monkeypatch, tmp_path, capsys):
    import pyterrier_disco.cli as cli

    def buggy(args):
        return {}["missing key"]

    monkeypatch.setattr(cli, "cmd_check", buggy)
    with pytest.raises(KeyError):
        main(["check", str(tmp_path)])
    monkeypatch.undo()
    monkeypatch.setenv("DISCO_TRACEBACK", "1")
    with pytest.raises(FileNotFoundError):
        main(["check", str(tmp_path)])
    monkeypatch.delenv("DISCO_TRACEBACK")
    assert main(["check", str(tmp_path)]) == 2
    assert "no pt_meta.json" in one_line(capsys.readouterr().err, "check")
