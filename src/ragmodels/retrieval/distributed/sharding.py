"""Cutting a knowledge base into shards: contiguous passage ranges, each a knowledge base of its own.

Every shard index is a copy of the source index emptied and refilled with the shard's passages, so
it keeps the source's training (IVF centroids, PQ codebooks, HNSW norm bound): for flat and IVF kinds
the union of the shards' top-k is exactly the source index's top-k. HNSW shards get their own graphs,
so their (approximate) results may differ from the single index's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from ragmodels.retrieval.index import FaissIndex
from ragmodels.retrieval.knowledge_base import KnowledgeBase
from ragmodels.retrieval.knowledge_base.arrow_files import ArrowFile, data_files, embeddings_of, iter_batches
from ragmodels.retrieval.knowledge_base.assemble import assemble
from ragmodels.retrieval.knowledge_base.manifest import PASSAGES_DIR
from ragmodels.retrieval.knowledge_base.publish import staging

from .layout import ShardLayout, ShardSpec, read_layout


def shard_knowledge_base(kb_path: str | os.PathLike, output: str | os.PathLike, num_shards: int) -> ShardLayout:
    """Write ``num_shards`` shards of the knowledge base at ``kb_path`` to ``output`` (replaced atomically)."""
    kb = KnowledgeBase.load(kb_path)
    if not 1 <= num_shards <= len(kb):
        raise ValueError(f"--shards must be between 1 and the number of passages ({len(kb)}), got {num_shards}.")
    counts = [len(kb) // num_shards + int(i < len(kb) % num_shards) for i in range(num_shards)]
    offsets = np.cumsum([0, *counts[:-1]]).tolist()
    specs = tuple(ShardSpec(i, f"shard-{i:05d}", offset, count)
                  for i, (offset, count) in enumerate(zip(offsets, counts)))
    batches = iter_batches(data_files(Path(kb_path) / PASSAGES_DIR))
    with staging(Path(output)) as tmp:
        for spec, rows in zip(specs, _split(batches, counts)):
            _write_shard(tmp / spec.folder, kb, rows)
        ShardLayout(root=tmp, source=str(Path(kb_path).resolve()), dimension=kb.dimension, index_kind=kb.kind,
                    metric=kb.index.metric, passage_count=len(kb), shards=specs).write()
    return read_layout(output)


def _split(batches: Iterator[pa.RecordBatch], counts: Sequence[int]) -> Iterator[list[pa.RecordBatch]]:
    """Consecutive groups of ``counts[i]`` rows from a stream of record batches (zero-copy slices)."""
    pending: pa.RecordBatch | None = None
    for count in counts:
        group = []
        while count:
            pending = next(batches) if pending is None else pending
            group.append(pending.slice(0, count))
            pending = pending.slice(count) if pending.num_rows > count else None
            count -= group[-1].num_rows
        yield group


def _write_shard(root: Path, kb: KnowledgeBase, rows: list[pa.RecordBatch]) -> None:
    """One shard as a complete knowledge base: its passages, its index, its manifest."""
    root.mkdir()
    arrow = root / ".shard.arrow"
    index = _empty_like(kb.index)
    with ArrowFile(arrow, kb.dimension) as f:
        for batch in rows:
            f.write(pa.Table.from_batches([batch]))
            index.add(embeddings_of(batch))  # (rows, d)
    m = kb.manifest
    assemble(root, [arrow], encoder=m.encoder, pooling=m.pooling, index_kind=m.index_kind,
             index_params=m.index_params, index=index)
    arrow.unlink()


def _empty_like(index: FaissIndex) -> FaissIndex:
    """A copy of ``index`` with its training but no vectors (memory-mapped indexes included)."""
    return index.empty_copy()
