"""Copy-constrained decoding: allowed sets by hand, and both heads checked against brute force: plain
full forward passes of the generator, each passage's softmax restricted to a naive span search over its
context, marginalized over passages."""

from __future__ import annotations

import pytest
import torch

from ragmodels.generation.context_copy import ContextCopy, ContextCopyLogitsProcessor

EOS, BOS, START = 2, 1, 0


def _copy(bos: int | None = None, start: int = 1) -> ContextCopy:
    contexts = torch.tensor([[5, 6, 7, 8, 2], [9, 6, 10, 2, 0], [3, 4, 2, 0, 0], [11, 12, 13, 2, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])  # 0: padding
    return ContextCopy(contexts, mask, eos_token_ids=[EOS], start=start, bos_token_id=bos)


def _allowed(copy: ContextCopy, generated: list[list[int]], rows: list[int], vocab: int = 16) -> list[set[int]]:
    allowed = copy.allowed(torch.tensor(generated), torch.tensor(rows), vocab)
    return [set(row.nonzero().flatten().tolist()) for row in allowed]


def test_allowed_tokens_follow_the_spans_of_each_rows_passage():
    c = _copy()
    assert _allowed(c, [[START], [START], [START]], [0, 1, 2]) == [{5, 6, 7, 8}, {9, 6, 10}, {3, 4}]  # no EOS, pads
    assert _allowed(c, [[START, 6], [START, 6], [START, 6]], [0, 1, 2]) == [{7, EOS}, {10, EOS}, {EOS}]
    assert _allowed(c, [[START, 6, 7], [START, 3, 4]], [0, 2]) == [{8, EOS}, {EOS}]
    assert _allowed(c, [[START, 11, 12, 13, 2]], [3]) == [{EOS}]  # nothing follows: may only stop
    assert _allowed(c, [[START, 7, 6]], [0]) == [{EOS}]  # not a span of passage 0


def test_a_leading_bos_is_not_part_of_the_span_and_start_skips_forced_tokens():
    c = _copy(bos=BOS)
    assert _allowed(c, [[START], [START]], [0, 2]) == [{5, 6, 7, 8, BOS}, {3, 4, BOS}]
    assert _allowed(c, [[START, BOS], [START, 3]], [1, 2]) == [{9, 6, 10}, {4, EOS}]
    assert _allowed(c, [[START, BOS, 9], [START, BOS, 11]], [1, 3]) == [{6, EOS}, {12, EOS}]
    forced = _copy(start=2)
    assert _allowed(forced, [[START]], [0]) == [set(range(16))]  # the forced position is left alone
    assert _allowed(forced, [[START, 15, 6], [START, 15, 4]], [1, 0]) == [{10, EOS}, {EOS}]


def test_processor_for_plain_generate_masks_each_row_to_its_own_context():
    scores = ContextCopyLogitsProcessor(_copy())(torch.tensor([[START, 6], [START, 6]]), torch.zeros(2, 16))
    assert [set(torch.isfinite(r).nonzero().flatten().tolist()) for r in scores] == [{7, EOS}, {10, EOS}]


def test_needs_an_eos():
    with pytest.raises(ValueError, match="eos_token_id"):
        ContextCopy(torch.ones(2, 3, dtype=torch.long), torch.ones(2, 3), eos_token_ids=[])


def _answer(tokens: list[int], bos: int | None) -> list[int]:
    """Generated tokens after the decoder start (and a leading BOS), before the first EOS-or-pad tail."""
    tokens = tokens[1:]
    if bos is not None and tokens[:1] == [bos]:
        tokens = tokens[1:]
    return tokens


def _naive_allowed(context: list[int], answer: list[int], eos: int, bos: int | None, first: bool) -> set[int]:
    if not answer:
        opening = set(context) - {eos, bos}
        return opening | ({bos} if first and bos is not None else set())
    m = len(answer)
    follow = {context[p + m] for p in range(len(context) - m) if context[p : p + m] == answer}
    return follow | {eos}


def _contexts(ctx: dict, b: int) -> list[list[int]]:
    k = ctx["n_docs"]
    ids, mask = ctx["context_input_ids"][b * k : (b + 1) * k].tolist(), ctx["context_attention_mask"][b * k : (b + 1) * k].tolist()
    return [[t for t, keep in zip(r, m) if keep] for r, m in zip(ids, mask)]


@torch.no_grad()
def _restricted_token_log_probs(model, ctx: dict, b: int, seq: list[int], eos: int, bos: int | None) -> torch.Tensor:
    """(k, t, V) per passage: log-softmax over its allowed tokens at every position of ``seq`` (brute force)."""
    k = ctx["n_docs"]
    rows = slice(b * k, (b + 1) * k)
    dec = torch.tensor(seq)[None].expand(k, -1)
    logits = model.generator(input_ids=ctx["context_input_ids"][rows], attention_mask=ctx["context_attention_mask"][rows],
                             decoder_input_ids=dec, use_cache=False).logits.float()  # (k, t, V)
    contexts = _contexts(ctx, b)
    out = torch.full_like(logits, float("-inf"))
    for t in range(len(seq)):
        raw = seq[1 : t + 1]
        answer = raw[1:] if bos is not None and raw[:1] == [bos] else raw
        first = not raw
        for j, context in enumerate(contexts):
            allowed = sorted(_naive_allowed(context, answer, eos, bos, first))
            out[j, t, allowed] = logits[j, t, allowed].log_softmax(-1)
    return out


@pytest.mark.parametrize("head", ["token", "sequence"])
@pytest.mark.parametrize("generator", ["bart", "t5"])
@pytest.mark.parametrize("num_beams", [1, 3])
def test_every_answer_is_a_span_of_one_of_its_passages(models, head, generator, num_beams):
    m = models(head, generator)
    ctx = m.contexts(3, padded=True)
    free = m.ours.generate(num_beams=num_beams, max_length=8, **ctx)
    copied = m.ours.generate(num_beams=num_beams, max_length=8, copy_from_context=True, **ctx)
    g = m.ours.config.generator
    bos, eos = getattr(g, "bos_token_id", None), g.eos_token_id

    def is_span(b: int, seq: list[int]) -> bool:
        answer = _answer(seq, bos)
        answer = answer[: answer.index(eos)] if eos in answer else answer
        return bool(answer) and any(any(c[p : p + len(answer)] == answer for p in range(len(c))) for c in _contexts(ctx, b))

    assert all(is_span(b, s) for b, s in enumerate(copied.tolist())), copied
    assert not all(is_span(b, s) for b, s in enumerate(free.tolist()))  # the random model does not copy by itself


@pytest.mark.parametrize("generator", ["bart", "t5"])
def test_greedy_rag_token_is_the_argmax_of_the_marginal_of_restricted_passages(models, generator):
    m = models("token", generator)
    ctx = m.contexts(2, padded=True)
    seqs = m.ours.generate(max_length=8, copy_from_context=True, **ctx)  # (2, 8)
    g = m.ours.config.generator
    bos, eos = getattr(g, "bos_token_id", None), g.eos_token_id
    doc_lp = torch.log_softmax(ctx["doc_scores"].float(), -1)  # (B, k)
    for b, seq in enumerate(seqs.tolist()):
        lp = _restricted_token_log_probs(m.ours, ctx, b, seq, eos, bos)  # (k, T, V)
        marginal = torch.logsumexp(lp + doc_lp[b, :, None, None], dim=0)  # (T, V)
        for t in range(1, len(seq)):
            if t > 1 and seq[t - 1] == eos:
                break
            assert seq[t] == marginal[t - 1].argmax().item(), (b, t)


def test_rag_sequence_scores_are_restricted_marginal_likelihoods(models):
    m = models("sequence", "bart")
    ctx = m.contexts(2, padded=True)
    out = m.ours.generate(num_beams=2, num_return_sequences=2, max_length=8, copy_from_context=True,
                          return_dict_in_generate=True, **ctx)
    g = m.ours.config.generator
    bos, eos = getattr(g, "bos_token_id", None), g.eos_token_id
    doc_lp = torch.log_softmax(ctx["doc_scores"].float(), -1)  # (B, k)
    for row, (seq, score) in enumerate(zip(out.sequences.tolist(), out.sequences_scores.tolist())):
        b = row // 2
        end = seq.index(eos, 1) + 1 if eos in seq[1:] else len(seq)
        seq = seq[:end]
        lp = _restricted_token_log_probs(m.ours, ctx, b, seq, eos, bos)  # (k, T, V)
        counted = torch.arange(1, len(seq))
        if bos is not None and all(s[1] == bos for s in out.sequences.view(2, 2, -1)[b].tolist()):
            counted = counted[1:]  # a BOS every candidate starts with is left out, as the reference does
        per_passage = lp[:, counted - 1, torch.tensor(seq)[counted]].sum(-1)  # (k,)
        assert score == pytest.approx(torch.logsumexp(per_passage + doc_lp[b], 0).item(), abs=1e-4)


@pytest.mark.parametrize("head", ["token", "sequence"])
def test_the_models_config_turns_it_on_by_default(models, head):
    m = models(head, "bart")
    ctx = m.contexts(2, padded=True)
    kw = dict(num_beams=2, max_length=8, **ctx)
    free, copied = m.ours.generate(**kw), m.ours.generate(copy_from_context=True, **kw)
    assert not torch.equal(free, copied)
    m.ours.config.copy_from_context = True
    try:
        assert torch.equal(m.ours.generate(**kw), copied)
        assert torch.equal(m.ours.generate(copy_from_context=False, **kw), free)
    finally:
        m.ours.config.copy_from_context = False


@pytest.mark.parametrize("head", ["token", "sequence"])
@pytest.mark.parametrize("generator", ["bart", "t5"])
def test_the_loss_of_a_copy_restricted_model_is_the_marginal_of_restricted_passages(models, head, generator):
    """Question 0's answer is a span of its first passage: restricted softmax per passage, marginalized (passages
    without the span contribute nothing). Question 1's answer is in no passage: the plain loss."""
    m = models(head, generator)
    ctx = m.contexts(2, padded=True)
    g = m.ours.config.generator
    bos, eos = getattr(g, "bos_token_id", None), g.eos_token_id
    start = bos if bos is not None else g.decoder_start_token_id
    span = _contexts(ctx, 0)[0][2:5]
    labels = torch.tensor([[start, *span, eos], [start, 7, 7, 7, eos]])
    kw = dict(context_input_ids=ctx["context_input_ids"], context_attention_mask=ctx["context_attention_mask"],
              doc_scores=ctx["doc_scores"], n_docs=ctx["n_docs"], labels=labels, reduce_loss=False)
    plain = m.ours(**kw).loss
    m.ours.config.copy_from_context = True
    try:
        restricted = m.ours(**kw).loss
        restricted.sum().backward()
        assert all(torch.isfinite(p.grad).all() for p in m.ours.parameters() if p.grad is not None)
    finally:
        m.ours.config.copy_from_context = False
        m.ours.zero_grad(set_to_none=True)
    doc_lp = torch.log_softmax(ctx["doc_scores"].float(), -1)[0]  # (k,)
    seq = labels[0].tolist()
    lp = _restricted_token_log_probs(m.ours, ctx, 0, seq, eos, None)  # (k, T, V): seq[0] is the start position
    targets = torch.tensor(seq[1:])
    per_token = lp[:, torch.arange(len(seq) - 1), targets]  # (k, T-1)
    if head == "token":
        expected = -torch.logsumexp(per_token + doc_lp[:, None], dim=0).sum()
    else:
        expected = -torch.logsumexp(per_token.sum(-1) + doc_lp, dim=0)
    assert restricted[0].item() == pytest.approx(expected.item(), rel=1e-4)  # losses ~70 nats: relative
    assert restricted[1].item() == pytest.approx(plain[1].item(), rel=1e-6)
