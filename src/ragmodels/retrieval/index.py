"""FAISS index kinds, chosen by name through one factory, behind one small wrapper.

Kinds (every kind answers with inner-product scores, whatever its internal metric):
  - "flat":    exact inner product (IndexFlatIP).
  - "hnsw":    graph search. Inner product is reduced to L2 by DPR's norm-augmentation trick:
               passages get an extra coordinate sqrt(max_norm^2 - |x|^2), queries get 0, so
               |q' - x'|^2 = |q|^2 + max_norm^2 - 2<q, x> and the L2 order is the inner-product order.
  - "ivf_pq":  inverted lists + product quantization (compressed, d/8 bytes per vector by default; trained
               on a sample).
  - "ivf_sq8": inverted lists + 8-bit scalar quantization (compressed; trained on a sample).
Any kind can re-rank exactly (``set_refine``): search ``refine_factor * k`` candidates, re-score them with
exact inner products from the stored passage embeddings (memory-mapped, no copy in RAM; what faiss'
IndexRefineFlat does with an in-RAM copy) and keep the top ``k`` -- the usual remedy for the recall
lost to compression. ``IndexedPassages`` points it at its passages' embeddings. Knowledge bases record
a factor (``IndexParams.refine``; ``default_refine``: 10 for ivf_pq, whose codes alone lose recall, 1
otherwise) and apply it when loaded.
Indexes built elsewhere (``datasets.Dataset.add_faiss_index``, DPR's files) are wrapped as they are; an
index whose kind is none of the above is reported as kind "other" and still searched in one call.
"""

from __future__ import annotations

import difflib
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import faiss
import numpy as np

from .._io import fsync_file
from .exact_flat import ExactFlatSearch

INDEX_KINDS = ("flat", "hnsw", "ivf_pq", "ivf_sq8")


@dataclass(frozen=True)
class ParamRange:
    """What one index parameter may be: ``kind`` int or float, ``low <= value <= high`` (None: unbounded)."""

    kind: type
    low: float
    high: float | None
    meaning: str

    def describe(self) -> str:
        noun = "an integer" if self.kind is int else "a number"
        return f"{noun} >= {self.low}" if self.high is None else f"{noun} in [{self.low}, {self.high}]"


PARAM_RANGES = {  # the limits keep builds bounded: M=-1 made FAISS allocate without end
    "nlist": ParamRange(int, 1, None, "IVF inverted lists, at most the number of passages"),
    "M": ParamRange(int, 2, 512, "HNSW graph degree"),
    "ef_construction": ParamRange(int, 1, 65536, "HNSW candidates while building"),
    "ef_search": ParamRange(int, 1, 65536, "HNSW candidates while searching"),
    "nprobe": ParamRange(int, 1, None, "IVF lists visited per query, at most nlist"),
    "pq_m": ParamRange(int, 1, None, "IVF-PQ bytes per vector, a divisor of the dimension"),
    "pq_nbits": ParamRange(int, 1, 16, "IVF-PQ bits per code"),
    "max_norm": ParamRange(float, 0.0, None, "HNSW norm bound"),
    "train_size": ParamRange(int, 1, None, "IVF training sample, at least nlist"),
    "refine": ParamRange(int, 1, 1000, "exact re-ranking factor, 1 = off"),
}
PARAM_ALIASES = {"efSearch": "ef_search", "efConstruction": "ef_construction"}  # FAISS's own names


@dataclass(frozen=True)
class IndexParams:
    """Build and search parameters; ``None`` means "pick from the corpus size" (see ``resolve``).

    Every value is checked on construction against ``PARAM_RANGES``; ``resolve`` checks the ones that
    depend on the corpus (nlist and train_size against the passage count, pq_m against the dimension).
    """

    nlist: int | None = None  # IVF: number of inverted lists (default ~4*sqrt(n), >= 39 points per list)
    M: int = 32  # HNSW: graph degree
    ef_construction: int = 200  # HNSW: candidate list size while building
    ef_search: int = 128  # HNSW: candidate list size while searching
    nprobe: int = 16  # IVF: inverted lists visited per query
    pq_m: int | None = None  # IVF-PQ: sub-quantizers = bytes per vector (must divide d; default d/8 or below)
    pq_nbits: int = 8  # IVF-PQ: bits per sub-quantizer code
    max_norm: float | None = None  # HNSW: norm bound of the augmentation (default: max over the first add)
    train_size: int = 100_000  # IVF: training sample size
    refine: int | None = None  # knowledge bases: exact re-ranking factor applied on load (default_refine(kind))

    def __post_init__(self) -> None:
        for name, allowed in PARAM_RANGES.items():
            value = getattr(self, name)
            if value is None:
                continue
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            if allowed.kind is int and isinstance(value, float) and value.is_integer():
                object.__setattr__(self, name, value := int(value))
            if (not numeric or (allowed.kind is int and not isinstance(value, int)) or not math.isfinite(value)
                    or value < allowed.low or (allowed.high is not None and value > allowed.high)):
                raise param_error(name, value, f"must be {allowed.describe()} ({allowed.meaning})")

    def resolve(self, dimension: int | None, num_vectors: int | None = None) -> "IndexParams":
        """Fill defaults that depend on the dimension and (when known) the number of vectors."""
        nlist = self.nlist
        if nlist is None:
            nlist = 1024 if num_vectors is None else max(1, min(int(4 * math.sqrt(num_vectors)), num_vectors // 39))
        elif num_vectors is not None and nlist > num_vectors:
            raise param_error("nlist", nlist, f"must be at most the number of passages ({num_vectors}); about "
                              f"4*sqrt(n) = {max(1, int(4 * math.sqrt(num_vectors)))} is usual, or leave it out")
        nprobe = self.nprobe
        if nprobe > nlist and nprobe == _DEFAULT_NPROBE:  # the default on a small corpus: visit every list
            nprobe = nlist
        elif nprobe > nlist:
            raise param_error("nprobe", nprobe, f"must be at most nlist ({nlist})")
        if num_vectors is not None and min(self.train_size, num_vectors) < nlist:
            raise param_error("train_size", self.train_size, f"must be at least nlist ({nlist})")
        pq_nbits = self.pq_nbits
        if num_vectors is not None:
            pq_nbits = max(1, min(pq_nbits, int(math.log2(max(num_vectors, 2)))))
        if dimension is None:  # checking the corpus-size rules before the dimension is known
            return replace(self, nlist=nlist, nprobe=nprobe, pq_nbits=pq_nbits)
        pq_m = self.pq_m or max(m for m in range(1, max(1, dimension // 8) + 1) if dimension % m == 0)
        if dimension % pq_m:
            raise param_error("pq_m", pq_m, f"must divide the dimension {dimension}")
        return replace(self, nlist=nlist, nprobe=nprobe, pq_m=pq_m, pq_nbits=pq_nbits)


PARAM_NAMES = tuple(f.name for f in fields(IndexParams))
_DEFAULT_NPROBE = IndexParams.nprobe
KIND_PARAMS = {  # the IndexParams fields that matter to each kind (what a knowledge base's manifest records)
    "flat": (),
    "hnsw": ("M", "ef_construction", "ef_search", "max_norm", "refine"),
    "ivf_pq": ("nlist", "nprobe", "pq_m", "pq_nbits", "train_size", "refine"),
    "ivf_sq8": ("nlist", "nprobe", "train_size", "refine"),
}


def param_error(name: str, value: object, problem: str) -> ValueError:
    return ValueError(f"--index-param {name}={value}: {name} {problem}.")


def parse_index_params(pairs: Sequence[str]) -> dict:
    """``NAME=VALUE`` strings (``--index-param``) -> parameters, names and values checked (``IndexParams``)."""
    params: dict = {}
    for pair in pairs:
        name, sep, text = (part.strip() for part in pair.partition("="))
        if not sep or not name:
            raise ValueError(f"--index-param expects NAME=VALUE (e.g. nlist=1024), got {pair!r}.")
        name = _known_name(name)
        allowed = PARAM_RANGES[name]
        try:
            params[name] = allowed.kind(text)
        except ValueError:
            raise param_error(name, text, f"must be {allowed.describe()} ({allowed.meaning})") from None
    _params(params)
    return params


def check_kind_params(kind: str, params: dict) -> IndexParams:
    """``params`` as IndexParams, refusing unknown names and ones that ``kind`` does not use."""
    if kind not in INDEX_KINDS:
        raise ValueError(f"Unknown index kind {kind!r}; choose one of {INDEX_KINDS}.")
    unused = sorted(set(params) - set(KIND_PARAMS[kind]))
    checked = _params(params)
    if unused:
        takes = ", ".join(KIND_PARAMS[kind]) or "no parameters"
        raise ValueError(f"--index-param {unused[0]}: the {kind} index does not use {unused[0]}; it takes {takes}.")
    return checked


DEFAULT_REFINE = {"ivf_pq": 10}  # kinds whose plain recall@5 falls below 0.95 (benchmarks/retrieval.py)


def default_refine(kind: str) -> int:
    """The exact re-ranking factor a knowledge base of ``kind`` uses unless its manifest says otherwise."""
    return DEFAULT_REFINE.get(kind, 1)


def refine_factor(kind: str, index_params: dict) -> int:
    """The exact re-ranking factor of a knowledge base: its manifest's ``refine``, else the kind's default."""
    refine = index_params.get("refine")
    return int(refine) if refine is not None else default_refine(kind)


class FaissIndex:
    """A FAISS index searched a whole batch at a time; scores are always inner products.

    ``dimension`` is the passage-embedding size the caller sees (without the HNSW augmentation).
    """

    def __init__(self, index: faiss.Index, *, augmented: bool | None = None, max_norm: float | None = None,
                 path: str | os.PathLike | None = None):
        self.faiss_index = index
        self.path = None if path is None else str(path)
        self.kind = _kind_of(index)
        self.metric = "ip" if index.metric_type == faiss.METRIC_INNER_PRODUCT else "l2"
        # L2 HNSW indexes are the norm-augmented kind (ours and DPR's) unless said otherwise.
        self.augmented = (self.kind == "hnsw" and self.metric == "l2") if augmented is None else augmented
        self.max_norm = max_norm if max_norm is not None else self._stored_max_norm()
        self.refine_factor = 1  # > 1: exact re-ranking of refine_factor * k candidates (set_refine)
        self.refine_vectors: Callable[[np.ndarray], np.ndarray] | None = None
        self.read_only = False  # vectors memory-mapped from a file (``read``): FAISS aborts on writes to them
        self.fast_flat = True  # flat inner-product kinds: a bf16 scan re-scored by FAISS (exact_flat.py)
        self._exact_flat: ExactFlatSearch | None = None  # built on the first search, dropped by add

    # -- properties -------------------------------------------------------------------------------
    @property
    def dimension(self) -> int:
        return self.faiss_index.d - int(self.augmented)

    @property
    def ntotal(self) -> int:
        return int(self.faiss_index.ntotal)

    @property
    def is_trained(self) -> bool:
        return bool(self.faiss_index.is_trained)

    def __repr__(self) -> str:
        return f"FaissIndex(kind={self.kind!r}, dimension={self.dimension}, ntotal={self.ntotal}, path={self.path!r})"

    # -- building ---------------------------------------------------------------------------------
    def train(self, sample: np.ndarray) -> None:
        """Train a compressed index on ``sample`` (n, d); no-op for kinds that need no training."""
        sample = self._check_vectors(sample, "training vectors")
        self._check_writable()
        if self.augmented:
            if self.max_norm is None:
                self.max_norm = float(np.linalg.norm(sample, axis=1).max(initial=0.0))
            sample = self._augment_passages(sample)
        if not self.faiss_index.is_trained:
            ivf = faiss.extract_index_ivf(self.faiss_index)
            if len(sample) < ivf.nlist:
                raise ValueError(
                    f"Training an IVF index with nlist={ivf.nlist} needs at least {ivf.nlist} vectors, got "
                    f"{len(sample)}; pass a smaller nlist (about 4*sqrt(number of passages)) or a larger sample."
                )
            self.faiss_index.train(sample)

    def add(self, embeddings: np.ndarray) -> None:
        """Append passage embeddings (n, d); their ids continue from ``ntotal``."""
        embeddings = self._check_vectors(embeddings, "passage embeddings")
        self._check_writable()
        if not self.faiss_index.is_trained:
            raise ValueError(f"The {self.kind} index must be trained before adding vectors; call train(sample) first.")
        if self.augmented:
            if self.max_norm is None:
                self.max_norm = float(np.linalg.norm(embeddings, axis=1).max(initial=0.0))
            embeddings = self._augment_passages(embeddings)
        self.faiss_index.add(embeddings)
        self._exact_flat = None

    def empty_copy(self) -> "FaissIndex":
        """An index of the same kind, parameters and training without vectors (to refill or shard).

        A memory-mapped index's vectors cannot be cleared (FAISS aborts), so its file is read again unmapped.
        """
        source = faiss.downcast_index(self.faiss_index)
        if isinstance(source, faiss.IndexFlat):
            clone = faiss.IndexFlat(source.d, source.metric_type)
        else:
            clone = faiss.clone_index(faiss.read_index(self.path) if self.read_only else self.faiss_index)
            clone.reset()
        return FaissIndex(clone, augmented=self.augmented, max_norm=self.max_norm)

    def set_search_params(self, *, ef_search: int | None = None, nprobe: int | None = None) -> None:
        """Trade speed for recall at query time (HNSW ``ef_search``, IVF ``nprobe``), range-checked."""
        _params({name: value for name, value in (("ef_search", ef_search), ("nprobe", nprobe)) if value is not None})
        if ef_search is not None and self.kind == "hnsw":
            faiss.downcast_index(self.faiss_index).hnsw.efSearch = int(ef_search)
        if nprobe is not None and self.kind in ("ivf_pq", "ivf_sq8"):
            faiss.extract_index_ivf(self.faiss_index).nprobe = int(nprobe)

    def set_refine(self, factor: int = 1, vectors: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        """Re-rank ``factor * k`` candidates exactly (``factor`` 1 turns it off).

        ``vectors(ids)`` returns the exact float embeddings of an id array of any shape, (*ids.shape, d)
        (e.g. ``PassageStore.embeddings``); without it, the index's own (decoded) vectors are used, which
        only helps kinds that store vectors exactly (hnsw).
        """
        if factor < 1:
            raise ValueError(f"refine factor must be >= 1, got {factor}.")
        self.refine_factor = int(factor)
        if vectors is not None:
            self.refine_vectors = vectors

    # -- querying ---------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` for every query in ONE faiss call: scores float32 (bs, k), ids int64 (bs, k).

        Missing results (fewer than ``k`` reachable vectors) have id -1 and score -inf.
        """
        queries = self._check_vectors(queries, "query vectors")  # (bs, d)
        if k < 1:
            raise ValueError(f"k must be a positive number of results, got {k}.")
        if self.refine_factor > 1 and self.ntotal > k:
            return self._refined_search(queries, k)
        if self.fast_flat and self.kind == "flat" and self.metric == "ip":
            found = self._flat_search().search(queries, k)
            if found is not None:
                return found
        faiss_queries = np.hstack([queries, np.zeros((len(queries), 1), np.float32)]) if self.augmented else queries
        distances, ids = self.faiss_index.search(faiss_queries, k)  # (bs, k), (bs, k)
        ids = ids.astype(np.int64, copy=False)
        if self.metric == "ip":
            scores = distances
        elif self.augmented:  # |q'-x'|^2 = |q|^2 + max_norm^2 - 2<q,x>
            q_sq = np.einsum("bd,bd->b", queries, queries)[:, None]  # (bs, 1)
            scores = (q_sq + self.max_norm**2 - distances) / 2
        else:  # plain L2 index built elsewhere: score with the stored vectors
            scores = np.einsum("bd,bkd->bk", queries, self.reconstruct(np.maximum(ids, 0)))
        scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)
        return scores, ids

    def _flat_search(self) -> ExactFlatSearch:
        """The exact bf16-scan search of a flat inner-product index (its copy cached next to ``path``)."""
        current = self._exact_flat
        if current is None or current.index is not self.faiss_index or len(current.vectors) != self.ntotal:
            self._exact_flat = ExactFlatSearch(self.faiss_index, self.path)
        return self._exact_flat

    def _refined_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``refine_factor * k`` from the index, re-scored with exact inner products, top ``k`` kept."""
        factor, self.refine_factor = self.refine_factor, 1
        try:
            _, candidates = self.search(queries, min(k * factor, self.ntotal))  # (bs, K)
        finally:
            self.refine_factor = factor
        vectors = self.refine_vectors or self.reconstruct
        stored = np.asarray(vectors(np.maximum(candidates, 0)), dtype=np.float32)  # (bs, K, d)
        exact = np.einsum("bd,bkd->bk", queries, stored)
        exact = np.where(candidates < 0, -np.inf, exact).astype(np.float32)
        order = np.argsort(-exact, axis=1, kind="stable")[:, :k]  # (bs, k)
        return np.take_along_axis(exact, order, 1), np.take_along_axis(candidates, order, 1)

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """Stored (for compressed kinds: decoded) embeddings of ``ids`` of any shape -> float32 (*ids.shape, d)."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.ntotal):
            raise ValueError(f"ids must lie in [0, {self.ntotal}) for this index, got range [{ids.min()}, {ids.max()}].")
        ivf = faiss.try_extract_index_ivf(self.faiss_index)
        if ivf is not None and ivf.direct_map.type == faiss.DirectMap.NoMap:
            ivf.make_direct_map()  # IVF files saved without one (e.g. by datasets) still reconstruct
        flat = self.faiss_index.reconstruct_batch(ids.reshape(-1))  # (n, d[+1])
        return flat[:, : self.dimension].reshape(*ids.shape, self.dimension).astype(np.float32, copy=False)

    # -- files ------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the index through a temporary sibling file and a rename (no half-written file on failure)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
        os.close(fd)
        try:
            faiss.write_index(self.faiss_index, tmp)
            fsync_file(tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.path = str(path)
        return path

    @classmethod
    def read(cls, path: str | os.PathLike, *, mmap: bool = True, augmented: bool | None = None,
             ef_search: int | None = None, nprobe: int | None = None) -> "FaissIndex":
        """Read an index file, memory-mapped when ``mmap`` (FAISS maps flat, HNSW and IVF files)."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(
                f"No FAISS index file at {path}; build one (ragmodels index build, or "
                "dataset.get_index('embeddings').save(path)) or point index_path at the right file."
            )
        index, mapped = _read_faiss(path, mmap)
        wrapped = cls(index, augmented=augmented, path=path)
        wrapped.read_only = mapped
        wrapped.set_search_params(ef_search=ef_search, nprobe=nprobe)
        return wrapped

    # -- helpers ----------------------------------------------------------------------------------
    def _check_writable(self) -> None:
        if self.read_only:
            raise ValueError(
                f"The index {self.path} is memory-mapped read-only; read it with FaissIndex.read(path, mmap=False) "
                "to train it or add vectors."
            )

    def _check_vectors(self, vectors: np.ndarray, what: str) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dimension:
            raise ValueError(
                f"{what} must have shape (n, {self.dimension}) to match the index dimension {self.dimension}"
                f"{'' if self.path is None else f' of {self.path}'}, got shape {vectors.shape}."
            )
        return vectors

    def _augment_passages(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, d) -> (n, d+1) with the extra coordinate sqrt(max_norm^2 - |x|^2)."""
        sq_norms = np.einsum("nd,nd->n", embeddings, embeddings)  # (n,)
        if sq_norms.size and sq_norms.max() > self.max_norm**2 * (1 + 1e-5):
            raise ValueError(
                f"A passage embedding has norm {math.sqrt(sq_norms.max()):.4g} above the index's max_norm "
                f"{self.max_norm:.4g}; rebuild the hnsw index over all passages, or create it with a larger max_norm."
            )
        extra = np.sqrt(np.maximum(self.max_norm**2 - sq_norms, 0.0))[:, None]  # (n, 1)
        return np.hstack([embeddings, extra]).astype(np.float32)

    def _stored_max_norm(self) -> float | None:
        """For an augmented index, every stored vector has norm max_norm: read it off the first one."""
        if not self.augmented or self.ntotal == 0:
            return None
        return float(np.linalg.norm(self.faiss_index.reconstruct(0)))


def create_index(kind: str, dimension: int, **params) -> FaissIndex:
    """An empty index of ``kind`` for ``dimension``-d embeddings (the one factory of index kinds).

    ``params`` are ``IndexParams`` fields; compressed kinds need ``train(sample)`` before ``add``.
    """
    if kind not in INDEX_KINDS:
        raise ValueError(f"Unknown index kind {kind!r}; choose one of {INDEX_KINDS}.")
    p = _params(params).resolve(dimension)
    if kind == "flat":
        return FaissIndex(faiss.IndexFlatIP(dimension))
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dimension + 1, p.M)  # L2 over norm-augmented vectors
        index.hnsw.efConstruction = p.ef_construction
        index.hnsw.efSearch = p.ef_search
        return FaissIndex(index, augmented=True, max_norm=p.max_norm)
    quantizer = faiss.IndexFlatIP(dimension)
    if kind == "ivf_pq":
        index = faiss.IndexIVFPQ(quantizer, dimension, p.nlist, p.pq_m, p.pq_nbits, faiss.METRIC_INNER_PRODUCT)
        # FAISS trains inner-product IVF centroids on the unit sphere; PQ then encodes residuals from those
        # unit-norm centroids, as long as the vectors themselves. Plain k-means centroids (cluster means)
        # leave small residuals: recall@5 0.51 -> 0.79 at 100k (benchmarks/retrieval.py), 0.99 -> 1.0 re-ranked.
        index.cp.spherical = False
    else:
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, dimension, p.nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
    index.nprobe = p.nprobe
    index.set_direct_map_type(faiss.DirectMap.Array)  # reconstruct(ids) without a scan; saved with the file
    return FaissIndex(index)


def build_index(embeddings: np.ndarray, kind: str = "flat", *, seed: int = 0, **params) -> FaissIndex:
    """Build an index of ``kind`` over all ``embeddings`` (n, d): defaults fitted to n, trained on a sample."""
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or len(embeddings) == 0:
        raise ValueError(f"embeddings must be a non-empty (n, d) array, got shape {embeddings.shape}.")
    n, d = embeddings.shape
    resolved = _params(params).resolve(d, n)
    if kind == "hnsw" and resolved.max_norm is None:
        resolved = replace(resolved, max_norm=float(np.linalg.norm(embeddings, axis=1).max()))
    index = create_index(kind, d, **{f: getattr(resolved, f) for f in PARAM_NAMES})
    sample_rows = np.random.default_rng(seed).permutation(n)[: resolved.train_size]
    index.train(embeddings[np.sort(sample_rows)])
    index.add(embeddings)
    return index


def require_complete(ids: np.ndarray) -> np.ndarray:
    """Raise if a search left holes (id -1: fewer reachable vectors than asked); return ``ids``."""
    if (ids < 0).any():
        raise ValueError(
            f"The index returned fewer than {ids.shape[-1]} passages for some questions; raise the index's "
            "ef_search / nprobe, or ask for fewer passages (n_docs)."
        )
    return ids


def _params(params: dict) -> IndexParams:
    return IndexParams(**{_known_name(name): value for name, value in params.items()})


def _known_name(name: str) -> str:
    """A parameter name as IndexParams spells it (FAISS's aliases accepted); ValueError naming the known ones."""
    name = PARAM_ALIASES.get(name, name)
    if name in PARAM_NAMES:
        return name
    close = [n for n in PARAM_NAMES if n.lower() == name.lower()] or difflib.get_close_matches(name, PARAM_NAMES, 2)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    raise ValueError(f"--index-param {name}: unknown index parameter; known ones are {', '.join(PARAM_NAMES)}.{hint}")


def _kind_of(index: faiss.Index) -> str:
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexFlat):
        return "flat"
    if isinstance(index, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(index, faiss.IndexIVFPQ):
        return "ivf_pq"
    if isinstance(index, faiss.IndexIVFScalarQuantizer):
        return "ivf_sq8"
    return "other"


def _read_faiss(path: Path, mmap: bool) -> tuple[faiss.Index, bool]:
    """faiss.read_index (and whether the result is a read-only mapping) with a clear error for bad files.

    ``mmap``: map the vector storage (IO_FLAG_MMAP_IFC: flat codes, HNSW storage, IVF lists) so that opening
    costs no time or memory whatever the size; else the older IVF-only mapping; else a plain read.
    """
    errors = []
    for flags in ((faiss.IO_FLAG_MMAP_IFC, faiss.IO_FLAG_MMAP) if mmap else ()) + (0,):
        try:
            return faiss.read_index(str(path), flags), flags == faiss.IO_FLAG_MMAP_IFC
        except RuntimeError as error:  # some index types cannot be mapped; a plain read tells them from corrupt files
            errors.append(error)
    raise ValueError(
        f"Could not read the FAISS index file {path}: it is truncated, corrupt or not a FAISS index "
        f"({str(errors[0]).splitlines()[-1][:200]}). Rebuild it, or copy/download it again."
    ) from errors[-1]
