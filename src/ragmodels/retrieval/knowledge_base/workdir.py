"""The resumable part of a build: encoded shards in a work folder beside the target.

The work folder holds ``plan.json`` (everything that determines the shards: input files' sizes and
modification times, encoder, pooling, passage size, shard size) and ``shard-NNNNN.arrow`` files, each
written through a temporary name and a rename. A build that finds a work folder with the same plan
keeps its finished shards and encodes only the rest; a different plan starts the folder afresh.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ragmodels._io import atomic_write_bytes


class WorkDir:
    def __init__(self, path: Path, plan: dict):
        self.path = Path(path)
        self.plan = plan

    @classmethod
    def beside(cls, target: Path, plan: dict) -> "WorkDir":
        """The work folder of a build of ``target``: ``.<name>.work`` in the same parent folder."""
        return cls(target.parent / f".{target.name}.work", plan)

    def open(self) -> None:
        """Create the folder, or keep it if it holds shards of the same plan."""
        plan_file = self.path / "plan.json"
        if plan_file.is_file() and json.loads(plan_file.read_text()) != self.plan:
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(plan_file, json.dumps(self.plan, sort_keys=True).encode())

    def shard(self, number: int) -> Path:
        return self.path / f"shard-{number:05d}.arrow"

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
