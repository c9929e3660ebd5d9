"""Adding, replacing and deleting passages without re-encoding the knowledge base.

Every update takes the knowledge base's writer lock, reloads the version on disk (another process may
have published a newer one since ``kb`` was loaded), writes the next version in a staging folder and
publishes it atomically (see ``publish``):
  - add: the existing passage files are hard-linked, the new passages go into one new Arrow file, and
    their vectors are added to a copy of the index (ids continue from the passage count);
  - replace / delete: the passage files are rewritten in one streaming pass, and the index is refilled
    from the stored embeddings, keeping its training (IVF centroids and codebooks): no re-encoding and
    no retraining. An HNSW index whose norm bound a new vector exceeds is rebuilt from scratch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from ragmodels.retrieval.index import FaissIndex

from .arrow_files import ArrowFile, data_files, embeddings_of, iter_batches, passages_table
from .assemble import assemble
from .encoder import ContextEncoder
from .indexing import index_from_files, refill
from .publish import staging, writer_lock

if TYPE_CHECKING:
    from .knowledge_base import KnowledgeBase


MAX_PASSAGE_CHARS = 100_000  # what a passage given directly may hold (builds split far below: see chunking)


@dataclass(frozen=True)
class _NewRows:
    titles: list[str]
    texts: list[str]
    embeddings: np.ndarray  # float32 (n, dim)


def add_passages(kb: KnowledgeBase, titles: Sequence[str], texts: Sequence[str],
                 embeddings: np.ndarray | None, encoder: ContextEncoder | None) -> Path:
    rows = _new_rows(kb, titles, texts, embeddings, encoder)
    with writer_lock(kb.path):
        kb = _current(kb)
        ids = [str(kb.manifest.next_id + i) for i in range(len(rows.texts))]
        with staging(kb.path) as tmp:
            new_file = tmp / "added.arrow"
            with ArrowFile(new_file, kb.dimension) as f:
                f.write(passages_table(ids, rows.titles, rows.texts, rows.embeddings))
            sources = [*data_files(Path(kb.passages_path)), new_file]
            index = _grown(kb, rows.embeddings, sources)
            _assemble(kb, tmp, sources, index, next_id=kb.manifest.next_id + len(ids))
            new_file.unlink()
    return kb.path


def replace_passages(kb: KnowledgeBase, ids: Sequence[int], titles: Sequence[str], texts: Sequence[str],
                     embeddings: np.ndarray | None, encoder: ContextEncoder | None) -> Path:
    rows = _new_rows(kb, titles, texts, embeddings, encoder)
    with writer_lock(kb.path):
        kb = _current(kb)
        positions = _check_ids(kb, ids)
        if len(positions) != len(rows.texts):
            raise ValueError(f"Got {len(positions)} ids for {len(rows.texts)} replacement passages; give one id each.")
        return _rewrite(kb, dict(zip(positions.tolist(), range(len(positions)))), rows, deleted=set())


def delete_passages(kb: KnowledgeBase, ids: Sequence[int]) -> Path:
    with writer_lock(kb.path):
        kb = _current(kb)
        deleted = set(_check_ids(kb, ids).tolist())
        if len(deleted) == len(kb):
            raise ValueError("Deleting every passage would leave an empty knowledge base; build a new one instead.")
        return _rewrite(kb, {}, None, deleted)


def _current(kb: KnowledgeBase) -> KnowledgeBase:
    """The version of ``kb`` on disk now (under the writer lock nobody else publishes until we do)."""
    current = type(kb).load(kb.path)
    if current.dimension != kb.dimension:
        raise ValueError(f"The knowledge base at {kb.path} was rebuilt with {current.dimension}-d vectors meanwhile.")
    return current


def _rewrite(kb: KnowledgeBase, replaced: dict[int, int], rows: _NewRows | None, deleted: set[int]) -> Path:
    """Stream the passages into one new file, substituting ``replaced`` rows and dropping ``deleted``."""
    with staging(kb.path) as tmp:
        new_file = tmp / "rewritten.arrow"
        with ArrowFile(new_file, kb.dimension) as f:
            start = 0
            for batch in iter_batches(data_files(Path(kb.passages_path))):
                f.write(_edit(pa.Table.from_batches([batch]), start, replaced, rows, deleted))
                start += batch.num_rows
        index = _refilled(kb, [new_file])
        _assemble(kb, tmp, [new_file], index, next_id=kb.manifest.next_id)
        new_file.unlink()
    return kb.path


def _edit(table: pa.Table, start: int, replaced: dict[int, int], rows: _NewRows | None,
          deleted: set[int]) -> pa.Table:
    """One batch of rows [start, start + len(table)) with replacements applied and deletions dropped."""
    positions = range(start, start + table.num_rows)
    hits = [p for p in positions if p in replaced]
    if hits:
        columns = {name: table.column(name).to_pylist() for name in ("id", "title", "text")}
        vectors = embeddings_of(table).copy()  # (n, dim)
        for p in hits:
            j = replaced[p]
            columns["title"][p - start], columns["text"][p - start] = rows.titles[j], rows.texts[j]
            vectors[p - start] = rows.embeddings[j]
        table = passages_table(columns["id"], columns["title"], columns["text"], vectors)
    keep = [p - start for p in positions if p not in deleted]
    return table if len(keep) == table.num_rows else table.take(pa.array(keep, pa.int64()))


def _new_rows(kb: KnowledgeBase, titles: Sequence[str], texts: Sequence[str], embeddings: np.ndarray | None,
              encoder: ContextEncoder | None) -> _NewRows:
    titles, texts = [str(t) for t in titles], [str(t) for t in texts]
    if len(titles) != len(texts) or not texts:
        raise ValueError(f"Give one title per text and at least one passage (got {len(titles)} titles, {len(texts)} texts).")
    if any(not t.strip() for t in texts):
        raise ValueError("A passage without text cannot be added to a knowledge base.")
    longest = max(range(len(texts)), key=lambda i: len(texts[i]))
    if len(texts[longest]) > MAX_PASSAGE_CHARS:
        raise ValueError(
            f"Passage {longest} has {len(texts[longest])} characters, more than the {MAX_PASSAGE_CHARS} a passage may "
            "have (every question that retrieves it would pay for all of them); split it first, e.g. with "
            "ragmodels.retrieval.knowledge_base.chunking.split_document or ragmodels index add."
        )
    if embeddings is None:
        embeddings = _encoder_for(kb, encoder).encode(titles, texts)
    embeddings = np.asarray(embeddings, dtype=np.float32)  # (n, dim)
    if embeddings.shape != (len(texts), kb.dimension):
        raise ValueError(
            f"Dimension mismatch: the new passages' embeddings have shape {embeddings.shape}, the knowledge base "
            f"at {kb.path} holds {kb.dimension}-d vectors; use the encoder it was built with ({kb.manifest.encoder})."
        )
    return _NewRows(titles, texts, embeddings)


def _encoder_for(kb: KnowledgeBase, encoder: ContextEncoder | None) -> ContextEncoder:
    if encoder is not None:
        return encoder
    if kb.manifest.encoder is None:
        raise ValueError(f"The knowledge base at {kb.path} does not record its encoder; pass embeddings or an encoder.")
    try:
        return ContextEncoder.from_pretrained(kb.manifest.encoder, kb.manifest.pooling)
    except ValueError as err:
        raise ValueError(f"The encoder that built {kb.path} (its manifest's) cannot be loaded: {err} Pass embeddings "
                         "or an encoder that makes the same vectors.") from None


def _check_ids(kb: KnowledgeBase, ids: Sequence[int]) -> np.ndarray:
    positions = np.asarray(ids, dtype=np.int64).reshape(-1)
    if positions.size == 0:
        raise ValueError("No passage ids given.")
    if positions.min() < 0 or positions.max() >= len(kb):
        raise ValueError(f"Passage ids must lie in [0, {len(kb)}), got range [{positions.min()}, {positions.max()}].")
    if len(set(positions.tolist())) != positions.size:
        raise ValueError("Passage ids must be distinct.")
    return positions


def _grown(kb: KnowledgeBase, embeddings: np.ndarray, sources: list[Path]) -> FaissIndex:
    """The index with ``embeddings`` appended (an in-memory copy; the published file is left alone)."""
    index = FaissIndex.read(kb.index_path, mmap=False)
    try:
        index.add(embeddings)
    except ValueError:  # an HNSW norm bound exceeded: the graph must be rebuilt with a larger bound
        return _rebuilt(kb, sources)
    return index


def _refilled(kb: KnowledgeBase, sources: list[Path]) -> FaissIndex:
    try:
        return refill(Path(kb.index_path), sources)
    except ValueError:
        return _rebuilt(kb, sources)


def _rebuilt(kb: KnowledgeBase, sources: list[Path]) -> FaissIndex:
    params = {k: v for k, v in kb.manifest.index_params.items() if k != "max_norm"}
    return index_from_files(sources, kb.kind, params)[0]


def _assemble(kb: KnowledgeBase, root: Path, sources: list[Path], index: FaissIndex, next_id: int) -> None:
    m = kb.manifest
    params = {**m.index_params, "max_norm": index.max_norm} if index.augmented else m.index_params
    assemble(root, sources, encoder=m.encoder, pooling=m.pooling, index_kind=m.index_kind,
             index_params=params, index=index, next_id=next_id)
