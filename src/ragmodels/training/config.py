"""TrainConfig: every knob of the fine-tuning recipe, one flat dataclass (JSON/CLI friendly)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .precision import check_precision


@dataclass
class TrainConfig:
    """Fine-tuning RAG-Token / RAG-Sequence on question/answer JSONL.

    Batches: each optimizer step consumes ``batch_size * grad_accum_steps * world_size`` examples; the loss
    is the mean negative marginal log-likelihood over them, whatever the number of processes.
    End-to-end retriever training is on when ``ctx_encoder_path`` is set: the context encoder is trained
    too and the knowledge base re-encoded every ``reindex_every`` steps in the background, the new index
    going live ``reindex_lag`` steps after the encoding started.
    """

    train_file: str
    output_dir: str
    model_path: str | None = None  # RAG checkpoint folder (config, weights, tokenizer sub-folders)
    knowledge_base: str | None = None  # knowledge-base folder the retriever searches
    rag_kind: str | None = None  # "token" or "sequence"; default: the checkpoint's architecture
    dev_file: str | None = None
    documents_file: str | None = None  # documents JSONL of the knowledge base, for gold-passage recall
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 8
    grad_accum_steps: int = 1
    learning_rate: float = 3e-5
    weight_decay: float = 0.01
    adam_epsilon: float = 1e-8
    warmup_steps: int = 0
    max_grad_norm: float | None = 1.0
    # AdamW inside the backward, gradients freed as they come (less memory, same result): None = whenever
    # grad_accum_steps == 1, one process and max_grad_norm None; True = required; False = never (step.py).
    optimizer_in_backward: bool | None = None
    # "fp32", or "bf16": forward and loss under bfloat16 autocast, weights/gradients/AdamW float32 (precision.py)
    precision: str = "fp32"
    n_docs: int | None = None
    max_question_length: int = 64
    max_answer_length: int = 32
    freeze_question_encoder: bool = False
    freeze_generator: bool = False
    # set RagConfig.copy_from_context: each passage's softmax restricted to copying from it, in the loss and
    # in decoding (ragmodels.generation.context_copy); saved with the trained model
    copy_from_context: bool = False
    seed: int = 0
    save_every_steps: int | None = None
    resume_from: str | None = None  # a checkpoint folder, or "latest" (the newest one in output_dir)
    on_malformed: str = "stop"  # "stop" or "skip" malformed JSONL lines
    eval_ks: list[int] = field(default_factory=lambda: [1, 5])
    eval_batch_size: int = 16
    dev_generate: bool = True  # dev EM/F1 by generation (else dev loss and recall only)
    ctx_encoder_path: str | None = None
    reindex_every: int = 100
    reindex_lag: int = 1
    progress_bar: bool = True
    device: str | None = None

    def __post_init__(self) -> None:
        positive = ("epochs", "batch_size", "grad_accum_steps", "reindex_every", "reindex_lag", "eval_batch_size",
                    "max_question_length", "max_answer_length")
        optional_positive = ("max_steps", "n_docs", "save_every_steps")
        for name in positive + optional_positive:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{_flag(name)} must be at least 1, got {value}.")
        for name, low, strict in (("learning_rate", 0, True), ("adam_epsilon", 0, True), ("weight_decay", 0, False),
                                  ("warmup_steps", 0, False), ("max_grad_norm", 0, True)):
            value = getattr(self, name)
            if value is not None and (value <= low if strict else value < low):
                raise ValueError(f"{_flag(name)} must be {'more than' if strict else 'at least'} {low}, got {value}.")
        if any(k < 1 for k in self.eval_ks):
            raise ValueError(f"{_flag('eval_ks')} must be at least 1 each, got {self.eval_ks}.")
        check_precision(self.precision)
        if self.on_malformed not in ("stop", "skip"):
            raise ValueError(f"on_malformed must be 'stop' or 'skip', got {self.on_malformed!r}.")
        if self.freeze_question_encoder and self.freeze_generator and self.ctx_encoder_path is None:
            raise ValueError("Both parts are frozen: nothing would be trained.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown TrainConfig fields: {unknown}.")
        return cls(**values)


# ``ragmodels train --help``: one line per TrainConfig field (a test checks that every field has one).
FIELD_HELP = {
    "train_file": "question/answer JSONL to train on ({\"question\", \"answers\"} per line)",
    "output_dir": "folder for checkpoints, the log and the final model (OUTPUT_DIR/model)",
    "model_path": "RAG checkpoint folder or Hub id to start from; 'default' = the shipped default model "
                  "(make a checkpoint offline with `ragmodels init`)",
    "knowledge_base": "knowledge-base folder the retriever searches (default: the checkpoint's own index)",
    "rag_kind": "'token' or 'sequence' (default: the checkpoint's head)",
    "dev_file": "question/answer JSONL scored after each epoch (EM/F1, recall@k)",
    "documents_file": "the knowledge base's documents JSONL, for gold-passage recall on dev",
    "epochs": "passes over the training file (default 1)",
    "max_steps": "stop after this many optimizer steps (default: all epochs)",
    "batch_size": "questions per process per micro-batch (default 8)",
    "grad_accum_steps": "micro-batches per optimizer step (default 1)",
    "learning_rate": "peak AdamW learning rate (default 3e-5)",
    "weight_decay": "AdamW weight decay, not applied to biases and norms (default 0.01)",
    "adam_epsilon": "AdamW epsilon (default 1e-8)",
    "warmup_steps": "linear warm-up steps, then linear decay to 0 (default 0)",
    "max_grad_norm": "clip the gradient norm to this (default 1.0)",
    "optimizer_in_backward": "update weights inside the backward pass (default: automatic, when possible)",
    "precision": "'fp32' (default) or 'bf16' (bfloat16 autocast forward and loss; weights stay float32)",
    "n_docs": "passages retrieved per question (default: the checkpoint's n_docs)",
    "max_question_length": "question tokens kept (default 64)",
    "max_answer_length": "answer tokens kept (default 32)",
    "freeze_question_encoder": "do not train the question encoder",
    "freeze_generator": "do not train the generator",
    "copy_from_context": "train a copy-restricted model (RagConfig.copy_from_context; saved with it)",
    "seed": "random seed of shuffling and dropout (default 0)",
    "save_every_steps": "write a resumable checkpoint every N steps",
    "resume_from": "a checkpoint folder, or 'latest' (the newest in OUTPUT_DIR), to resume exactly",
    "on_malformed": "'stop' (default) or 'skip' malformed JSONL lines",
    "eval_ks": "k values of recall@k on dev (default 1 5)",
    "eval_batch_size": "questions per batch on dev (default 16)",
    "dev_generate": "score dev by generation (EM/F1), else loss and recall only",
    "ctx_encoder_path": "context encoder to train end to end (re-indexing the knowledge base)",
    "reindex_every": "end-to-end: re-encode the knowledge base every N steps (default 100)",
    "reindex_lag": "end-to-end: the new index goes live N steps after its encoding started (default 1)",
    "progress_bar": "show a progress bar on stderr",
    "device": "'cpu', 'cuda', 'cuda:1', ... (default: CUDA when available)",
}


def _flag(name: str) -> str:
    """How a TrainConfig field is named in errors: its flag and its field ("--batch-size (TrainConfig.batch_size)")."""
    return f"--{name.replace('_', '-')} (TrainConfig.{name})"
