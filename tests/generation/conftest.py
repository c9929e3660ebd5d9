"""Generation fixtures: our heads next to the reference's with identical tiny random weights, contexts
built directly (so padding is under the test's control), and brute-force likelihoods computed with
plain full forward passes of the generator (no cache, no shared decoding code)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch
import transformers

from conftest import PASSAGES, QUESTIONS, tiny_rag_config
from ragmodels import RagSequenceForGeneration, RagTokenForGeneration

N_DOCS = 3
HEADS = {"token": (RagTokenForGeneration, transformers.RagTokenForGeneration),
         "sequence": (RagSequenceForGeneration, transformers.RagSequenceForGeneration)}


@dataclass
class Models:
    ours: Any
    ref: Any
    tokenizer: Any

    def contexts(self, batch: int, padded: bool, n_docs: int = N_DOCS, seed: int = 0):
        """(B*k, L) contexts (passage // question) and doc_scores (B, k). Unpadded: the mask is all ones
        (the pad tokens are plain content for both implementations); padded: real padding, masked."""
        texts = [f"{t} / {x} // {QUESTIONS[b % len(QUESTIONS)]}"
                 for b in range(batch) for t, x in PASSAGES[b : b + n_docs]]
        enc = self.tokenizer(texts, return_tensors="pt", padding=True)
        mask = enc.attention_mask if padded else torch.ones_like(enc.attention_mask)
        if padded:
            assert not mask.all()
        scores = torch.randn(batch, n_docs, generator=torch.Generator().manual_seed(seed)) * 2
        return dict(context_input_ids=enc.input_ids, context_attention_mask=mask, doc_scores=scores, n_docs=n_docs)


def build(head: str, generator: str, tokenizer) -> Models:
    gen_cfg = {"bart": transformers.BartConfig, "t5": transformers.T5Config}
    base = tiny_rag_config(tokenizer, generator)
    g = base.generator
    start = g.decoder_start_token_id
    config = tiny_rag_config(
        tokenizer, generator, bos_token_id=getattr(g, "bos_token_id", None), eos_token_id=g.eos_token_id,
        pad_token_id=g.pad_token_id, decoder_start_token_id=start,
    )
    # larger weights than the default init so that passages and beams disagree (outputs are not constant)
    config.generator.init_std = 0.5
    config.generator.initializer_factor = 8.0
    torch.manual_seed(0)
    ours_cls, ref_cls = HEADS[head]
    ours = ours_cls(config).eval()
    ref = None
    if not (head == "sequence" and generator == "t5"):  # the reference crashes there
        ref = ref_cls(transformers.RagConfig(**ours.config.to_dict()))
        ref.load_state_dict(ours.state_dict(), strict=True)
        ref.eval()
    del gen_cfg
    return Models(ours, ref, tokenizer)


@pytest.fixture(scope="session")
def models(bart_tokenizer, t5_tokenizer):
    cache: dict = {}

    def get(head: str = "token", generator: str = "bart") -> Models:
        if (head, generator) not in cache:
            cache[head, generator] = build(head, generator, {"bart": bart_tokenizer, "t5": t5_tokenizer}[generator])
        return cache[head, generator]

    return get


def target_mask(seqs: torch.Tensor, eos: int) -> torch.Tensor:
    """(S, T-1): generated tokens up to and including the first EOS."""
    targets = seqs[:, 1:]
    is_eos = targets.eq(eos).int()
    return (is_eos.cumsum(-1) - is_eos) == 0


@torch.no_grad()
def passage_log_likelihood(generator, ctx_ids, ctx_mask, seqs, eos: int) -> torch.Tensor:
    """Brute force log p(y_s | z_i) for every passage i (rows of ctx) and sequence s: (P, S).

    One full teacher-forced forward pass per passage, no cache; seqs start with the decoder start token.
    """
    mask = target_mask(seqs, eos)
    out = []
    for i in range(ctx_ids.shape[0]):
        logits = generator(
            input_ids=ctx_ids[i : i + 1].expand(seqs.shape[0], -1),
            attention_mask=ctx_mask[i : i + 1].expand(seqs.shape[0], -1),
            decoder_input_ids=seqs[:, :-1], use_cache=False,
        ).logits.float()
        lp = torch.log_softmax(logits, -1).gather(-1, seqs[:, 1:, None]).squeeze(-1)  # (S, T-1)
        out.append((lp * mask).sum(-1))
    return torch.stack(out)
