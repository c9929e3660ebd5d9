"""``build_knowledge_base``: documents -> passages -> embeddings (resumable shards) -> published KB.

Steps: check every setting, read and split the documents (one counting pass first, so bad input fails
before any model is loaded and the progress bar knows its total), encode passages shard by shard into the work folder (finished
shards survive a crash and are reused), then assemble the knowledge base in a staging folder (passage
files hard-linked from the shards, FAISS index built from their embeddings, manifest) and publish it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .arrow_files import write_arrow
from .assemble import assemble
from ragmodels.retrieval.index import check_kind_params

from .chunking import DEFAULT_WORDS_PER_PASSAGE, Passage, batched, check_passage_sizes, split_documents
from .encoder import DEFAULT_POOLING, ContextEncoder, default_encoder_path
from .knowledge_base import KnowledgeBase
from .publish import staging
from .readers import Skipped, input_files, read_documents
from .workdir import WorkDir

DEFAULT_SHARD_SIZE = 10_000


def build_knowledge_base(
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    encoder: ContextEncoder | str | None = None,
    pooling: str | None = None,
    words_per_passage: int = DEFAULT_WORDS_PER_PASSAGE,
    index_kind: str = "flat",
    index_params: dict | None = None,
    batch_size: int = 64,
    shard_size: int = DEFAULT_SHARD_SIZE,
    progress: bool = True,
    min_words: int | None = None,
    on_error: str = "raise",
) -> KnowledgeBase:
    """Build (or resume building) a knowledge base at ``output`` from JSONL/CSV/TSV files or text folders.

    ``encoder`` None: the packaged all-MiniLM-L6-v2 with mean pooling (said on stderr). ``min_words``:
    see ``chunking`` (default a fifth of ``words_per_passage``). ``on_error="skip"`` leaves bad input
    records out and says how many on stderr. Every setting is checked before any model is loaded.
    """
    output = Path(output)
    split = _Split(words_per_passage, check_passage_sizes(words_per_passage, min_words), on_error)
    _check_count("batch_size (--batch-size)", batch_size)
    _check_count("shard_size (--shard-size)", shard_size)
    params = index_params or {}
    checked = check_kind_params(index_kind, params)
    skipped = Skipped()
    count = sum(1 for _ in split(inputs, skipped))  # bad input fails here, before loading a model
    if skipped.records:
        sys.stderr.write(f"ragmodels: {skipped.summary()}\n")
    checked.resolve(None, count)  # nlist, nprobe, train_size against the corpus
    encoder = _context_encoder(encoder, pooling)
    checked.resolve(encoder.dim, count)  # pq_m against the dimension
    plan = {"inputs": _fingerprint(inputs), "encoder": encoder.name, "pooling": encoder.pooling,
            "max_length": encoder.max_length, "words_per_passage": words_per_passage, "min_words": split.min_words,
            "shard_size": shard_size, "passages": count}
    work = WorkDir.beside(output, plan)
    work.open()
    shards = _encode_shards(split(inputs), count, encoder, work, batch_size, shard_size, progress)
    with staging(output) as tmp:
        assemble(tmp, shards, encoder=encoder.name, pooling=encoder.pooling, index_kind=index_kind,
                 index_params=params)
    work.remove()
    return KnowledgeBase.load(output)


@dataclass(frozen=True)
class _Split:
    """How a build turns input paths into passages (read twice: to count, then to encode)."""

    words_per_passage: int
    min_words: int
    on_error: str

    def __call__(self, inputs: Sequence[str | os.PathLike], skipped: Skipped | None = None) -> Iterator[Passage]:
        docs = read_documents(inputs, on_error=self.on_error, skipped=skipped)
        return split_documents(docs, self.words_per_passage, self.min_words)


def _context_encoder(encoder: ContextEncoder | str | None, pooling: str | None) -> ContextEncoder:
    if isinstance(encoder, ContextEncoder):
        return encoder
    if encoder is not None:
        return ContextEncoder.from_pretrained(encoder, pooling)
    sys.stderr.write(f"ragmodels: no --encoder given: using the packaged all-MiniLM-L6-v2 ({pooling or DEFAULT_POOLING} "
                     f"pooling) at {default_encoder_path()}\n")
    return ContextEncoder.default(pooling)


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")


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
