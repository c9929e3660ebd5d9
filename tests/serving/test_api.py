"""The HTTP API, called for real over loopback: answers equal the pipeline's, errors are clear 4xx."""

from __future__ import annotations

import json
import threading
import time

import pytest

from conftest import QUESTIONS
from ragmodels.pipeline import DecodingOptions
from serving.conftest import FAST, call, running


def test_answers_match_the_pipeline(server, pipeline):
    reply = call(server.url + "/v1/answer", {"questions": QUESTIONS, "n_docs": 2, **FAST})
    assert reply.status == 200, reply.body
    expected = pipeline.answer(QUESTIONS, DecodingOptions(n_docs=2, **FAST))
    got = reply.body["answers"]
    assert [a["question"] for a in got] == QUESTIONS
    assert [a["answer"] for a in got] == [a.answer for a in expected]
    assert [a["passages"] for a in got] == [a.to_dict()["passages"] for a in expected]
    assert [a["score"] for a in got] == pytest.approx([a.score for a in expected], abs=1e-4)
    assert all(len(a["passages"]) == 2 for a in got)


def test_health_and_readiness(server):
    assert call(server.url + "/healthz").body == {"status": "ok"}
    ready = call(server.url + "/readyz")
    assert ready.status == 200 and ready.body["status"] == "ready"
    assert ready.body["head"] == "token" and ready.body["passages"] == 12


def test_readiness_waits_for_the_model(pipeline):
    release = threading.Event()

    def slow_loader():
        release.wait(10)
        return pipeline

    with running(slow_loader) as srv:
        assert call(srv.url + "/healthz").status == 200  # alive while loading
        assert call(srv.url + "/readyz").status == 503
        early = call(srv.url + "/v1/answer", {"questions": ["q"]})
        assert early.status == 503 and "not loaded" in early.body["detail"]
        release.set()
        deadline = time.monotonic() + 10
        while call(srv.url + "/readyz").status != 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert call(srv.url + "/readyz").status == 200


def test_a_failed_load_is_reported():
    def broken_loader():
        raise OSError("no checkpoint at /nowhere")

    with running(broken_loader) as srv:
        deadline = time.monotonic() + 5
        while (reply := call(srv.url + "/readyz")).body["status"] == "loading" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert reply.status == 503 and reply.body["status"] == "failed"
        assert "no checkpoint at /nowhere" in reply.body["error"]


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"questions": []}, 422, "questions must have at least 1 item(s), got 0"),
        ({"questions": ["   "]}, 422, "Question 1 is empty"),
        ({"questions": ["q", "x" * 201]}, 422, "Question 2 is too long: 201 characters, at most 200 allowed"),
        ({"questions": ["q"] * 5}, 422, "questions must have at most 4 items, got 5"),
        ({"questions": ["q"], "n_docs": 0}, 422, "n_docs must be at least 1, got 0"),
        ({"questions": ["q"], "n_docs": 9}, 422, "n_docs must be at most 8, got 9"),
        ({"questions": ["q"], "max_new_tokens": 17}, 422, "max_new_tokens must be at most 16, got 17"),
        ({"questions": ["q"], "min_new_tokens": 5, "max_new_tokens": 4}, 422, "min_new_tokens (5) exceeds"),
        ({"questions": ["q"], "temperature": 0.5}, 422, "Unknown field temperature; the fields are: questions, n_docs"),
        ({"question": "q"}, 422, "The field questions is required"),
        ({"questions": "q"}, 422, "questions: should be a valid list"),
        ({"questions": [3]}, 422, "Question 1: should be a valid string"),
        ({"questions": ["caf\ud800 x"]}, 422, "Question 1 is not valid text: character 4 is '\\ud800', a lone surrogate"),
    ],
)
def test_bad_requests_get_clear_messages(server, body, status, message):
    reply = call(server.url + "/v1/answer", body)
    assert reply.status == status, reply.body
    assert message in reply.body["detail"], reply.body["detail"]


def test_malformed_json_is_400(server):
    reply = call(server.url + "/v1/answer", raw=b'{"questions": ["q"')
    assert reply.status == 400 and reply.body["detail"].startswith("Malformed JSON body")


def test_n_docs_above_the_knowledge_base_is_rejected(pipeline):
    with running(pipeline, max_n_docs=50) as srv:
        reply = call(srv.url + "/v1/answer", {"questions": ["q"], "n_docs": 13})
    assert reply.status == 422 and "knowledge base: 12 passages" in reply.body["detail"]


def test_timeout_is_504(pipeline, monkeypatch):
    answer = pipeline.answer
    monkeypatch.setattr(pipeline, "answer", lambda *args: time.sleep(1) or answer(*args))
    with running(pipeline, request_timeout_s=0.2) as srv:
        reply = call(srv.url + "/v1/answer", {"questions": ["q"], **FAST})
    assert reply.status == 504 and "No answer within 0.2 s" in reply.body["detail"]


def test_one_json_log_line_per_request(server, log_lines):
    reply = call(server.url + "/v1/answer", {"questions": QUESTIONS[:2], **FAST})
    call(server.url + "/v1/answer", {"questions": []})
    entries = [json.loads(line) for line in log_lines]
    assert [(e["path"], e["status"]) for e in entries] == [("/v1/answer", 200), ("/v1/answer", 422)]
    ok, bad = entries
    assert ok["id"] == reply.headers["X-Request-ID"] and ok["batch_size"] >= 2 and ok["latency_ms"] > 0
    assert bad["batch_size"] is None and ok["event"] == "request" and ok["level"] == "info"


def test_openapi_schema_shows_the_limits(server):
    schema = call(server.url + "/openapi.json").body
    request = schema["components"]["schemas"]["AnswerRequest"]
    assert request["additionalProperties"] is False
    assert request["properties"]["questions"]["maxItems"] == 4
    assert "/v1/answer" in schema["paths"] and "/readyz" in schema["paths"]


def test_an_abstention_is_null_answer_with_abstained_and_confidence(server, pipeline, monkeypatch):
    from ragmodels.abstention import AbstentionRule

    body = {"questions": QUESTIONS[:2], "n_docs": 2, **FAST}
    plain = call(server.url + "/v1/answer", body).body["answers"]  # the tiny model has no rule
    assert all(a["abstained"] is False and a["confidence"] is None and isinstance(a["answer"], str) for a in plain)
    # confidence sigmoid(0) = 0.5 for every question, below the threshold: every question abstains
    monkeypatch.setattr(pipeline, "abstention", AbstentionRule(weights={}, bias=0.0, threshold=0.9, vocabulary=[]))
    judged = call(server.url + "/v1/answer", body)
    assert judged.status == 200, judged.body
    assert [(a["answer"], a["abstained"], a["confidence"]) for a in judged.body["answers"]] == [(None, True, 0.5)] * 2
    assert [a["passages"] for a in judged.body["answers"]] == [a["passages"] for a in plain]
    forced = call(server.url + "/v1/answer", {**body, "abstain": False}).body["answers"]
    assert [(a["answer"], a["abstained"], a["confidence"]) for a in forced] == [(a["answer"], False, None) for a in plain]
