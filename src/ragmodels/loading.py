"""Strict weight loading: a checkpoint that lacks a weight of the model is an error, never a random init.

transformers' ``from_pretrained`` initialises weights missing from a checkpoint at random, prints a
MISSING/UNEXPECTED table and goes on. We load through it (so its tied-weight and ignore lists still
apply: tied or ignorable keys are never reported) and raise :class:`WeightLoadError` naming the keys,
unless the caller opts out with ``strict=False`` (then transformers' own report is all there is).
"""

from __future__ import annotations

import os
from typing import Any

_SHOWN = 8  # keys listed per kind in the message; the count says how many there are


class WeightLoadError(ValueError):
    """A checkpoint's weights do not match the model: keys missing, unexpected or of another shape."""


def check_loading_info(info: dict[str, Any], source: str | os.PathLike, what: str, *,
                       allow_unexpected: bool = False) -> None:
    """Raise WeightLoadError when ``info`` (transformers' ``output_loading_info``) reports a bad key.

    ``allow_unexpected``: keys the checkpoint has and the model does not are fine (a sub-model loaded from a
    checkpoint with task heads, e.g. BERT's pre-training head); missing and mismatched keys never are.
    """
    problems = []
    kinds = [("missing", info.get("missing_keys")), ("of another shape", info.get("mismatched_keys"))]
    if not allow_unexpected:
        kinds.append(("unexpected", info.get("unexpected_keys")))
    for kind, keys in kinds:
        names = sorted(k if isinstance(k, str) else k[0] for k in (keys or ()))
        if names:
            shown = ", ".join(names[:_SHOWN]) + (f", ... ({len(names)} in all)" if len(names) > _SHOWN else "")
            problems.append(f"{kind}: {shown}")
    if problems:
        raise WeightLoadError(
            f"The {what} checkpoint {os.fspath(source)} does not match the model ({'; '.join(problems)}). Loading it "
            "would leave weights randomly initialised. Check that the folder is the one you meant and was written "
            "completely (e.g. by save_pretrained); pass strict=False to load it anyway."
        )


def load_pretrained(model_class: Any, source: str | os.PathLike, what: str, *, strict: bool = True,
                    allow_unexpected: bool = False, **kwargs: Any) -> Any:
    """``model_class.from_pretrained(source, **kwargs)``, checked by :func:`check_loading_info` when ``strict``."""
    if not strict:
        return model_class.from_pretrained(source, **kwargs)
    model, info = model_class.from_pretrained(source, output_loading_info=True, **kwargs)
    check_loading_info(info, source, what, allow_unexpected=allow_unexpected)
    return model
