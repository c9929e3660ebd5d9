"""Copy-constrained decoding: the processor's allowed sets by hand, and both heads' answers checked
against a naive span search over their contexts (and, for greedy RAG-Token, against the brute-force
marginal restricted to the allowed tokens)."""

from __future__ import annotations

import pytest
import torch

from ragmodels.generation.context_copy import ContextCopyLogitsProcessor

from .test_token import _marginal_log_probs

PAD, EOS, BOS, START = -7, 2, 1, 0


def _allowed(processor, generated: list[list[int]], vocab: int = 16) -> list[set[int]]:
    out = processor(torch.tensor(generated), torch.zeros(len(generated), vocab))
    return [set(torch.isfinite(row).nonzero().flatten().tolist()) for row in out]


def _processor(copies: int = 1, bos: int | None = None, start: int = 1) -> ContextCopyLogitsProcessor:
    contexts = torch.tensor([[5, 6, 7, 8, 2], [9, 6, 10, 2, 0], [3, 4, 2, 0, 0], [11, 12, 13, 2, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])  # 0: padding
    return ContextCopyLogitsProcessor(contexts, mask, group_size=2, copies=copies, eos_token_ids=[EOS],
                                      start=start, bos_token_id=bos)


def test_allowed_tokens_follow_the_spans_of_the_rows_contexts():
    p = _processor()
    assert _allowed(p, [[START], [START]]) == [{5, 6, 7, 8, 9, 10}, {3, 4, 11, 12, 13}]  # no EOS, no padding
    assert _allowed(p, [[START, 6], [START, 12]]) == [{7, 10, EOS}, {13, EOS}]
    assert _allowed(p, [[START, 6, 7], [START, 3, 4]]) == [{8, EOS}, {EOS}]
    assert _allowed(p, [[START, 6, 7, 8, 2], [START, 11, 12, 13, 2]]) == [{EOS}, {EOS}]  # nothing follows
    assert _allowed(p, [[START, 7, 6], [START, 12, 11]]) == [{EOS}, {EOS}]  # not a span: may only stop


def test_copies_share_their_groups_contexts():
    p = _processor(copies=2)
    assert _allowed(p, [[START, 6], [START, 5], [START, 4], [START, 13]]) == [{7, 10, EOS}, {6, EOS}, {EOS}, {EOS}]


def test_a_leading_bos_is_not_part_of_the_span_and_start_skips_forced_tokens():
    p = _processor(bos=BOS)
    assert _allowed(p, [[START], [START]]) == [{5, 6, 7, 8, 9, 10, BOS}, {3, 4, 11, 12, 13, BOS}]
    assert _allowed(p, [[START, BOS], [START, 3]]) == [{5, 6, 7, 8, 9, 10}, {4, EOS}]
    assert _allowed(p, [[START, BOS, 9], [START, BOS, 11]]) == [{6, EOS}, {12, EOS}]
    forced = _processor(start=2)
    assert _allowed(forced, [[START], [START]]) == [set(range(16))] * 2  # the forced position is left alone
    assert _allowed(forced, [[START, 15, 6], [START, 15, 4]]) == [{7, 10, EOS}, {EOS}]


def test_needs_an_eos():
    with pytest.raises(ValueError, match="eos_token_id"):
        ContextCopyLogitsProcessor(torch.ones(2, 3, dtype=torch.long), torch.ones(2, 3), 1, 1, eos_token_ids=[])


def _answer(sequence: list[int], skip: set[int], eos: int) -> list[int]:
    """Generated tokens after the decoder start and leading skipped tokens (BOS), up to the first EOS."""
    tokens = sequence[1:]
    while tokens and tokens[0] in skip:
        tokens = tokens[1:]
    return tokens[: tokens.index(eos)] if eos in tokens else tokens


def _is_span(answer: list[int], contexts: torch.Tensor, mask: torch.Tensor) -> bool:
    for row, m in zip(contexts.tolist(), mask.tolist()):
        row = [t for t, keep in zip(row, m) if keep]
        if any(row[p : p + len(answer)] == answer for p in range(len(row) - len(answer) + 1)):
            return True
    return False


@pytest.mark.parametrize("head", ["token", "sequence"])
@pytest.mark.parametrize("generator", ["bart", "t5"])
@pytest.mark.parametrize("num_beams", [1, 3])
def test_every_answer_is_a_span_of_its_questions_contexts(models, head, generator, num_beams):
    m = models(head, generator)
    ctx = m.contexts(3, padded=True)
    free = m.ours.generate(num_beams=num_beams, max_length=8, **ctx)
    copied = m.ours.generate(num_beams=num_beams, max_length=8, copy_from_context=True, **ctx)
    g = m.ours.config.generator
    bos = getattr(g, "bos_token_id", None)
    skip = {bos} if bos is not None else set()
    k = ctx["n_docs"]
    spans = [_is_span(a, ctx["context_input_ids"][b * k : (b + 1) * k], ctx["context_attention_mask"][b * k : (b + 1) * k])
             for b, a in enumerate(_answer(s, skip, g.eos_token_id) for s in copied.tolist())]
    assert all(spans), copied
    assert all(len(_answer(s, skip, g.eos_token_id)) for s in copied.tolist())  # never empty
    free_spans = [_is_span(_answer(s, skip, g.eos_token_id), ctx["context_input_ids"][b * k : (b + 1) * k],
                           ctx["context_attention_mask"][b * k : (b + 1) * k]) for b, s in enumerate(free.tolist())]
    assert not all(free_spans)  # the random tiny model does not copy on its own: the constraint did the work


@pytest.mark.parametrize("generator", ["bart", "t5"])
def test_greedy_rag_token_is_the_argmax_of_the_marginal_over_allowed_tokens(models, generator):
    m = models("token", generator)
    ctx = m.contexts(2, padded=True)
    seqs = m.ours.generate(max_length=8, copy_from_context=True, **ctx)  # (2, 8)
    lp = _marginal_log_probs(m.ours, ctx, seqs)  # (2, 7, V) brute force
    g = m.ours.config.generator
    bos = getattr(g, "bos_token_id", None)
    k = ctx["n_docs"]
    for b, seq in enumerate(seqs.tolist()):
        rows = [[t for t, keep in zip(r, mk) if keep] for r, mk in
                zip(ctx["context_input_ids"][b * k : (b + 1) * k].tolist(), ctx["context_attention_mask"][b * k : (b + 1) * k].tolist())]
        for t in range(1, len(seq)):
            if seq[t - 1] == g.eos_token_id and t > 1:
                break
            answer = seq[1:t]
            if bos is not None and answer[:1] == [bos]:
                answer = answer[1:]
            if answer:
                allowed = {r[p + len(answer)] for r in rows for p in range(len(r) - len(answer)) if r[p : p + len(answer)] == answer}
                allowed.add(g.eos_token_id)
            else:
                allowed = {x for r in rows for x in r} - {g.eos_token_id, bos}
                if t == 1 and bos is not None:
                    allowed.add(bos)
            best = max(allowed, key=lambda v: lp[b, t - 1, v].item())
            assert seq[t] == best, (b, t)
