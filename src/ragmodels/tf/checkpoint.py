"""Reading and writing Hugging Face checkpoints for the TF models: NumPy in between, same key names.

Reads ``model.safetensors`` (single or sharded) or ``pytorch_model.bin`` from a folder or the Hub;
writes ``model.safetensors`` (metadata format "pt", as transformers writes) that PyTorch loads back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import tensorflow as tf
from safetensors.numpy import load_file, save_file
from transformers.utils import cached_file

SAFE_WEIGHTS, SAFE_INDEX, TORCH_WEIGHTS = "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"


def _find(path: str | os.PathLike, filename: str, **hub_kwargs) -> str | None:
    return cached_file(str(path), filename, _raise_exceptions_for_missing_entries=False, **hub_kwargs)


def read_state_dict(path: str | os.PathLike, **hub_kwargs) -> dict[str, np.ndarray]:
    """All tensors of the checkpoint at ``path`` (folder or Hub id) as float32/int NumPy arrays."""
    if (single := _find(path, SAFE_WEIGHTS, **hub_kwargs)) is not None:
        return load_file(single)
    if (index := _find(path, SAFE_INDEX, **hub_kwargs)) is not None:
        shards = sorted(set(json.loads(Path(index).read_text())["weight_map"].values()))
        return {k: v for shard in shards for k, v in load_file(_find(path, shard, **hub_kwargs)).items()}
    if (torch_file := _find(path, TORCH_WEIGHTS, **hub_kwargs)) is not None:
        import torch

        state = torch.load(torch_file, map_location="cpu", weights_only=True)
        return {k: v.float().numpy() if v.is_floating_point() else v.numpy() for k, v in state.items()}
    raise OSError(f"No {SAFE_WEIGHTS}, {SAFE_INDEX} or {TORCH_WEIGHTS} found at {path}.")


def assign(params: dict[str, tf.Variable], state: dict[str, np.ndarray], ignored: tuple[str, ...] = ()) -> None:
    """Copy ``state`` into ``params`` by key; every param must be present, extra keys must be ``ignored``."""
    missing = sorted(set(params) - set(state))
    unexpected = sorted(set(state) - set(params) - set(ignored))
    if missing or unexpected:
        raise ValueError(
            f"Checkpoint does not match the TF model: missing {missing[:8]}{'...' if len(missing) > 8 else ''}, "
            f"unexpected {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}."
        )
    for name, var in params.items():
        value = state[name]
        if tuple(value.shape) != tuple(var.shape):
            raise ValueError(f"{name}: checkpoint shape {value.shape} != model shape {tuple(var.shape)}.")
        var.assign(value.astype(var.dtype.as_numpy_dtype))


def write_safetensors(folder: Path, params: dict[str, tf.Variable]) -> None:
    """Write ``params`` as ``folder/model.safetensors`` under their (PyTorch) names."""
    tensors = {name: np.ascontiguousarray(var.numpy()) for name, var in params.items()}
    save_file(tensors, str(folder / SAFE_WEIGHTS), metadata={"format": "pt"})
