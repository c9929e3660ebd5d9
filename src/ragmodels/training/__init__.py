"""Training: the fine-tuning recipe (``train``) and its pieces (batching, optimizer, checkpoints,
data parallelism, end-to-end re-indexing)."""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .components import Components, load_components
from .config import TrainConfig
from .end2end import IndexRefresher
from .recipe import TrainResult, train

__all__ = [
    "CheckpointError", "Components", "IndexRefresher", "TrainConfig", "TrainResult", "load_checkpoint",
    "load_components", "save_checkpoint", "train",
]
