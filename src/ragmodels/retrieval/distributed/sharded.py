"""``ShardedKnowledgeBase``: a sharded knowledge base served by one named Ray actor per shard.

Every process that opens the same shard folder with the same ``RaySettings`` finds the same actors by
name (created by whichever comes first), so many training workers share one copy of the index. A query
goes to all shards in parallel; their top-k lists are merged exactly; then the owners of the winning
ids return those passages. A shard that does not answer raises ``ShardError`` naming it: results are
never merged from fewer shards than the layout has.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from ragmodels.retrieval.index import require_complete

from .layout import ShardSpec, read_layout
from .merge import kth_scores, merge_topk
from .server import ShardServer

RAY_INSTALL = 'pip install "ragmodels[ray]"'


class ShardError(RuntimeError):
    """A shard's actor died for good, timed out or failed: the answer would be incomplete."""


def require_ray():
    """The ``ray`` module, or an ImportError saying how to install it."""
    try:
        import ray
    except ImportError as err:
        raise ImportError(f"Distributed retrieval needs Ray, which is not installed: {RAY_INSTALL}") from err
    return ray


@dataclass(frozen=True)
class RaySettings:
    """Where the shard actors live and how they are started."""

    address: str | None = None  # Ray cluster address; None: RAY_ADDRESS, else a new local Ray
    namespace: str = "ragmodels"  # Ray namespace of the named actors
    name: str | None = None  # actor-name prefix; None: derived from the shard folder and its layout
    max_restarts: int = 3  # restarts of a dead shard actor (each reloads its shard from disk)
    detached: bool = False  # keep the actors alive after the process that started them exits
    timeout_s: float | None = 300.0  # longest wait for one shard's answer
    actor_options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))  # e.g. num_cpus


class ShardedKnowledgeBase:
    """The knowledge-base interface ``RagRetriever`` uses (retrieve, init_index, ...) over shard actors."""

    def __init__(self, path: str | os.PathLike, settings: RaySettings = RaySettings()):
        require_ray()
        self.layout = read_layout(path)
        self.settings = settings
        self.actors: list = []  # one handle per shard, in shard order, after init_index

    @property
    def path(self) -> Path:
        return self.layout.root

    @property
    def dimension(self) -> int:
        return self.layout.dimension

    def __len__(self) -> int:
        return self.layout.passage_count

    def __repr__(self) -> str:
        return f"ShardedKnowledgeBase(path={str(self.path)!r}, shards={len(self.layout.shards)}, passages={len(self)})"

    # -- actors -------------------------------------------------------------------------------------
    def is_initialized(self) -> bool:
        return bool(self.actors)

    def init_index(self) -> None:
        """Connect to Ray, then find the shard actors by name or start them; check each one's shard."""
        ray = require_ray()
        if not ray.is_initialized():
            ray.init(address=self.settings.address)
        server = ray.remote(ShardServer)
        actors = [server.options(**self._actor_options(spec)).remote(str(self.layout.shard_path(spec)), spec)
                  for spec in self.layout.shards]
        infos = self._gather([(spec, actor.info.remote()) for spec, actor in zip(self.layout.shards, actors)])
        for spec, info in zip(self.layout.shards, infos):
            if (info["number"], info["count"]) != (spec.number, spec.count):
                raise ShardError(f"The actor {self.actor_name(spec)} serves another shard ({info}); expected {spec}.")
        self.actors = actors

    def actor_name(self, spec: ShardSpec) -> str:
        return f"{self.settings.name or 'kb-' + self.layout.fingerprint()}-shard-{spec.number:05d}"

    def shutdown(self) -> None:
        """Kill the shard actors (for every process using them)."""
        ray = require_ray()
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []

    # -- queries ------------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` over all shards of (bs, d) queries: scores float32 (bs, k), global ids int64 (bs, k)."""
        answers = self._search_all(queries, k)
        scan_ties = self.layout.index_kind == "flat" and self.layout.metric == "ip"
        if scan_ties:
            answers = self._complete_ties(queries, k, answers)
        return merge_topk([s for s, _ in answers], [i for _, i in answers], k,
                          larger_ids_first=self.layout.metric == "ip", scan_ties=scan_ties)

    def _search_all(self, queries: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        specs = self.layout.shards
        answers = self._gather([(spec, actor.search.remote(queries, k)) for spec, actor in zip(specs, self.actors)])
        for spec, answer in zip(specs, answers):
            self._check_answer(spec, answer, (len(queries), k))
        return answers

    def _complete_ties(self, queries: np.ndarray, k: int, answers: list) -> list:
        """Shards whose last result ties the overall k-th score may hold more such ties: fetch them all."""
        thresholds = kth_scores([scores for scores, _ in answers], k)  # (bs,)
        partial = [j for j, (scores, ids) in enumerate(answers)
                   if ((scores[:, -1] == thresholds) & (ids[:, -1] >= 0)).any()]
        calls = [(self.layout.shards[j], self.actors[j].search_down_to.remote(queries, thresholds, 2 * k))
                 for j in partial]
        answers = list(answers)
        for j, answer in zip(partial, self._gather(calls)):
            self._check_answer(self.layout.shards[j], answer, (len(queries), None))
            answers[j] = answer
        return answers

    def _check_answer(self, spec: ShardSpec, answer: tuple[np.ndarray, np.ndarray], shape: tuple) -> None:
        """Raise ShardError unless a shard answered (bs, k) scores and ids of its own range (or holes)."""
        scores, ids = answer
        bs, k = shape
        if (scores.shape != ids.shape or len(scores) != bs or (k is not None and scores.shape[1] != k)
                or not (spec.contains(ids) | (ids < 0)).all()):
            raise ShardError(f"Shard {spec.number} ({self.layout.shard_path(spec)}) answered out of its range or shape.")

    def retrieve(self, question_hidden_states: np.ndarray, n_docs: int) -> tuple[np.ndarray, np.ndarray, list[dict]]:
        """(bs, d) -> embeddings float32 (bs, n, d), global ids int64 (bs, n), doc_dicts (as IndexedPassages)."""
        _, ids = self.search(question_hidden_states, n_docs)  # (bs, n)
        doc_dicts, embeds = self.lookup(require_complete(ids))  # embeds (bs, n, d)
        for doc_dict, doc_embeds in zip(doc_dicts, embeds):
            doc_dict["embeddings"] = doc_embeds
        return embeds, ids, doc_dicts

    def get_top_docs(self, question_hidden_states: np.ndarray, n_docs: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """The reference's index search: (bs, d) -> global ids int64 (bs, n), embeddings float32 (bs, n, d)."""
        _, ids = self.search(question_hidden_states, n_docs)  # (bs, n)
        return ids, self.lookup(require_complete(ids))[1]

    def get_doc_dicts(self, doc_ids: np.ndarray) -> list[dict]:
        return self.lookup(doc_ids)[0]

    def lookup(self, ids: np.ndarray) -> tuple[list[dict], np.ndarray]:
        """Passages of a (bs, k) global-id matrix, each shard asked once for its own ids -> (doc_dicts, (bs, k, d))."""
        ids = np.asarray(ids, dtype=np.int64)
        flat = ids.reshape(-1)  # (bs * k,)
        if flat.size and (flat.min() < 0 or flat.max() >= len(self)):
            raise ValueError(
                f"Passage ids must lie in [0, {len(self)}) for {self.path}, got [{flat.min()}, {flat.max()}]."
            )
        owned = [(spec, actor, np.flatnonzero(spec.contains(flat)))
                 for spec, actor in zip(self.layout.shards, self.actors)]
        owned = [(spec, actor, rows) for spec, actor, rows in owned if rows.size]
        answers = self._gather([(spec, actor.lookup.remote(flat[rows])) for spec, actor, rows in owned])
        embeds = np.empty((flat.size, self.dimension), np.float32)  # (bs * k, d)
        columns: dict[str, list] = {}
        for (_, _, rows), (shard_columns, shard_embeds) in zip(owned, answers):
            embeds[rows] = shard_embeds
            for name, values in shard_columns.items():
                _scatter(columns.setdefault(name, [None] * flat.size), rows, values)
        k = ids.shape[-1]
        doc_dicts = [{name: values[i * k : (i + 1) * k] for name, values in columns.items()} for i in range(len(ids))]
        return doc_dicts, embeds.reshape(*ids.shape, self.dimension)

    # -- helpers ------------------------------------------------------------------------------------
    def _actor_options(self, spec: ShardSpec) -> dict[str, Any]:
        s = self.settings
        options = {"name": self.actor_name(spec), "namespace": s.namespace, "get_if_exists": True,
                   "max_restarts": s.max_restarts, "max_task_retries": s.max_restarts, **s.actor_options}
        return options | ({"lifetime": "detached"} if s.detached else {})

    def _gather(self, calls: Sequence[tuple[ShardSpec, Any]]) -> list:
        """Every shard's answer, in order, or ShardError naming the first shard that gave none."""
        ray = require_ray()
        answers = []
        for spec, ref in calls:
            try:
                answers.append(ray.get(ref, timeout=self.settings.timeout_s))
            except ray.exceptions.RayError as err:
                reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
                raise ShardError(
                    f"Shard {spec.number} ({self.layout.shard_path(spec)}, actor {self.actor_name(spec)!r}) did not "
                    f"answer: {type(err).__name__}: {reason}. Its actor died past max_restarts="
                    f"{self.settings.max_restarts}, timed out or failed; no partial results were merged."
                ) from err
        return answers


def _scatter(target: list, rows: np.ndarray, values: list) -> None:
    for row, value in zip(rows.tolist(), values):
        target[row] = value
