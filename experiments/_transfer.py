"""Leave-one-collection-out steps shared by transfer.py, recipe_search.py and default_student.py: the training
pool of a held-out collection, its pooled index and teacher run, students cached by their settings, and the
held-out comparison. Everything is cached under ``--work`` (keyed by settings), so an interrupted sweep resumes.

Training collections: every registered real collection with human rewrites (TREC CAsT 2019-2022, iKAT 2023 train
and 2024 test), minus the held-out family; optionally the project-written disco-mini. CAsT 2019 and 2020 have no
corpus here: their teacher runs retrieve from the pooled topic passages of the other training collections and
their positives are the teacher's top documents (``missing_positive="teacher_top"``).
"""
import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence

REAL = ["trec-cast/v1/2019", "trec-cast/v1/2020", "trec-cast/v2/2021/topic-passages",
        "trec-cast/v3/2022/topic-passages", "ikat/2023/train/topic-passages", "ikat/2024/test/topic-passages"]
MINI = ["disco-mini/train", "disco-mini/test"]
NO_CORPUS = {"trec-cast/v1/2019", "trec-cast/v1/2020"}  # the CAsT collection is not available here
# held-out id -> (family left out of training, evaluation dataset)
HELD_OUT = {
    "ikat/2023/train": ("ikat/", "ikat/2023/train"),
    "trec-cast/v3/2022": ("trec-cast/v3/2022", "trec-cast/v3/2022/topic-passages"),
}
# where each official file of ../shared/data goes under $IR_DATASETS_HOME (ir_datasets' CAsT 2019/2020 folders too)
LAYOUT = {"ikat": ["ikat/2023", "ikat/2024"], "trec-cast": ["trec-cast/2021", "trec-cast/2022"],
          "trec-cast/2019": ["trec-cast/2019"], "trec-cast/2020": ["trec-cast/2020"]}


def data_home(shared: Optional[str], work: Path) -> None:
    """With ``--data DIR`` (a copy of ../shared/data): link its official files into ``work/irds`` under the names
    the loaders look for, and point ``IR_DATASETS_HOME`` there. Must run before ir_datasets is imported."""
    if not shared:
        return
    home = (work / "irds").resolve()
    for folder, sources in LAYOUT.items():
        (home / folder).mkdir(parents=True, exist_ok=True)
        for src in sources:
            for f in (Path(shared) / src).glob("*"):
                link = home / folder / f.name
                if not link.exists():
                    link.symlink_to(f.resolve())
    os.environ["IR_DATASETS_HOME"] = str(home)
    os.environ.setdefault("DISCO_OFFLINE", "1")


def training_ids(held_out: Optional[str], mini: bool = False) -> List[str]:
    """The training collections when ``held_out`` is left out (``None``: all of them, for the default student)."""
    family = HELD_OUT[held_out][0] if held_out else None
    ids = [i for i in REAL if family is None or not i.startswith(family)]
    return ids + (MINI if mini else [])


def doc_ids(ids: Sequence[str]) -> List[str]:
    return [i for i in ids if i not in NO_CORPUS]


def digest(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def pool_index(ids: Sequence[str], splade, work: Path):
    """The index of the pooled corpus of ``ids`` (those with a corpus), built once per document model."""
    from pyterrier_disco.index import dataset_index, index_folder

    docs = doc_ids(ids)
    return dataset_index(",".join(docs), splade, index_folder(docs, splade, work / "indexes"))


def teacher_run(ids: Sequence[str], splade, index, work: Path, limit: Optional[int] = None,
                teachers: Sequence[str] = ("human",), k: int = 1000):
    """The pooled teacher run of ``ids`` over ``index`` (cached by datasets, teachers, limit, model, k)."""
    import pyterrier_disco as disco
    from pyterrier_disco.index import model_key
    from pyterrier_disco.train import build_teacher_run, load_teacher_run, resolve_teachers, save_teacher_run
    from pyterrier_disco.train.data import limit_turns

    key = digest({"ids": list(ids), "docs": doc_ids(ids), "teachers": list(teachers), "limit": limit, "k": k})
    path = work / "teacher_runs" / f"pool-{key}.{model_key(splade)}.parquet"
    if path.exists():
        return load_teacher_run(path)
    frame = limit_turns(disco.conversations(list(ids)), limit)
    run = build_teacher_run(frame, resolve_teachers(list(teachers), frame), splade, index, k=k)
    save_teacher_run(run, path)
    return run


def student_folder(ids: Sequence[str], config, splade, work: Path, *, limit: Optional[int] = None,
                   label: str = "student") -> Path:
    """Where :func:`student` keeps the student of these settings: the name ends with a hash of all of them."""
    settings = {"config": asdict(config), "datasets": list(ids), "docs": doc_ids(ids), "limit": limit,
                "doc_model": splade.doc_model.source, "teachers": ["human"]}
    return work / "students" / f"{label}-{digest(settings)}"


def student(ids: Sequence[str], config, splade, work: Path, *, limit: Optional[int] = None, label: str = "student",
            device=None, verbose: bool = True):
    """Train (or reuse) a student on the pooled ``ids`` with a :class:`TrainConfig`; the folder name holds a
    hash of everything that makes the student, so another setting never reuses it. An interrupted training
    resumes from its last checkpoint."""
    import pyterrier_disco as disco
    from pyterrier_disco.train import train
    from pyterrier_disco.train.data import training_data

    out = student_folder(ids, config, splade, work, limit=limit, label=label)
    if (out / "pt_meta.json").exists():
        return disco.DiSCo.from_pretrained(out, device=device)
    index = pool_index(ids, splade, work)
    run = teacher_run(ids, splade, index, work, limit)
    data = training_data(list(ids), run, docs=doc_ids(ids), limit=limit)
    return train(data.conversations, run, data.docs, out, qrels=data.qrels, config=config,
                 doc_model=splade.doc_model, device=device, resume=(out / "run.json").exists(), verbose=verbose,
                 provenance={**data.provenance(), "settings_key": out.name.rsplit("-", 1)[1]})


def systems(splade, student_model, *, llm=None, names: Sequence[str] = ("raw", "fc", "human")):
    """The held-out comparison: the baselines of ``names``, the student, the student fused with the raw
    utterance run (0 LLM calls) and, with ``llm``, the LLM rewrite and the student fused with it."""
    from pyterrier_disco.evaluation import System, standard_systems

    chosen = standard_systems([n for n in names if n != "llm"], splade)
    raw = next((s for s in chosen if s.name == "raw"), None) or standard_systems(["raw"], splade)[0]
    disco = System("disco", "DiSCo (student)", student_model.query_encoder())
    chosen += [disco, System("disco+raw", "DiSCo + raw fusion", disco.encoder, parts=[disco, raw])]
    if student_model.utterance_weight:
        # the student's own part: with the utterance's vector added, the student is the exact CombSUM fusion of
        # this and the raw utterance (a dot product is linear in the query vector), in one retrieval
        chosen.append(System("disco-own", "DiSCo, conversation vector only", student_model.conversation_encoder(
            student_model.formatter, utterance_weight=0.0)))
    if llm is not None:
        llm_system = standard_systems(["llm"], splade, llm=llm)[0]
        chosen += [llm_system, System("disco+llm", "DiSCo + LLM fusion", disco.encoder, parts=[disco, llm_system])]
    return chosen


def targets(summary, human: str = "human") -> Dict[str, object]:
    """The issue's floors, from a summary holding raw, human, disco and disco+raw."""
    row = {name: r for name, r in summary.set_index("name").iterrows()}
    raw, student, fused = row["raw"], row["disco"], row["disco+raw"]
    retrieval = lambda r: r["encode_ms_per_query"] + r["retrieve_ms_per_query"]  # noqa: E731
    out = {"student_RR": float(student["RR"]), "raw_RR": float(raw["RR"]),
           "RR_above_raw_by_0.05": bool(student["RR"] >= raw["RR"] + 0.05),
           "R@100_not_below_raw": bool(student["R@100"] >= raw["R@100"]),
           "q_len_at_most_60": bool(student["q_len"] <= 60),
           "ms_ratio_to_raw": float(retrieval(student) / retrieval(raw)),
           "fusion_RR_above_both": bool(fused["RR"] > max(student["RR"], raw["RR"])),
           "fusion_nDCG@3_above_both": bool(fused["nDCG@3"] > max(student["nDCG@3"], raw["nDCG@3"]))}
    out["ms_at_most_3x_raw"] = out["ms_ratio_to_raw"] <= 3
    if "disco-own" in row:  # the in-vector fusion: the student = its own vector + the raw utterance's
        own = row["disco-own"]
        out["own_vector_RR"] = float(own["RR"])
        out["in_vector_fusion_RR_above_both"] = bool(student["RR"] > max(own["RR"], raw["RR"]))
        out["in_vector_fusion_nDCG@3_above_both"] = bool(student["nDCG@3"] > max(own["nDCG@3"], raw["nDCG@3"]))
    if human in row:
        out["share_of_human_RR"] = float(student["RR"] / row[human]["RR"])
        out["fusion_share_of_human_RR"] = float(fused["RR"] / row[human]["RR"])
        out["RR_at_least_90pct_human"] = out["share_of_human_RR"] >= 0.9
    return out
