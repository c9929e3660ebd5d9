"""Writing a complete knowledge base into a (staging) folder: passages, index, manifest.

Shared by builds, imports and updates: each one produces Arrow passage files, and optionally an index
it already holds; ``assemble`` lays them out, checks that passages and index agree (count, dimension)
and records the manifest last.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ragmodels.retrieval.index import FaissIndex

from .arrow_files import iter_batches, publish_passages
from .indexing import index_from_files
from .manifest import INDEX_NAME, PASSAGES_DIR, Manifest, record_files, write_manifest


def assemble(root: Path, sources: Sequence[Path], *, encoder: str | None, pooling: str | None, index_kind: str,
             index_params: dict, index: FaissIndex | None = None, next_id: int | None = None) -> Manifest:
    """Lay out ``sources`` (Arrow passage files, in row order) and an index (built here if not given)."""
    dim = next(iter_batches(sources)).schema.field("embeddings").type.list_size
    count = sum(b.num_rows for b in iter_batches(sources))
    names = publish_passages(root / PASSAGES_DIR, sources, dim)
    if index is None:
        index, index_params = index_from_files(sources, index_kind, index_params)
    check_agreement(index, count, dim)
    index.save(root / INDEX_NAME)
    manifest = Manifest(
        encoder=encoder, pooling=pooling, dimension=dim, metric="inner_product", index_kind=index.kind,
        index_params=index_params, passage_count=count, next_id=count if next_id is None else next_id,
        files=record_files(root, [f"{PASSAGES_DIR}/{n}" for n in names] + [INDEX_NAME]),
    )
    write_manifest(root, manifest)
    return manifest


def check_agreement(index: FaissIndex, count: int, dim: int) -> None:
    """Raise ValueError unless the index holds exactly the passages' vectors (same count and dimension)."""
    if index.dimension != dim:
        raise ValueError(
            f"Dimension mismatch: the index holds {index.dimension}-d vectors but the passage embeddings are "
            f"{dim}-d; use the index built with the same encoder as the passages."
        )
    if index.ntotal != count:
        raise ValueError(f"The index holds {index.ntotal} vectors but there are {count} passages; they must match.")
