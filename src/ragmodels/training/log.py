"""The training log: one JSON object per line (step losses, learning rate, dev metrics), main process only."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .._io import atomic_write_bytes


class JsonlLog:
    """Appends records to ``path``; on resume, records after the resumed step are dropped first."""

    def __init__(self, path: str | os.PathLike, enabled: bool = True, resume_step: int | None = None):
        self.path, self.enabled = Path(path), enabled
        self.records: list[dict[str, Any]] = []
        if enabled and resume_step is not None and self.path.is_file():
            kept = [r for r in map(json.loads, self.path.read_text().splitlines()) if r.get("step", 0) <= resume_step]
            atomic_write_bytes(self.path, "".join(json.dumps(r) + "\n" for r in kept).encode())
            self.records = kept

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.records.append(record)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
