"""TFModelOutput: the access transformers' TF ``ModelOutput`` gives, for our TF output dataclasses.

By name (``out.logits``), by key (``out["logits"]``, ``"logits" in out``, ``keys()`` / ``values()`` /
``items()``) and by position over the fields that are not None (``out[0]``, ``out[1:]``,
``to_tuple()``), as transformers' outputs do: a field left None is skipped, so ``out[0]`` of a DPR
question encoder is its pooled output.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from typing import Any


class TFModelOutput:
    """Mixin for dataclasses of optional fields: ModelOutput-style keys, indices and tuples."""

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(value for _, value in self.items())

    def items(self) -> list[tuple[str, Any]]:
        return [(f.name, value) for f in fields(self) if (value := getattr(self, f.name)) is not None]

    def keys(self) -> list[str]:
        return [name for name, _ in self.items()]

    def values(self) -> list[Any]:
        return [value for _, value in self.items()]

    def __getitem__(self, key: str | int | slice) -> Any:
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(key)
            return getattr(self, key)
        return self.to_tuple()[key]

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.items())
