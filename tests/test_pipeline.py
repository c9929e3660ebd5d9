"""RagPipeline: scores against brute-force likelihoods, one retrieval per batch, loading, and ``ragmodels ask``."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from conftest import QUESTIONS
from ragmodels import pipeline as pipeline_module
from ragmodels.cli import main
from ragmodels.pipeline import DecodingOptions, RagPipeline

FAST = DecodingOptions(n_docs=3, num_beams=2, max_new_tokens=6)


@pytest.fixture(scope="module", params=["token", "sequence"])
def pipe(request, tiny_rag_checkpoint, tiny_knowledge_base) -> RagPipeline:
    return RagPipeline.from_pretrained(tiny_rag_checkpoint(request.param), index=tiny_knowledge_base, device="cpu")


@torch.no_grad()
def brute_force_scores(pipe: RagPipeline, contexts, sequences: torch.Tensor, n_docs: int) -> torch.Tensor:
    """log p(y|x) per question from one plain teacher-forced generator pass per (question, passage): (B,)."""
    ids = sequences.repeat_interleave(n_docs, dim=0)  # (B*k, T), starts with the decoder start token
    logits = pipe.model.generator(input_ids=contexts.context_input_ids, attention_mask=contexts.context_attention_mask,
                                  decoder_input_ids=ids[:, :-1], use_cache=False).logits
    token_lp = torch.log_softmax(logits.float(), -1).gather(-1, ids[:, 1:, None]).squeeze(-1)  # (B*k, T-1)
    is_eos = ids[:, 1:].eq(pipe.model.config.generator.eos_token_id).int()
    mask = (is_eos.cumsum(-1) - is_eos) == 0  # tokens up to and including the first EOS
    token_lp = (token_lp * mask).view(-1, n_docs, token_lp.shape[-1])  # (B, k, T-1)
    doc_lp = torch.log_softmax(contexts.doc_scores.float(), -1)[:, :, None]  # (B, k, 1)
    if pipe.head == "sequence":
        return torch.logsumexp(token_lp.sum(-1, keepdim=True) + doc_lp, dim=1).squeeze(-1)
    return torch.logsumexp(token_lp + doc_lp, dim=1).sum(-1)


def test_scores_are_the_models_log_likelihood(pipe):
    answers = pipe.answer(QUESTIONS, FAST)
    encoded = pipe.tokenizer.question_encoder(QUESTIONS, padding=True, return_tensors="pt")
    contexts = pipe.model.rag.retrieve_contexts(encoded["input_ids"], encoded["attention_mask"], n_docs=3)
    sequences = pipe.model.generate(context_input_ids=contexts.context_input_ids,
                                    context_attention_mask=contexts.context_attention_mask,
                                    doc_scores=contexts.doc_scores, n_docs=3, num_beams=2, max_new_tokens=6)
    assert not sequences[:, 1].eq(pipe.model.config.generator.bos_token_id).all()  # no BOS to leave out here
    assert [a.answer for a in answers] == [t.strip() for t in pipe.tokenizer.batch_decode(sequences, skip_special_tokens=True)]
    expected = brute_force_scores(pipe, contexts, sequences, 3)
    assert [a.score for a in answers] == pytest.approx(expected.tolist(), abs=1e-4)
    assert all(a.score < 0 for a in answers)


def test_passages_carry_posterior_and_inner_product(pipe):
    answers = pipe.answer(QUESTIONS, FAST)
    docs = pipe.retriever.index.get_doc_dicts(torch.tensor([[p.id for p in a.passages] for a in answers]).numpy())
    for answer, doc in zip(answers, docs):
        assert [p.title for p in answer.passages] == doc["title"] and [p.text for p in answer.passages] == doc["text"]
        inner = torch.tensor([p.inner_product for p in answer.passages])
        assert [p.score for p in answer.passages] == pytest.approx(torch.softmax(inner, 0).tolist(), abs=1e-5)
        assert sum(p.score for p in answer.passages) == pytest.approx(1.0, abs=1e-5)


def test_one_retrieval_per_batch_and_batching_does_not_change_answers(pipe, monkeypatch):
    retriever, calls = pipe.retriever, []

    class Counting:
        def __call__(self, *args, **kwargs):
            calls.append(len(args[0]))
            return retriever(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(retriever, name)

    monkeypatch.setattr(pipe.model.rag, "retriever", Counting())
    batched = pipe.answer(QUESTIONS, FAST)
    assert calls == [len(QUESTIONS)]
    one_by_one = [pipe.answer([q], FAST)[0] for q in QUESTIONS]
    assert [a.answer for a in batched] == [a.answer for a in one_by_one]
    assert [a.score for a in batched] == pytest.approx([a.score for a in one_by_one], abs=1e-4)


def test_kwargs_override_options_and_empty_questions_are_refused(pipe):
    assert len(pipe.answer(QUESTIONS[:1], FAST, n_docs=2)[0].passages) == 2
    with pytest.raises(ValueError, match="Question 2 is empty"):
        pipe.answer(["ok", "  "], FAST)
    with pytest.raises(ValueError, match="Question 1 .* has no text left after the question tokenizer"):
        pipe.answer(["x" * 1000], FAST)  # one 1000-character word: a single unknown token
    with pytest.raises(ValueError, match="at least one question"):
        pipe.answer([], FAST)


def test_a_long_question_is_truncated_not_refused(pipe):
    """Only the user's raw text is checked: a question longer than the question encoder reads is answered."""
    long_question = " ".join([QUESTIONS[0]] * 30)  # ~1000 characters, ~240 tokens: beyond MAX_QUESTION_TOKENS
    assert len(pipe.answer([long_question], FAST, n_docs=2)[0].passages) == 2


def test_ask_refuses_empty_questions_before_loading_anything(capsys):
    assert main(["ask", "What is the capital of Peru?", "   ", "--no-worker"]) == 1
    assert "Question 2 is empty" in capsys.readouterr().err


def test_copy_from_context_answers_are_spans_of_the_passages(pipe, tiny_rag_checkpoint, tiny_knowledge_base, capsys):
    """With copy-constrained decoding every answer occurs in the "title / text // question" the generator read."""
    options = replace(FAST, copy_from_context=True)
    answers = pipe.answer(QUESTIONS, options)
    free = pipe.answer(QUESTIONS, FAST)
    assert [a.answer for a in answers] != [a.answer for a in free]  # the tiny random model does not copy by itself
    for question, answer in zip(QUESTIONS, answers):
        assert answer.answer
        read = [f"{p.title} / {p.text} // {question}" for p in answer.passages]
        assert any(answer.answer in text or answer.answer.lower() in text.lower() for text in read), (answer.answer, read)
    args = ["--model", str(tiny_rag_checkpoint(pipe.head)), "--index", str(tiny_knowledge_base), "--n-docs", "3",
            "--num-beams", "2", "--max-new-tokens", "6", "--json", "--no-worker"]
    assert main(["ask", QUESTIONS[0], *args, "--copy"]) == 0
    assert json.loads(capsys.readouterr().out)["answer"] == answers[0].answer


def test_head_comes_from_the_checkpoint(tiny_rag_checkpoint, tiny_knowledge_base):
    kb = tiny_knowledge_base
    assert RagPipeline.from_pretrained(tiny_rag_checkpoint("sequence"), index=kb, device="cpu").head == "sequence"
    assert RagPipeline.from_pretrained(tiny_rag_checkpoint("sequence"), index=kb, head="token").head == "token"
    by_paths = RagPipeline.from_pretrained(tiny_rag_checkpoint("token"), index=(str(kb / "passages"), str(kb / "index.faiss")))
    assert by_paths.num_passages == 12


@pytest.fixture
def default_dir(tmp_path, monkeypatch):
    folder = tmp_path / "default"
    monkeypatch.setattr(pipeline_module, "default_model_dir", lambda: folder)
    return folder


def test_missing_default_model_is_a_clear_error(default_dir, capsys):
    with pytest.raises(FileNotFoundError, match="embedded default model is not part of this installation"):
        RagPipeline.from_default()
    assert main(["ask", "What is the capital of Peru?"]) == 1
    assert "embedded default model is not part of this installation" in capsys.readouterr().err


def test_ask_prints_json_and_text(tiny_rag_checkpoint, tiny_knowledge_base, capsys):
    folder = tiny_rag_checkpoint("sequence")
    args = ["--model", str(folder), "--index", str(tiny_knowledge_base), "--n-docs", "2", "--num-beams", "2",
            "--max-new-tokens", "6"]
    assert main(["ask", *QUESTIONS[:2], *args, "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = RagPipeline.from_pretrained(folder, index=tiny_knowledge_base).answer(
        QUESTIONS[:2], DecodingOptions(n_docs=2, num_beams=2, max_new_tokens=6))
    assert [line["question"] for line in lines] == QUESTIONS[:2]
    assert [{k: v for k, v in line.items() if k != "question"} for line in lines] == [a.to_dict() for a in expected]
    assert set(lines[0]["passages"][0]) == {"id", "title", "text", "score", "inner_product"}
    assert main(["ask", QUESTIONS[0], *args]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"Q: {QUESTIONS[0]}\nA: {expected[0].answer}")
    assert f"[1] {expected[0].passages[0].title}  p(z|x)={expected[0].passages[0].score:.3f}" in text


def test_ask_json_stdout_holds_only_the_answers(tiny_rag_checkpoint, tiny_knowledge_base, capsys, monkeypatch):
    """Whatever loading or answering prints (progress, start lines) goes to stderr, not between the objects."""
    import ragmodels.cli as cli

    load = cli.load_pipeline

    def chatty_load(model, index):
        print("loading the model ...")
        return load(model, index)

    monkeypatch.setattr(cli, "load_pipeline", chatty_load)
    questions = [QUESTIONS[1], QUESTIONS[0], QUESTIONS[2]]
    args = ["--model", str(tiny_rag_checkpoint("token")), "--index", str(tiny_knowledge_base), "--n-docs", "2",
            "--num-beams", "1", "--max-new-tokens", "4", "--no-worker"]
    assert main(["ask", *questions, *args, "--json"]) == 0
    captured = capsys.readouterr()
    objects = [json.loads(line) for line in captured.out.splitlines()]
    assert [o["question"] for o in objects] == questions
    assert all(isinstance(o["answer"], str) and o["abstained"] is False for o in objects)
    assert "loading the model ..." in captured.err
