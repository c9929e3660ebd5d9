"""The shipped default model: it loads from the package (MiniLM from its own package), answers held-out
GeoQA questions, and ``ragmodels ask --json`` prints one JSON object per question."""

from __future__ import annotations

import json

import pytest
import torch

from ragmodels import default

pytestmark = pytest.mark.skipif(not default.available(), reason="the default model is not shipped in this checkout")

# test-split entities (never seen in training) that the shipped model answers correctly, every relation
QUESTIONS = {
    "What is the capital of Lebanon?": "Beirut",
    "Which city is the capital of Tajikistan?": "Dushanbe",
    "How many people live in Spain?": "46,723,749",
    "Which country is New York City in?": "United States",
    "Which is the most populous city in Sudan?": "Khartoum",
    "What money do people pay with in Lesotho?": "Loti",
    "Which country borders Lesotho?": "South Africa",
    "Tajikistan is located on which continent?": "Asia",
}


@pytest.fixture(scope="module")
def pipeline():
    from ragmodels.pipeline import RagPipeline

    return RagPipeline.from_default(device="cpu")


def test_ships_only_the_fine_tuned_question_encoder_layer():
    files = [p for p in default.DEFAULT_DIR.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 60 * 2**20
    from safetensors import safe_open

    with safe_open(str(default.DEFAULT_DIR / "generator" / "model.safetensors"), "pt") as f:
        assert not any(k.startswith("question_encoder") for k in f.keys())
    with safe_open(str(default.DEFAULT_DIR / default.QUESTION_LAYERS_FILE), "pt") as f:
        keys = list(f.keys())
    assert keys and all(k.startswith("encoder.layer.5.") for k in keys)  # MiniLM's top layer only


def test_loaded_question_encoder_is_minilm_with_the_shipped_top_layer(pipeline):
    from safetensors.torch import load_file
    from transformers import AutoModel

    packaged = AutoModel.from_pretrained(default.question_encoder_path()).state_dict()
    shipped = load_file(default.DEFAULT_DIR / default.QUESTION_LAYERS_FILE)
    loaded = pipeline.model.rag.question_encoder.state_dict()
    for key, value in loaded.items():
        if key in shipped:
            assert torch.equal(value, shipped[key].float())
        else:
            assert torch.equal(value, packaged[key]), key
    assert any(not torch.equal(shipped[k].float(), packaged[k]) for k in shipped)  # it was fine-tuned


def test_question_layers_from_another_encoder_are_refused(tmp_path):
    from safetensors.torch import save_file
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(default.question_encoder_path())
    save_file({"encoder.layer.9.output.dense.weight": torch.zeros(2, 2)}, str(tmp_path / "layers.safetensors"))
    with pytest.raises(ValueError, match="another encoder"):
        default._load_question_layers(encoder, tmp_path / "layers.safetensors")


def test_answers_are_spans_of_retrieved_passages_and_held_out_em_is_above_a_floor(pipeline):
    """Properties, not pinned strings: the default is copy-restricted, so every answer is a span of one of the
    passages it retrieved; and on a sample of GeoQA test questions (entities never seen in training) its exact
    match stays above a floor well below the 0.626 the README reports (greedy), so other CPUs' rounding of a
    near-tie cannot fail it while a broken model (EM ~0.01 unconstrained, 0.09 closed-book) does."""
    from ragmodels.data.geo_qa import build_geo_qa
    from ragmodels.evaluation.metrics import exact_match, max_over_answers

    test = build_geo_qa().splits["test"][::3]  # ~100 questions of every relation
    answers = pipeline.answer([r["question"] for r in test], num_beams=1)
    for record, a in zip(test, answers):
        assert len(a.passages) == pipeline.model.config.n_docs
        assert abs(sum(p.score for p in a.passages) - 1) < 1e-4  # p(z|x) over the retrieved passages
        # a span of what the generator read for some passage: "title / text // question"
        assert any(a.answer in f"{p.title} / {p.text} // {record['question']}" for p in a.passages), a.answer
    em = sum(max_over_answers(exact_match, a.answer, r["answers"]) for a, r in zip(answers, test)) / len(test)
    assert em > 0.5
    named = pipeline.answer(list(QUESTIONS), num_beams=1)  # a few held-out facts, one or more per relation
    assert sum(a.answer == want for a, want in zip(named, QUESTIONS.values())) >= len(QUESTIONS) - 2


def test_ask_json_shape(capsys):
    from ragmodels.cli import main

    assert main(["ask", "--json", "What is the capital of Mongolia?", "Which continent is Italy part of?"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    for line in lines:
        obj = json.loads(line)
        assert isinstance(obj["answer"], str) and obj["answer"]
        assert isinstance(obj["score"], float)
        assert obj["passages"] and all({"title", "text", "score"} <= set(p) for p in obj["passages"])


def test_decodes_copy_restricted_as_its_config_says(pipeline):
    assert pipeline.model.config.copy_from_context is True
    questions = list(QUESTIONS)[:4]
    answers = pipeline.answer(questions, num_beams=1)
    for a in answers:  # every answer is copied from a passage it was given
        assert any(a.answer in f"{p.title} / {p.text}" for p in a.passages), a.answer
    unconstrained = pipeline.answer(questions, num_beams=1, copy_from_context=False)
    assert [a.answer for a in unconstrained] != [a.answer for a in answers]


def test_eval_without_a_model_scores_the_default(tmp_path, capsys):
    from ragmodels.cli import main

    data = tmp_path / "set.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answers": [a]}) + "\n" for q, a in QUESTIONS.items())
                    + json.dumps({"question": "What is the capital of Lebanon?", "answers": ["Tripoli"]}) + "\n")
    assert main(["eval", str(data), "--ks", "1", "--report", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["n_questions"] == len(QUESTIONS) + 1
    assert report["exact_match"] == pytest.approx(len(QUESTIONS) / (len(QUESTIONS) + 1))


# facts the GeoQA knowledge base does not hold (a few of data/ood/test.txt, and near-misses naming GeoQA words)
OUT_OF_DOMAIN = ["Who wrote Hamlet?", "What is 2 + 2?", "Who painted the Mona Lisa?", "How many legs does a spider have?",
                 "What is the capital of Atlantis?", "Who is the president of France?"]
# in-domain questions in wordings no GeoQA split uses (the rule must not abstain for how a question is put)
REWORDED = ["What currency does Japan use?", "Tell me the capital of Canada.", "On which continent is Chile?"]


def test_ships_an_abstention_rule_that_abstains_out_of_domain_only(pipeline):
    assert pipeline.abstention is not None  # src/ragmodels/default/abstention.json
    answers = pipeline.answer(OUT_OF_DOMAIN + list(QUESTIONS) + REWORDED)
    for question, a in zip(OUT_OF_DOMAIN, answers):
        assert a.abstained and a.answer is None, question
        assert 0 <= a.confidence < pipeline.abstention.threshold
        assert len(a.passages) == pipeline.model.config.n_docs  # the evidence it judged is still there
    for a in answers[len(OUT_OF_DOMAIN):]:
        assert not a.abstained and a.answer and pipeline.abstention.threshold <= a.confidence <= 1
    unjudged = pipeline.answer(OUT_OF_DOMAIN[:2], abstain=False)
    assert all(a.answer and not a.abstained and a.confidence is None for a in unjudged)


def test_ask_json_is_one_object_per_question_in_order(capsys):
    from ragmodels.cli import main

    questions = ["Who wrote Hamlet?", "What is the capital of Mongolia?", "What is 2 + 2?", "Which country borders Lesotho?"]
    assert main(["ask", "--json", *questions]) == 0
    out = capsys.readouterr().out
    objects = [json.loads(line) for line in out.splitlines()]  # every stdout line is one JSON object
    assert [o["question"] for o in objects] == questions
    assert [o["abstained"] for o in objects] == [True, False, True, False]
    for o in objects:
        assert (o["answer"] is None) == o["abstained"] and isinstance(o["confidence"], float)
    assert main(["ask", "--json", "--no-abstain", questions[0]]) == 0
    forced = json.loads(capsys.readouterr().out)
    assert forced["answer"] and forced["abstained"] is False and forced["confidence"] is None


def test_ask_text_says_no_answer(capsys):
    from ragmodels.answering import NO_ANSWER
    from ragmodels.cli import main

    assert main(["ask", "Who wrote Hamlet?"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"Q: Who wrote Hamlet?\nA: {NO_ANSWER}.")
