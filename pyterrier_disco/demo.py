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

Everything lands in ``workdir``; a second run reuses the index, rewrites, teacher runs and students.
"""
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd

TRAIN, TEST = "disco-mini/train", "disco-mini/test"


@dataclass
class DemoConfig:
    workdir: Path = Path("runs/demo")
    train_minutes: float = 10.0      # budget for both students together
    epochs: int = 3
    batch_size: int = 10
    negatives: int = 16
    lr: float = 2e-4                 # above the paper's 2e-5: the demo has minutes, not hours
    loss: str = "disco"
    seed: int = 42
    llm_batch_size: Optional[int] = None  # None: 1 on a CPU (measured faster than padded batches), 8 on a GPU
    llm_train_turns: int = 100       # training turns rewritten by the LLM teacher (whole conversations)
    test_turns: Optional[int] = None  # evaluate on the first test conversations only (None: all)
    verbose: bool = True


def _step(n: int, text: str) -> None:
    print(f"[{n}/6] {text}", flush=True)


def _first_conversations(frame: pd.DataFrame, n_turns: int) -> pd.DataFrame:
    """The turns of the first conversations, up to about ``n_turns`` turns (whole conversations)."""
    sizes = frame.groupby("conversation_id", sort=False).size()
    keep = sizes.index[(sizes.cumsum() - sizes) < n_turns]
    return frame[frame["conversation_id"].isin(keep)].reset_index(drop=True)


def run_demo(config: Optional[DemoConfig] = None) -> pd.DataFrame:
    """Run the demo; returns the summary table (also written under ``workdir/results``)."""
    from . import datasets
    from .encoders import DiSCo, Splade
    from .evaluation import compare, format_table, standard_systems, write_outputs
    from .index import SparseIndex, index_dataset
    from .rewrite import LLMRewriter, RewriteColumns
    from .train.teacher import build_teacher_run, load_teacher_run, save_teacher_run
    from .train.trainer import TrainConfig, train

    cfg = config or DemoConfig()
    work = Path(cfg.workdir)
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    splade = Splade()

    _step(1, "indexing the disco-mini passages with SPLADE-tiny")
    index = SparseIndex(work / "index", verbose=cfg.verbose)
    if not index.built():
        index_dataset(TRAIN, index.path, splade=splade, verbose=cfg.verbose)
    print(f"      {len(index)} passages in {index.path}")

    train_frame = datasets.conversations(TRAIN)
    llm_frame = _first_conversations(train_frame, cfg.llm_train_turns)
    _step(2, f"rewriting {len(llm_frame)} of {len(train_frame)} training turns with the LLM teacher "
             "(cached across runs)")
    llm = LLMRewriter(batch_size=cfg.llm_batch_size, verbose=cfg.verbose)
    llm_frame = RewriteColumns({"llm_rewrite": llm})(llm_frame)
    print(f"      {llm.llm_calls} LLM calls made now ({len(llm_frame) - llm.llm_calls} from the cache), "
          f"{llm.fallbacks} fallbacks to the utterance")

    _step(3, "teacher runs: human rewrites (all turns) and LLM rewrites >> SPLADE >> retrieval")
    run_file = work / "teacher_run.parquet"
    if run_file.exists():
        run = load_teacher_run(run_file)
    else:
        human = build_teacher_run(train_frame, {"human": "human_rewrite"}, splade, index, verbose=cfg.verbose)
        llm_run = build_teacher_run(llm_frame, {"llm": "llm_rewrite"}, splade, index, verbose=cfg.verbose)
        run = pd.concat([human, llm_run], ignore_index=True)
        run.attrs["teacher_run"] = {**human.attrs["teacher_run"], "teachers": ["human", "llm"]}
        save_teacher_run(run, run_file)
    print(f"      {len(run)} (turn, passage, teacher) scores in {run_file}")

    _step(4, f"training DiSCo students (budget {cfg.train_minutes:g} min)")
    qrels_train = datasets.qrels(TRAIN)
    docs = datasets.doc_lookup(TRAIN)
    train_cfg = TrainConfig(loss=cfg.loss, epochs=cfg.epochs, batch_size=cfg.batch_size,
                            n_negatives=cfg.negatives, lr=cfg.lr, seed=cfg.seed, checkpoint_every=25)
    students = {}
    teacher_sets = {"disco-human": ["human"], "disco-human+llm": ["human", "llm"]}
    for name, teachers in teacher_sets.items():
        out = work / name
        if (out / "pt_meta.json").exists():
            students[name] = DiSCo.from_pretrained(out)
            print(f"      {name}: reusing {out}")
            continue
        t0 = time.monotonic()
        students[name] = train(train_frame, run[run["teacher"].isin(teachers)], docs, out, qrels=qrels_train,
                               config=train_cfg, doc_model=splade.doc_model, resume=True,
                               time_budget_s=cfg.train_minutes * 60 / len(teacher_sets), verbose=cfg.verbose,
                               provenance={"dataset": TRAIN, "teachers": teachers})
        print(f"      {name}: {students[name].meta['steps']} steps in {time.monotonic() - t0:.0f} s -> {out}")

    _step(5, "comparing the systems on disco-mini/test")
    test_frame = datasets.conversations(TEST)
    if cfg.test_turns:
        test_frame = _first_conversations(test_frame, cfg.test_turns)
    systems = standard_systems(["raw", "fc", "human", "llm", "disco", "fusion"], splade, students=students,
                               llm=llm, fusion_of="disco-human+llm")
    summary, per_turn = compare(systems, test_frame, datasets.qrels(TEST), index, baseline="raw",
                                verbose=cfg.verbose)

    _step(6, "results")
    print(f"\ndisco-mini/test: {len(test_frame)} turns of {test_frame['conversation_id'].nunique()} conversations; "
          f"index of {len(index)} passages\n")
    print(format_table(summary))
    paths = write_outputs(summary, per_turn, work / "results")
    print("\nwritten: " + ", ".join(str(p) for p in paths.values()))
    print(f"demo finished in {time.monotonic() - started:.0f} s")
    return summary
