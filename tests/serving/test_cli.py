"""``ragmodels serve``: a real server process on a loopback port, and a clear message without the extra."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from conftest import QUESTIONS
from ragmodels.pipeline import DecodingOptions
from ragmodels.serving.server import free_port
from serving.conftest import FAST, call

WITHOUT_EXTRA = """
import sys
sys.modules["fastapi"] = None  # as if the serve extra were not installed
import ragmodels, ragmodels.pipeline, ragmodels.cli
assert "uvicorn" not in sys.modules
sys.exit(ragmodels.cli.main(["serve", "--model", "unused"]))
"""


def test_serve_without_the_extra_names_it():
    done = subprocess.run([sys.executable, "-c", WITHOUT_EXTRA], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "pip install 'ragmodels[serve]'" in done.stderr


def test_serve_command_answers_over_http(tiny_rag_checkpoint, tiny_knowledge_base, pipeline):
    port = free_port()
    command = [sys.executable, "-m", "ragmodels.cli", "serve", "--model", str(tiny_rag_checkpoint("token")),
               "--index", str(tiny_knowledge_base), "--port", str(port), "--max-batch-size", "4"]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _ready(url):
            assert server.poll() is None and time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.1)
        reply = call(url + "/v1/answer", {"questions": QUESTIONS[:1], "n_docs": 2, **FAST})
        assert reply.status == 200, reply.body
        expected = pipeline.answer(QUESTIONS[:1], DecodingOptions(n_docs=2, **FAST))[0]
        assert reply.body["answers"][0]["answer"] == expected.answer
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=20)
    logged = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    answered = [e for e in logged if e.get("path") == "/v1/answer"]
    assert len(answered) == 1 and answered[0]["status"] == 200 and answered[0]["batch_size"] == 1


def _ready(url: str) -> bool:
    try:
        return call(url + "/readyz", timeout=2).status == 200
    except OSError:
        return False
