"""End-to-end retriever training (RAG-end2end): keep the knowledge-base index in step with a context
encoder that is being trained, without stopping training.

Every ``every`` steps a snapshot of the context encoder re-encodes all passages in a background thread
while training goes on; the new embeddings go live exactly ``lag`` steps after the snapshot was taken
(waiting only if the encoding is not finished by then). The install step is fixed, so every process of
a data-parallel run and a resumed run switch indexes at the same step.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..retrieval.knowledge_base.encoder import ContextEncoder


KB_ENCODER_TOLERANCE = 1e-3  # relative difference allowed between stored and re-computed embeddings


def encode_passages(ctx_encoder: torch.nn.Module, ctx_tokenizer, titles: Sequence[str], texts: Sequence[str],
                    pooling: str | None, batch_size: int = 64) -> np.ndarray:
    """Embeddings (n, d) of (title, text) passages under ``ctx_encoder``, in eval mode, as a KB build does."""
    was_training = ctx_encoder.training
    encoder = ContextEncoder(ctx_encoder, ctx_tokenizer, pooling=pooling, device=next(ctx_encoder.parameters()).device)
    chunks = [encoder.encode(titles[i : i + batch_size], texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
    ctx_encoder.train(was_training)
    return np.concatenate(chunks)


def check_kb_encoder(ctx_encoder: torch.nn.Module, ctx_tokenizer, titles: Sequence[str], texts: Sequence[str],
                     stored: np.ndarray, pooling: str | None, sample: int = 8) -> None:
    """Raise if re-encoding the first ``sample`` passages does not reproduce their ``stored`` embeddings."""
    recomputed = encode_passages(ctx_encoder, ctx_tokenizer, titles[:sample], texts[:sample], pooling)
    expected = stored[: len(recomputed)]
    scale = KB_ENCODER_TOLERANCE * max(float(np.abs(expected).max()), 1e-6)
    if recomputed.shape != expected.shape or not np.allclose(recomputed, expected, rtol=KB_ENCODER_TOLERANCE, atol=scale):
        raise ValueError(
            "The knowledge base was built with another context encoder: re-encoding its first passages with the "
            "given context encoder does not reproduce the stored embeddings. Build the knowledge base with this "
            "encoder (ragmodels index build --encoder ...) or train from the encoder it was built with."
        )


class IndexRefresher:
    """Re-encodes ``titles``/``texts`` with snapshots of ``ctx_encoder`` and hands the result to ``install``."""

    def __init__(
        self,
        ctx_encoder: torch.nn.Module,
        ctx_tokenizer,
        titles: Sequence[str],
        texts: Sequence[str],
        install: Callable[[np.ndarray], None],
        every: int,
        lag: int = 1,
        pooling: str | None = None,
        batch_size: int = 64,
    ):
        if lag > every:
            raise ValueError(f"reindex_lag ({lag}) must not exceed reindex_every ({every}).")
        self.ctx_encoder, self.ctx_tokenizer, self.pooling = ctx_encoder, ctx_tokenizer, pooling
        self.titles, self.texts = list(titles), list(texts)
        self.install, self.every, self.lag, self.batch_size = install, every, lag, batch_size
        self.refreshes = 0
        self._thread: threading.Thread | None = None
        self._result: np.ndarray | None = None
        self._install_step: int | None = None

    def before_step(self, step: int) -> None:
        """Call before optimizer step ``step`` (0-based): install a due index, start a due re-encoding."""
        if self._install_step is not None and step >= self._install_step:
            self.install(self.wait())
            self._install_step, self._result = None, None
            self.refreshes += 1
        if step > 0 and step % self.every == 0 and self._install_step is None:
            snapshot = copy.deepcopy(self.ctx_encoder).eval()
            self._result = None
            self._thread = threading.Thread(target=self._run, args=(snapshot,), daemon=True)
            self._thread.start()
            self._install_step = step + self.lag

    def _run(self, snapshot: torch.nn.Module) -> None:
        self._result = encode_passages(snapshot, self.ctx_tokenizer, self.titles, self.texts, self.pooling,
                                       self.batch_size)

    def wait(self) -> np.ndarray:
        """The pending embeddings, waiting for the background encoding if needed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._result is None:
            raise RuntimeError("Re-encoding the knowledge base failed (see the error printed by its thread).")
        return self._result

    def pending(self) -> tuple[int, np.ndarray] | None:
        """(install step, embeddings) of a re-encoding not yet installed, for checkpoints."""
        if self._install_step is None:
            return None
        return self._install_step, self.wait()

    def restore_pending(self, install_step: int, embeddings: np.ndarray) -> None:
        self._install_step, self._result = install_step, embeddings
