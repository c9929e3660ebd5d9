"""Training checkpoints that resume exactly and are published atomically.

A checkpoint is a folder ``checkpoint-<step>`` holding ``model.safetensors`` (every weight of the model,
including a context encoder under training), ``training_state.pt`` (optimizer, scheduler, per-process
RNG states, step, model signature, config; plain tensors and containers, loadable with
``torch.load(weights_only=True)``) and, for end-to-end training, ``knowledge_base.safetensors`` (the
live passage embeddings). It is written into a hidden temporary folder and renamed into place; the
``latest`` file is replaced atomically afterwards. A failed save never touches an existing checkpoint.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from .._io import atomic_write_bytes

PREFIX = "checkpoint-"
LATEST = "latest"
WEIGHTS = "model.safetensors"
STATE = "training_state.pt"
KB_EMBEDDINGS = "knowledge_base.safetensors"


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from (missing files, written for another model)."""


def model_signature(model: torch.nn.Module) -> dict[str, str]:
    """Class name and a digest of parameter names and shapes: what a checkpoint must match to load."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)};".encode())
    return {"model_class": type(model).__name__, "parameters": digest.hexdigest()}


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    output_dir: str | os.PathLike,
    step: int,
    model: torch.nn.Module,
    state: dict[str, Any],
    kb_embeddings: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``checkpoint-<step>`` (see module doc); ``state`` goes to training_state.pt as is."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / f"{PREFIX}{step}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=output_dir))
    try:
        save_model(model, str(tmp / WEIGHTS))
        torch.save({**state, "step": step, "signature": model_signature(model)}, tmp / STATE)
        if kb_embeddings:
            save_file({k: v.contiguous() for k, v in kb_embeddings.items()}, str(tmp / KB_EMBEDDINGS))
        _publish(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    atomic_write_bytes(output_dir / LATEST, target.name.encode())
    return target


def _publish(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``; an existing ``target`` is swapped out only after the new one is complete."""
    if not target.exists():
        os.rename(tmp, target)
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.rename(target, old)
    os.rename(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def find_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Published checkpoints of ``output_dir``, oldest step first."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and p.name[len(PREFIX):].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def resolve_checkpoint(resume_from: str, output_dir: str | os.PathLike) -> Path:
    """A checkpoint folder from ``resume_from``: a path, or "latest" for the newest one in ``output_dir``."""
    if resume_from == LATEST:
        latest = Path(output_dir) / LATEST
        if latest.is_file():
            return Path(output_dir) / latest.read_text().strip()
        found = find_checkpoints(output_dir)
        if not found:
            raise CheckpointError(f"resume_from='latest' but {output_dir} has no checkpoint.")
        return found[-1]
    return Path(resume_from)


def load_checkpoint(path: str | os.PathLike, model: torch.nn.Module) -> dict[str, Any]:
    """Load weights into ``model`` after checking the checkpoint was written for this model; return the state."""
    path = Path(path)
    for name in (WEIGHTS, STATE):
        if not (path / name).is_file():
            raise CheckpointError(f"{path} is not a training checkpoint: {name} is missing.")
    state = torch.load(path / STATE, weights_only=True, map_location="cpu")
    expected, found = model_signature(model), state.get("signature")
    if found != expected:
        raise CheckpointError(
            f"Checkpoint {path} was written for another model ({found and found['model_class']} with different "
            f"parameter names or shapes); this run trains a {expected['model_class']}. Resume with the model "
            "(and context encoder) the checkpoint was trained from, or start a new output_dir."
        )
    load_model(model, str(path / WEIGHTS), strict=True)
    if (path / KB_EMBEDDINGS).is_file():
        state["kb_embeddings"] = load_file(str(path / KB_EMBEDDINGS))
    return state
