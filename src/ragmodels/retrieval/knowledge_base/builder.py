"""``build_knowledge_base``: documents -> passages -> embeddings (resumable shards) -> published KB.

Steps: read and split the documents (one counting pass first, so bad input fails before any encoding
and the progress bar knows its total), encode passages shard by shard into the work folder (finished
shards survive a crash and are reused), then assemble the knowledge base in a staging folder (passage
files hard-linked from the shards, FAISS index built from their embeddings, manifest) and publish it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .arrow_files import write_arrow
from .assemble import assemble
from .chunking import DEFAULT_WORDS_PER_PASSAGE, Passage, batched, split_documents
from .encoder import ContextEncoder
from .knowledge_base import KnowledgeBase
from .publish import staging
from .readers import input_files, read_documents
from .workdir import WorkDir

DEFAULT_SHARD_SIZE = 10_000


def build_knowledge_base(
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    encoder: ContextEncoder | str,
    pooling: str | None = None,
    words_per_passage: int = DEFAULT_WORDS_PER_PASSAGE,
    index_kind: str = "flat",
    index_params: dict | None = None,
    batch_size: int = 64,
    shard_size: int = DEFAULT_SHARD_SIZE,
    progress: bool = True,
) -> KnowledgeBase:
    """Build (or resume building) a knowledge base at ``output`` from JSONL/CSV/TSV files or text folders."""
    output = Path(output)
    count = sum(1 for _ in _passages(inputs, words_per_passage))  # bad input fails here, before loading a model
    encoder = encoder if isinstance(encoder, ContextEncoder) else ContextEncoder.from_pretrained(encoder, pooling)
    plan = {"inputs": _fingerprint(inputs), "encoder": encoder.name, "pooling": encoder.pooling,
            "max_length": encoder.max_length, "words_per_passage": words_per_passage, "shard_size": shard_size,
            "passages": count}
    work = WorkDir.beside(output, plan)
    work.open()
    shards = _encode_shards(_passages(inputs, words_per_passage), count, encoder, work, batch_size, shard_size, progress)
    with staging(output) as tmp:
        assemble(tmp, shards, encoder=encoder.name, pooling=encoder.pooling, index_kind=index_kind,
                 index_params=index_params or {})
    work.remove()
    return KnowledgeBase.load(output)


def _passages(inputs: Sequence[str | os.PathLike], words_per_passage: int) -> Iterator[Passage]:
    return split_documents(read_documents(inputs), words_per_passage)


def _encode_shards(passages: Iterator[Passage], count: int, encoder: ContextEncoder, work: WorkDir,
                   batch_size: int, shard_size: int, progress: bool) -> list[Path]:
    """Encode every shard not already in the work folder; return all shard paths in order."""
    shards = []
    with tqdm(total=count, unit="passage", desc="Encoding passages", disable=not progress) as bar:
        for number, shard in enumerate(batched(passages, shard_size)):
            path = work.shard(number)
            if not path.exists():
                first_id = number * shard_size
                vectors = [encoder.encode([p.title for p in b], [p.text for p in b])
                           for b in batched(shard, batch_size)]  # each (batch, dim)
                write_arrow(path, [str(first_id + i) for i in range(len(shard))], [p.title for p in shard],
                            [p.text for p in shard], np.concatenate(vectors))
            shards.append(path)
            bar.update(len(shard))
    return shards


def _fingerprint(inputs: Sequence[str | os.PathLike]) -> list[list]:
    """Path, size and modification time of each input file: what decides whether shards can be reused."""
    return [[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in input_files(inputs)]
