"""The layout of a sharded knowledge base: ``shards.json`` beside one knowledge-base folder per shard.

::

    shards.json          source, dimension, index kind and metric, passage count, and per shard:
                         its folder, offset (global id of its first passage) and passage count
    shard-00000/         a complete knowledge base (manifest.json, passages/, index.faiss)
    shard-00001/ ...

Global passage id = shard offset + local id: shard i holds the contiguous rows
[offset_i, offset_i + count_i) of the source knowledge base, so ids are those of the unsharded one.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ragmodels._io import atomic_write_bytes

LAYOUT_NAME = "shards.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ShardSpec:
    number: int
    folder: str  # relative to the layout's root
    offset: int  # global id of the shard's first passage
    count: int

    def contains(self, global_ids):
        """Boolean mask of the ``global_ids`` (any shape) that this shard holds."""
        return (global_ids >= self.offset) & (global_ids < self.offset + self.count)


@dataclass(frozen=True)
class ShardLayout:
    root: Path
    source: str  # the knowledge base the shards were cut from
    dimension: int
    index_kind: str
    metric: str  # FAISS metric of the shard indexes, "ip" or "l2" (decides how ties are ordered)
    passage_count: int
    shards: tuple[ShardSpec, ...]

    def shard_path(self, shard: ShardSpec) -> Path:
        return self.root / shard.folder

    def fingerprint(self) -> str:
        """Short hash of where and what the shards are: names the Ray actors that serve them."""
        return hashlib.sha256(f"{self.root.resolve()}\n{self.to_json()}".encode()).hexdigest()[:12]

    def to_json(self) -> str:
        data = asdict(self) | {"format_version": FORMAT_VERSION}
        del data["root"]
        return json.dumps(data, indent=2, sort_keys=True)

    def write(self) -> None:
        atomic_write_bytes(self.root / LAYOUT_NAME, self.to_json().encode())


def is_sharded(path: str | os.PathLike) -> bool:
    return (Path(path) / LAYOUT_NAME).is_file()


def read_layout(path: str | os.PathLike) -> ShardLayout:
    """Read ``shards.json`` of a sharded knowledge base, with a clear error for anything else."""
    root = Path(path)
    if not is_sharded(root):
        raise ValueError(
            f"{root} is not a sharded knowledge base ({LAYOUT_NAME} is missing); cut one from a knowledge base "
            "with: ragmodels index shard KB_DIR --shards N --out DIR"
        )
    data = json.loads((root / LAYOUT_NAME).read_text())
    if data.pop("format_version", None) != FORMAT_VERSION:
        raise ValueError(f"{root / LAYOUT_NAME} has another format version; this ragmodels reads {FORMAT_VERSION}.")
    shards = tuple(ShardSpec(**s) for s in data.pop("shards"))
    return ShardLayout(root=root, shards=shards, **data)
