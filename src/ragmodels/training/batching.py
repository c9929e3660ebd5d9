"""Turning question/answer records into model batches, and the deterministic order of examples.

Examples are shuffled once per epoch from ``(seed, epoch)`` alone, so a resumed run sees exactly the
batches an uninterrupted one would. A global batch is split across processes by striding
(``batch[rank::world_size]``), then into micro-batches for gradient accumulation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch


def encode_batch(
    tokenizer, records: Sequence[dict[str, Any]], decoder_start_token_id: int, max_question_length: int,
    max_answer_length: int,
) -> dict[str, torch.Tensor]:
    """Questions through the question-encoder tokenizer; the first answer as ``labels``.

    labels = [decoder_start] + generator tokens of the answer (with its own specials), padded with the
    generator's pad id: the same token sequence generation produces, so training and decoding agree.
    """
    questions = tokenizer.question_encoder(
        [r["question"] for r in records], padding=True, truncation=True, max_length=max_question_length,
        return_tensors="pt",
    )
    generator = tokenizer.generator
    answers = generator([r["answers"][0] for r in records], truncation=True, max_length=max_answer_length - 1)
    targets = [[decoder_start_token_id, *ids] for ids in answers["input_ids"]]
    labels = torch.full((len(targets), max(map(len, targets))), generator.pad_token_id, dtype=torch.long)
    for row, ids in enumerate(targets):
        labels[row, : len(ids)] = torch.tensor(ids)
    return {"input_ids": questions["input_ids"], "attention_mask": questions["attention_mask"], "labels": labels}


def steps_per_epoch(num_examples: int, global_batch_size: int) -> int:
    return math.ceil(num_examples / global_batch_size)


def global_batch(num_examples: int, global_batch_size: int, seed: int, epoch: int, index: int) -> list[int]:
    """Example indices of the ``index``-th optimizer step of ``epoch`` (the last one may be short)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(num_examples, generator=generator).tolist()
    return order[index * global_batch_size : (index + 1) * global_batch_size]


def local_micro_batches(batch: Sequence[int], rank: int, world_size: int, micro_batch_size: int) -> list[list[int]]:
    """This process's share of a global batch, cut into micro-batches (possibly none)."""
    mine = list(batch[rank::world_size])
    return [mine[i : i + micro_batch_size] for i in range(0, len(mine), micro_batch_size)]
