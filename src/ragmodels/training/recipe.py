"""Fine-tune RAG-Token / RAG-Sequence on question/answer JSONL: the recipe, as a library function.

    ragmodels train --train-file train.jsonl --model-path rag/ --knowledge-base kb/ \\
        --output-dir runs/geo [--dev-file dev.jsonl] [--epochs 3] [--ctx-encoder-path enc/ --reindex-every 100]
    torchrun --nproc-per-node 2 -m ragmodels.cli train ...   # data parallel

The question encoder and the generator are updated jointly (either can be frozen) with the index fixed,
or, with a context encoder, end to end with the index re-built every ``reindex_every`` steps. Each epoch
ends with a dev evaluation and a checkpoint; ``resume_from`` continues a run exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..data.jsonl import read_jsonl, read_qa_jsonl
from ..evaluation.evaluator import evaluate
from . import distributed
from .batching import encode_batch, global_batch, local_micro_batches, steps_per_epoch
from .checkpoint import (
    CheckpointError, find_checkpoints, load_checkpoint, resolve_checkpoint, rng_state, save_checkpoint, set_rng_state,
)
from .components import Components, install_embeddings, kb_passages, load_components
from .config import TrainConfig
from .end2end import IndexRefresher, check_kb_encoder
from .log import JsonlLog
from .optim import build_optimizer, build_scheduler, freeze
from .precision import autocast
from .step import TrainStep, use_optimizer_in_backward

@dataclass
class TrainResult:
    step: int
    loss: float  # loss of the last optimizer step
    dev_metrics: dict[str, Any] | None
    output_dir: Path
    log: list[dict[str, Any]]
    reindexes: int  # knowledge-base re-indexings done (end-to-end training)


def train(config: TrainConfig, components: Components | None = None) -> TrainResult:
    """Run the recipe; ``components`` (model, tokenizer, retriever, ...) default to ``load_components(config)``."""
    env = distributed.setup(config.device)
    try:
        return _train(config, components, env)
    finally:
        distributed.teardown(env)


def _train(config: TrainConfig, components: Components | None, env: distributed.DistEnv) -> TrainResult:
    output_dir = Path(config.output_dir)
    train_set = read_qa_jsonl(config.train_file, on_error=config.on_malformed)
    dev_set = read_qa_jsonl(config.dev_file, on_error=config.on_malformed) if config.dev_file else None
    if not train_set.records:
        raise ValueError(f"{config.train_file} holds no usable question/answer record.")
    gold_texts = None
    if config.documents_file:
        gold_texts = {d["id"]: d["text"] for d in read_jsonl(config.documents_file).records}
    if config.resume_from is None and find_checkpoints(output_dir):
        raise CheckpointError(
            f"{output_dir} already holds checkpoints; pass resume_from='latest' to continue that run, or choose "
            "another output_dir (existing checkpoints are never overwritten by a new run)."
        )

    torch.manual_seed(config.seed)
    parts = components or load_components(config)
    model, tokenizer, retriever = parts.model.to(env.device), parts.tokenizer, parts.retriever
    model.set_retriever(retriever)
    freeze(model, config.freeze_question_encoder, config.freeze_generator)
    if config.copy_from_context:
        model.config.copy_from_context = True
    refresher = _end_to_end(config, parts, model) if parts.ctx_encoder is not None else None
    optimizer = build_optimizer(model, config.learning_rate, config.weight_decay, config.adam_epsilon)

    n_examples = len(train_set.records)
    batch_size = config.batch_size * config.grad_accum_steps * env.world_size
    per_epoch = steps_per_epoch(n_examples, batch_size)
    total_steps = per_epoch * config.epochs if config.max_steps is None else min(config.max_steps, per_epoch * config.epochs)
    scheduler = build_scheduler(optimizer, config.warmup_steps, total_steps)
    run_shape = {"world_size": env.world_size, "global_batch_size": batch_size, "num_examples": n_examples}

    start_step = 0
    if config.resume_from is not None:
        start_step = _resume(resolve_checkpoint(config.resume_from, output_dir), model, optimizer, scheduler,
                             refresher, run_shape, env, parts.retriever)
    log = JsonlLog(output_dir / "log.jsonl", env.is_main, resume_step=start_step if config.resume_from else None)
    if env.is_main and train_set.errors and start_step == 0:
        log.write({"step": 0, "skipped_lines": [e.to_dict() for e in train_set.errors]})

    in_backward = use_optimizer_in_backward(config.optimizer_in_backward, config.grad_accum_steps, env.world_size,
                                            config.max_grad_norm)
    trainer = TrainStep(optimizer, config.max_grad_norm, in_backward=in_backward, env=env)
    forward_precision = autocast(config.precision, env.device)  # re-entered by every micro-batch's forward
    decoder_start = model.config.generator.decoder_start_token_id
    loss, dev_metrics = math.nan, None
    bar = tqdm(total=total_steps, initial=start_step, desc="training", disable=not (config.progress_bar and env.is_main))
    model.train()
    for step in range(start_step, total_steps):
        epoch, index = divmod(step, per_epoch)
        if refresher is not None:
            refresher.before_step(step)
        batch = global_batch(n_examples, batch_size, config.seed, epoch, index)
        loss_sum = 0.0
        for ids in local_micro_batches(batch, env.rank, env.world_size, config.batch_size):
            records = [train_set.records[i] for i in ids]
            inputs = encode_batch(tokenizer, records, decoder_start, config.max_question_length, config.max_answer_length)
            with forward_precision:
                out = model(**{k: v.to(env.device) for k, v in inputs.items()}, reduce_loss=False,
                            n_docs=config.n_docs, use_cache=False)
            trainer.backward(out.loss.sum() / len(batch))
            loss_sum += out.loss.detach().sum().item()
        lr = scheduler.get_last_lr()[0]
        grad_norm = trainer.step()  # sum across processes, clip, AdamW, grads to None (see step.py)
        scheduler.step()
        loss = distributed.sum_scalar(loss_sum, env) / len(batch)
        log.write({"step": step + 1, "epoch": epoch, "loss": loss, "lr": lr, "grad_norm": grad_norm})
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}")
        end_of_epoch = (step + 1) % per_epoch == 0 or step + 1 == total_steps
        if end_of_epoch and dev_set is not None and env.is_main:
            dev_metrics = _dev_metrics(model, tokenizer, dev_set.records, config, gold_texts, decoder_start)
            log.write({"step": step + 1, "epoch": epoch, "dev": dev_metrics})
            model.train()
        if end_of_epoch or (config.save_every_steps and (step + 1) % config.save_every_steps == 0):
            _save(output_dir, step + 1, model, optimizer, scheduler, refresher, config, run_shape, env)
    bar.close()
    if env.is_main:
        _export(output_dir / "model", model, tokenizer, retriever, parts.ctx_encoder)
    distributed.barrier(env)
    return TrainResult(step=total_steps, loss=loss, dev_metrics=dev_metrics, output_dir=output_dir, log=log.records,
                       reindexes=refresher.refreshes if refresher is not None else 0)


def _end_to_end(config: TrainConfig, parts: Components, model: torch.nn.Module) -> IndexRefresher:
    """Train the context encoder too: the model re-embeds retrieved passages, the index is rebuilt in the background."""
    ctx_encoder = parts.ctx_encoder.to(next(model.parameters()).device)
    model.set_context_encoder_for_training(ctx_encoder)
    parts.retriever.set_ctx_encoder_tokenizer(parts.ctx_tokenizer)
    columns, stored = kb_passages(parts.retriever)
    refresher = IndexRefresher(
        ctx_encoder, parts.ctx_tokenizer, columns["title"], columns["text"],
        install=lambda embeddings: install_embeddings(parts.retriever, columns, embeddings),
        every=config.reindex_every, lag=config.reindex_lag, pooling=model.config.question_encoder_pooling,
    )
    check_kb_encoder(ctx_encoder, parts.ctx_tokenizer, columns["title"], columns["text"], stored,
                     model.config.question_encoder_pooling)
    return refresher


def _resume(path: Path, model, optimizer, scheduler, refresher, run_shape, env, retriever) -> int:
    state = load_checkpoint(path, model)
    if state["run_shape"] != run_shape:
        raise CheckpointError(
            f"Checkpoint {path} comes from a run with {state['run_shape']}, this run has {run_shape}; resume with "
            "the same number of processes, batch settings and training file to continue exactly."
        )
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"][env.rank])
    embeddings = state.get("kb_embeddings", {})
    if refresher is not None and "current" in embeddings:
        refresher.install(embeddings["current"].numpy())
        refresher.refreshes = state["reindexes"]
        if "pending" in embeddings:
            refresher.restore_pending(state["pending_install_step"], embeddings["pending"].numpy())
    return state["step"]


def _save(output_dir, step, model, optimizer, scheduler, refresher, config, run_shape, env) -> None:
    """Checkpoint from the main process (all processes gather their RNG states first)."""
    rngs = distributed.gather_objects(rng_state(), env)
    error: Exception | None = None
    if env.is_main:
        state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rngs,
                 "config": config.to_dict(), "run_shape": run_shape}
        embeddings = None
        if refresher is not None:
            _, current = kb_passages(model.retriever)
            embeddings = {"current": torch.tensor(current)}
            state["reindexes"] = refresher.refreshes
            pending = refresher.pending()
            if pending is not None:
                state["pending_install_step"] = pending[0]
                embeddings["pending"] = torch.tensor(pending[1])
        try:
            save_checkpoint(output_dir, step, model, state, embeddings)
        except Exception as err:  # reported on every process below
            error = err
    if distributed.any_failed(error is not None, env):
        raise error or RuntimeError("Saving the checkpoint failed on the main process.")


def _dev_metrics(model, tokenizer, records, config: TrainConfig, gold_texts, decoder_start: int) -> dict[str, Any]:
    """Dev loss (mean NLL per question) and, with ``dev_generate``, EM/F1 and recall@k."""
    model.eval()
    device = next(model.parameters()).device
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(records), config.eval_batch_size):
            batch = records[start : start + config.eval_batch_size]
            inputs = encode_batch(tokenizer, batch, decoder_start, config.max_question_length, config.max_answer_length)
            out = model(**{k: v.to(device) for k, v in inputs.items()}, reduce_loss=False, n_docs=config.n_docs,
                        use_cache=False)
            total += out.loss.sum().item()
    metrics: dict[str, Any] = {"loss": total / len(records)}
    if config.dev_generate:
        report = evaluate(model, tokenizer, records, ks=config.eval_ks, batch_size=config.eval_batch_size,
                          max_question_length=config.max_question_length, keep_predictions=False,
                          gold_texts=gold_texts, generation_kwargs={"max_new_tokens": config.max_answer_length,
                                             **({"n_docs": config.n_docs} if config.n_docs else {})})
        metrics.update({k: v for k, v in report.items() if k != "n_questions"})
    return metrics


def _export(folder: Path, model, tokenizer, retriever, ctx_encoder) -> None:
    """The trained model as a RAG checkpoint folder (weights, config with the knowledge-base paths, tokenizers).

    The retriever writes its knowledge base beside the model when it lives in memory (a re-encoded one).
    """
    retriever.save_pretrained(folder)
    if ctx_encoder is not None:
        ctx_encoder.save_pretrained(folder / "ctx_encoder")
    for name in ("index_name", "passages_path", "index_path"):
        setattr(model.config, name, getattr(retriever.config, name))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
