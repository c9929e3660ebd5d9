"""The server's bounds over loopback: body size (413), in-flight questions (503 + Retry-After), small errors
for any input (lone surrogates included), the optional token, and no third-party scripts on any page."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from urllib.parse import urlsplit

import pytest

from conftest import QUESTIONS
from ragmodels.serving import BackgroundServer, ServerSettings, create_app
from ragmodels.serving.server import is_loopback
from serving.conftest import FAST, call, running

SMALL = 4096  # "a few kB": the most any error response may take, whatever was sent


def post(url: str, body: bytes | object, headers: dict | None = None, chunked: bool = False):
    """POST raw ``body`` (bytes, or an iterable of chunks with ``chunked``) -> (status, headers, raw bytes)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request("POST", parts.path, body=body, headers={"Content-Type": "application/json", **(headers or {})},
                     encode_chunked=chunked)
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def limited(pipeline):
    with running(pipeline, max_body_bytes=50_000, max_question_chars=200, max_questions=4) as srv:
        yield srv


def test_a_body_over_the_limit_gets_413_from_its_content_length(limited):
    status, headers, raw = post(limited.url + "/v1/answer", b"x" * 2_000_000)  # all sent: drained, then 413
    assert status == 413 and len(raw) < SMALL
    assert "at most 50000 bytes" in json.loads(raw)["detail"] and headers["Connection"] == "close"


def test_a_client_that_waits_for_100_continue_gets_413_without_sending(limited):
    with socket.create_connection((limited.host, limited.port), timeout=60) as sock:
        sock.sendall(b"POST /v1/answer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 50000000\r\nExpect: 100-continue\r\n\r\n")
        reply = sock.makefile("rb").readline()
    assert reply.startswith(b"HTTP/1.1 413")  # not "100 Continue": the body was never asked for


def test_a_chunked_body_over_the_limit_gets_413_not_a_reset(limited):
    chunks = (b"y" * 65536 for _ in range(32))  # 2 MiB, still being sent when the limit is passed
    status, _, raw = post(limited.url + "/v1/answer", chunks, chunked=True)
    assert status == 413 and "more than 50000 bytes" in json.loads(raw)["detail"]


def test_a_chunked_body_under_the_limit_is_answered(limited, pipeline):
    body = json.dumps({"questions": QUESTIONS[:1], "n_docs": 2, **FAST}).encode()
    status, _, raw = post(limited.url + "/v1/answer", (body[i:i + 7] for i in range(0, len(body), 7)), chunked=True)
    assert status == 200, raw
    assert json.loads(raw)["answers"][0]["answer"] == pipeline.answer(QUESTIONS[:1], n_docs=2, **FAST)[0].answer


@pytest.mark.parametrize("body", [
    b'{"questions": ["caf\\ud800 x"]}',  # a lone surrogate escape
    b'{"questions": ["caf\\udcff"], "n_docs": "\\ud800"}',
    b'{"questions": ["caf\xff"]}',  # not UTF-8
    b'{"caf\\ud800": 1, "questions": ["q"]}',  # ... in a field name
])
def test_any_unicode_gets_a_4xx(limited, body):
    status, _, raw = post(limited.url + "/v1/answer", body)
    assert 400 <= status < 500 and len(raw) < SMALL, raw
    assert json.loads(raw)["detail"]


@pytest.mark.parametrize("body", [
    {"questions": ["é" * 4000]},  # a long question: not echoed
    {"questions": [1] * 2000},  # thousands of problems: a few listed
    {"questions": ["q"], "x" * 9000: 1},  # a long unknown field name
    {"questions": ["q"], "n_docs": "9" * 4000},
    {"questions": ["q"], "decoding": "z" * 9000},
])
def test_error_responses_stay_small(limited, body):
    raw_body = json.dumps(body).encode()
    assert len(raw_body) < 50_000  # under the body limit: these reach validation
    status, _, raw = post(limited.url + "/v1/answer", raw_body)
    assert status == 422 and len(raw) < SMALL, (status, len(raw))


def test_a_question_the_tokenizer_reads_as_nothing_says_so(limited):
    reply = call(limited.url + "/v1/answer", {"questions": ["x" * 200], **FAST})  # one word: one unknown token
    assert reply.status == 400 and "no text left after the question tokenizer" in reply.body["detail"]


def test_past_the_in_flight_limit_requests_get_503_with_retry_after(pipeline, monkeypatch):
    release, entered = threading.Event(), threading.Semaphore(0)
    answer = pipeline.answer

    def slow(questions, options):  # holds the model until released
        entered.release()
        release.wait(60)
        return answer(questions, options)

    monkeypatch.setattr(pipeline, "answer", slow)
    app = create_app(pipeline, ServerSettings(max_in_flight=2, max_questions=2, max_batch_size=1))
    body = {"questions": QUESTIONS[:1], **FAST}
    with BackgroundServer(app) as srv:
        replies = []
        clients = [threading.Thread(target=lambda: replies.append(call(srv.url + "/v1/answer", body)))
                   for _ in range(2)]
        for client in clients:
            client.start()
        assert entered.acquire(timeout=60)  # one is with the model, the other queued: 2 questions in flight
        deadline = time.monotonic() + 60
        while app.state.rag.in_flight < 2:
            assert time.monotonic() < deadline, "the second request was not admitted"
            time.sleep(0.01)
        busy = call(srv.url + "/v1/answer", body)
        assert busy.status == 503 and busy.headers["Retry-After"] == "1" and "busy" in busy.body["detail"]
        release.set()
        for client in clients:
            client.join(60)
        assert [r.status for r in replies] == [200, 200]
        assert app.state.rag.in_flight == 0
        assert call(srv.url + "/v1/answer", body).status == 200  # admitted again once they are done


def test_the_default_in_flight_limit_admits_16_single_questions():
    assert ServerSettings().max_in_flight >= 16


def test_the_token_guards_the_api_but_not_liveness_or_the_page(pipeline):
    with running(pipeline, token="s3cret") as srv:
        body = {"questions": QUESTIONS[:1], **FAST}
        missing = call(srv.url + "/v1/answer", body)
        assert missing.status == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
        assert "Authorization: Bearer" in missing.body["detail"]
        status, _, _ = post(srv.url + "/v1/answer", json.dumps(body).encode(), {"Authorization": "Bearer wrong"})
        assert status == 401
        status, _, raw = post(srv.url + "/v1/answer", json.dumps(body).encode(), {"Authorization": "Bearer s3cret"})
        assert status == 200, raw
        assert call(srv.url + "/readyz").status == 401
        assert call(srv.url + "/healthz").status == 200 and call(srv.url + "/").status == 200


def test_without_a_token_the_api_is_open(limited):
    assert call(limited.url + "/v1/answer", {"questions": QUESTIONS[:1], **FAST}).status == 200


def test_no_third_party_scripts(limited):
    assert call(limited.url + "/docs").status == 404 and call(limited.url + "/redoc").status == 404
    assert call(limited.url + "/openapi.json").status == 200
    page = call(limited.url + "/")
    assert "src=" not in page.body.replace(" ", "") and "://" not in page.body  # nothing loaded from anywhere
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]


def test_a_long_request_id_is_not_echoed(limited):
    status, headers, _ = post(limited.url + "/v1/answer", b"{}", {"X-Request-ID": "r" * 5000})
    assert status == 422 and len(headers["X-Request-ID"]) == 32
    status, headers, _ = post(limited.url + "/v1/answer", b"{}", {"X-Request-ID": "abc-1"})
    assert headers["X-Request-ID"] == "abc-1"


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.8.0.1", True), ("::1", True),
                                            ("localhost", True), ("0.0.0.0", False), ("::", False),
                                            ("192.168.1.4", False), ("example.org", False)])
def test_which_hosts_are_loopback(host, loopback):
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("settings", [dict(max_question_chars=1001), dict(max_questions=20, max_in_flight=10),
                                      dict(max_body_bytes=0), dict(token=" ")])
def test_settings_that_cannot_work_are_refused(settings):
    with pytest.raises(ValueError):
        ServerSettings(**settings)
