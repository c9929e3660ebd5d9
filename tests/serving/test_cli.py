"""``ragmodels serve``: a real server process on a loopback port, and a clear message without the extra."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import QUESTIONS
from ragmodels.cli import main
from ragmodels.pipeline import DecodingOptions
from ragmodels.serving.server import free_port, start_lines
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
    assert f"ragmodels serve: listening on http://127.0.0.1:{port}/" in stderr.splitlines()[0]
    assert "warning" not in stderr  # loopback: no warning
    logged = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    answered = [e for e in logged if e.get("path") == "/v1/answer"]
    assert len(answered) == 1 and answered[0]["status"] == 200 and answered[0]["batch_size"] == 1


def _ready(url: str) -> bool:
    try:
        return call(url + "/readyz", timeout=2).status == 200
    except OSError:
        return False


def test_start_lines_warn_about_an_open_bind_without_a_token():
    (line,) = start_lines("127.0.0.1", 8123, protected=False)
    assert "http://127.0.0.1:8123/" in line
    assert "http://[::]:80/" in start_lines("::", 80, protected=True)[0]
    listening, warning = start_lines("0.0.0.0", 8000, protected=False)
    assert "warning" in warning and "--token" in warning
    assert len(start_lines("0.0.0.0", 8000, protected=True)) == 1


def test_an_undecodable_argument_byte_is_one_clear_line():
    """``ragmodels ask "$(printf 'caf\\xff')"``: Python makes the byte a lone surrogate (surrogateescape)."""
    done = subprocess.run([sys.executable, "-m", "ragmodels.cli", "ask", b"caf\xff"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "RAGMODELS_NO_WORKER": "1"})
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr == "ragmodels: error: Question 1 is not valid text: character 4 is '\\udcff', a lone " \
                          "surrogate (an undecodable byte or a broken escape); send UTF-8 text.\n"


@pytest.mark.parametrize("args, status, message", [
    (["ask", os.fsdecode(b"caf\xff")], 1, "Question 1 is not valid text: character 4 is '\\udcff'"),
    (["ask", "x" * 1001], 1, "Question 1 is too long: 1001 characters, at most 1000 allowed"),
    (["ask", "  "], 1, "Question 1 is empty"),
    (["ask", "q", "--num-beams", "0"], 2, "argument --num-beams: must be an integer >= 1, got '0'"),
    (["ask", "q", "--n-docs", "0"], 2, "argument --n-docs: must be an integer >= 1, got '0'"),
    (["ask", "q", "--max-new-tokens", "-3"], 2, "argument --max-new-tokens: must be an integer >= 1, got '-3'"),
    (["ask", "q", "--model", "/nonexistent"], 1, "--model /nonexistent: no such checkpoint folder"),
    (["serve", "--model", "/nonexistent"], 1, "--model /nonexistent: no such checkpoint folder"),
    (["serve", "--port", "70000"], 2, "argument --port: must be an integer from 0 to 65535, got '70000'"),
    (["serve", "--max-question-chars", "21000"], 2, "must be an integer from 1 to 1000, got '21000'"),
    (["serve", "--timeout", "nan"], 2, "argument --timeout: must be a number > 0, got 'nan'"),
    (["serve", "--max-in-flight", "0"], 2, "argument --max-in-flight: must be an integer >= 1"),
    (["eval", "x.jsonl", "--batch-size", "0"], 2, "argument --batch-size: must be an integer >= 1, got '0'"),
    (["eval", "x.jsonl", "--ks", "5", "0"], 2, "argument --ks: must be an integer >= 1, got '0'"),
    (["eval", "x.jsonl", "--model", "/nonexistent"], 1, "--model /nonexistent: no such checkpoint folder"),
    (["train", "--train-file", "t", "--output-dir", "o", "--batch-size", "0"], 1,
     "--batch-size (TrainConfig.batch_size) must be at least 1, got 0"),
    (["train", "--train-file", "t", "--output-dir", "o", "--max-question-length", "0"], 1, "--max-question-length"),
    (["train", "--train-file", "t", "--output-dir", "o", "--learning-rate", "-1"], 1, "must be more than 0, got -1"),
])
def test_bad_command_lines_get_one_clear_line(args, status, message, capsys):
    """Checked before anything loads: argparse's usage error (2) or the CLI's one error line (1)."""
    try:
        code = main(args, use_worker=False)
    except SystemExit as exit:  # argparse: usage and "error: argument --flag: ..."
        code = exit.code
    err = capsys.readouterr().err
    assert code == status, err
    assert message in err and "Traceback" not in err, err
