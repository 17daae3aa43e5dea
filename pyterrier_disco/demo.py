"""``disco demo``: the whole method end to end on the embedded ``disco-mini`` collection, on a CPU.

1. index the disco-mini passages with the embedded SPLADE-tiny;
2. rewrite the turns of the first training conversations with the LLM teacher (SmolLM2-135M-Instruct,
   about 1-3 s a turn on 2 CPU cores, so ``llm_train_turns`` bounds it; cached);
3. build teacher runs: human rewrites (every turn) and LLM rewrites, each >> SPLADE >> retrieval; where a
   turn has no LLM rewrite, the multi-teacher score is the human teacher's alone;
4. train two DiSCo students (human teacher; human + LLM teachers), within a time budget;
5. compare on disco-mini/test, in one pt.Experiment: raw utterance, full context (untrained), human rewrite,
   LLM rewrite, both students, and the multi-teacher student fused with the LLM pipeline;
6. print the table and write it (CSV, JSON) with two plots (by conversation depth; effectiveness vs. cost).

Everything lands in ``workdir``; a second run reuses the index, rewrites, teacher runs and students. The
teacher run and each student are stored with the settings they were built with (``<name>.settings.json``
beside them) and rebuilt when the settings differ (e.g. other ``llm_train_turns``, ``epochs`` or ``lr``).
"""
import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import pandas as pd

from .train.config import AT_LEAST_1, POSITIVE, RECIPES, CommandLineFields, option
from .train.losses import LOSS_PRESETS

TRAIN, TEST = "disco-mini/train", "disco-mini/test"


@dataclass
class DemoConfig(CommandLineFields):
    """The demo's settings; ``disco demo``'s options are generated from these fields."""
    workdir: Path = option(Path("runs/demo"), "where the index, runs, students and results go")
    train_minutes: float = option(10.0, "training budget for both students together")
    epochs: int = option(3, "training epochs of each student (within the budget)")
    batch_size: int = option(10, "training turns per batch")
    negatives: int = option(16, "teacher-run negatives per training turn")
    lr: float = option(2e-4, "above the paper's 2e-5: the demo trains for minutes")
    recipe: str = option("transfer", "transfer: the recipe `disco train` trains (followup loss, the utterance's "
                         "vector, frozen word embeddings); release: DiSCo as released (disco loss, all weights "
                         "trained)", choices=RECIPES)
    loss: Optional[str] = option(None, "training loss preset (see `disco train --help`; default: the recipe's)",
                                 choices=LOSS_PRESETS)
    seed: int = option(42, "seeds the students' training", cli=False)
    # None: 1 on a CPU (measured faster than padded batches), 8 on a GPU
    llm_batch_size: Optional[int] = option(None, "LLM rewriting batch size", cli=False)
    llm_train_turns: int = option(100, "training turns rewritten by the LLM teacher (whole conversations; about "
                                  "1-3 s each on 2 CPU cores)")
    test_turns: Optional[int] = option(None, "evaluate on the first test conversations only, about N turns "
                                       "(default: all)")
    verbose: bool = option(True, "progress bars", cli=False)

    def __post_init__(self):
        """Refuse an unknown recipe or loss, a value of the wrong type, a count below 1 or a learning rate or
        budget that is not > 0, before any work."""
        self.workdir = Path(self.workdir)
        self._refuse_invalid("demo")

    @staticmethod
    def _rules():
        return [(name, *AT_LEAST_1) for name in ("epochs", "batch_size", "negatives", "llm_batch_size",
                                                "test_turns")] + [
            ("lr", *POSITIVE), ("train_minutes", *POSITIVE),
            ("llm_train_turns", "must be >= 0", lambda v: v >= 0)]


class _Steps:
    """Prints each step's heading and records the seconds each step took."""

    def __init__(self):
        self.seconds = {}
        self._current, self._t0 = None, time.monotonic()

    def __call__(self, n: int, key: str, text: str) -> None:
        self.close()
        self._current, self._t0 = key, time.monotonic()
        print(f"[{n}/6] {text}", flush=True)

    def close(self) -> None:
        if self._current is not None:
            self.seconds[self._current] = round(time.monotonic() - self._t0, 2)
        self._current = None


def _first_conversations(frame: pd.DataFrame, n_turns: int) -> pd.DataFrame:
    """The turns of the first conversations, up to about ``n_turns`` turns (whole conversations)."""
    sizes = frame.groupby("conversation_id", sort=False).size()
    keep = sizes.index[(sizes.cumsum() - sizes) < n_turns]
    return frame[frame["conversation_id"].isin(keep)].reset_index(drop=True)


def _settings_file(path: Path) -> Path:
    return path.parent / f"{path.stem}.settings.json"


def _built_with(path: Path, settings: dict) -> bool:
    """True when the settings stored beside ``path`` are ``settings`` (compared as JSON)."""
    try:
        stored = json.loads(_settings_file(path).read_text())
    except (OSError, ValueError):
        return False
    return stored == json.loads(json.dumps(settings))


def _store_settings(path: Path, settings: dict) -> None:
    from ._utils import write_json
    write_json(_settings_file(path), settings)


def _digest(values) -> str:
    return hashlib.sha1("\n".join(map(str, values)).encode()).hexdigest()[:16]


def run_demo(config: Optional[DemoConfig] = None) -> pd.DataFrame:
    """Run the demo; returns the summary table (also written under ``workdir/results``).

    ``summary.attrs`` holds ``llm_calls`` (LLM generations computed in this run, 0 when every rewrite came
    from the cache) and ``seconds`` (the wall time of each step).
    """
    from . import datasets
    from .encoders import Splade
    from .student import DiSCo
    from .evaluation import compare, format_table, standard_systems, write_outputs
    from .index import SparseIndex, index_dataset
    from .rewrite import LLMRewriter, RewriteColumns
    from .train.teacher import build_teacher_run, load_teacher_run, save_teacher_run
    from .train.trainer import TrainConfig, train

    cfg = config or DemoConfig()
    work = cfg.workdir
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    step = _Steps()
    step(1, "index", "indexing the disco-mini passages with SPLADE-tiny")
    splade = Splade()
    index = SparseIndex(work / "index", verbose=cfg.verbose)
    if not index.built():
        index_dataset(TRAIN, index.path, splade=splade, verbose=cfg.verbose)
    print(f"      {len(index)} passages in {index.path}")

    train_frame = datasets.conversations(TRAIN)
    llm_frame = _first_conversations(train_frame, cfg.llm_train_turns)
    step(2, "llm_rewrite", f"rewriting {len(llm_frame)} of {len(train_frame)} training turns with the LLM "
                           "teacher (cached across runs)")
    # The paper encodes the rewrite alone (policy "rewrite"); the 135M demo LLM's rewrites alone lose words of
    # the utterance, so the demo appends them to it: measured on ikat/2023/train, see the README's demo section
    llm = LLMRewriter(batch_size=cfg.llm_batch_size, policy="utterance+rewrite", verbose=cfg.verbose)
    llm_frame = RewriteColumns({"llm_rewrite": llm})(llm_frame)
    print(f"      {llm.llm_calls} LLM calls made now ({len(llm_frame) - llm.llm_calls} from the cache), "
          f"{llm.fallbacks} fallbacks to the utterance")

    step(3, "teacher_runs", "teacher runs: human rewrites (all turns) and LLM rewrites >> SPLADE >> retrieval")
    run_file = work / "teacher_run.parquet"
    run_settings = {"dataset": TRAIN, "teachers": ["human", "llm"], "k": 1000,
                    "doc_model": splade.doc_model.vocab_fingerprint, "index_docs": len(index),
                    "human_turns": len(train_frame), "llm_turns": len(llm_frame),
                    "llm_qids": _digest(llm_frame["qid"]),
                    "llm": {**llm.cache_settings(), "policy": llm.policy, "context": llm.context,
                            "prompt_hash": llm.prompt_hash()}}
    if run_file.exists() and _built_with(run_file, run_settings):
        run = load_teacher_run(run_file)
        print(f"      reusing {run_file}")
    else:
        human = build_teacher_run(train_frame, {"human": "human_rewrite"}, splade, index, verbose=cfg.verbose)
        llm_run = build_teacher_run(llm_frame, {"llm": llm}, splade, index, verbose=cfg.verbose)  # cached rewrites
        run = pd.concat([human, llm_run], ignore_index=True)
        run.attrs["teacher_run"] = {**human.attrs["teacher_run"], "teachers": ["human", "llm"], "teacher_details": {
            **human.attrs["teacher_run"]["teacher_details"], **llm_run.attrs["teacher_run"]["teacher_details"]}}
        save_teacher_run(run, run_file)
        _store_settings(run_file, run_settings)
    print(f"      {len(run)} (turn, passage, teacher) scores in {run_file}")

    step(4, "train", f"training DiSCo students, {cfg.recipe} recipe (budget {cfg.train_minutes:g} min)")
    qrels_train = datasets.qrels(TRAIN)
    docs = datasets.doc_lookup(TRAIN)
    recipe = {**RECIPES[cfg.recipe], **({"loss": cfg.loss} if cfg.loss else {})}
    train_cfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, n_negatives=cfg.negatives, lr=cfg.lr,
                            seed=cfg.seed, checkpoint_every=25, **recipe)
    students = {}
    teacher_sets = {"disco-human": ["human"], "disco-human+llm": ["human", "llm"]}
    budget_s = cfg.train_minutes * 60 / len(teacher_sets)
    for name, teachers in teacher_sets.items():
        out = work / name
        settings = {"train_config": asdict(train_cfg), "time_budget_s": budget_s, "teachers": teachers,
                    "teacher_run": run_settings}
        same = _built_with(out, settings)
        if same and (out / "pt_meta.json").exists():
            students[name] = DiSCo.from_pretrained(out)
            print(f"      {name}: reusing {out}")
            continue
        # the same settings without a student: an interrupted run, resumed; other settings: trained anew
        _store_settings(out, settings)
        t0 = time.monotonic()
        students[name] = train(train_frame, run[run["teacher"].isin(teachers)], docs, out, qrels=qrels_train,
                               config=train_cfg, doc_model=splade.doc_model, resume=same, overwrite=not same,
                               time_budget_s=budget_s, verbose=cfg.verbose,
                               provenance={"dataset": TRAIN, "teachers": teachers})
        print(f"      {name}: {students[name].meta['steps']} steps in {time.monotonic() - t0:.0f} s -> {out}")

    step(5, "evaluate", "comparing the systems on disco-mini/test")
    test_frame = datasets.conversations(TEST)
    if cfg.test_turns:
        test_frame = _first_conversations(test_frame, cfg.test_turns)
    systems = standard_systems(["raw", "fc", "human", "llm", "disco", "fusion"], splade, students=students,
                               llm=llm, fusion_of="disco-human+llm")
    summary, per_turn = compare(systems, test_frame, datasets.qrels(TEST), index, baseline="raw",
                                verbose=cfg.verbose)

    step(6, "write", "results")
    print(f"\ndisco-mini/test: {len(test_frame)} turns of {test_frame['conversation_id'].nunique()} conversations; "
          f"index of {len(index)} passages\n")
    print(format_table(summary))
    paths = write_outputs(summary, per_turn, work / "results")
    print("\nwritten: " + ", ".join(str(p) for p in paths.values()))
    step.close()
    print(f"demo finished in {time.monotonic() - started:.0f} s ("
          + ", ".join(f"{k} {v:.0f} s" for k, v in step.seconds.items()) + ")")
    summary.attrs["llm_calls"] = llm.llm_calls
    summary.attrs["seconds"] = {**step.seconds, "total": round(time.monotonic() - started, 2)}
    return summary
