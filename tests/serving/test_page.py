"""The web page at / in headless Chromium, driven over WebDriver (chromedriver, plain HTTP from urllib):
typing a question shows the answer and its passages, with the answer highlighted inside them."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from ragmodels.pipeline import DecodingOptions
from ragmodels.serving.server import free_port
from serving.conftest import call

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs headless Chromium and chromedriver (Debian: apt-get install -y chromium chromium-driver)",
)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # W3C WebDriver's key for element references
READ_PAGE = """return {
  answer: document.getElementById('answer').textContent,
  hidden: document.getElementById('result').hidden,
  error: document.getElementById('error').textContent,
  titles: [...document.querySelectorAll('#passages .title')].map(e => e.textContent),
  texts: [...document.querySelectorAll('#passages .text')].map(e => e.textContent),
  marks: [...document.querySelectorAll('#passages li:first-child mark')].map(e => e.textContent),
};"""


class Browser:
    """A headless Chromium session behind chromedriver, spoken to in W3C WebDriver JSON."""

    def __init__(self, driver_url: str, session: str):
        self.base = f"{driver_url}/session/{session}"

    def send(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["value"]

    def type_into(self, selector: str, text: str) -> None:
        element = self.send("POST", "/element", {"using": "css selector", "value": selector})[ELEMENT]
        self.send("POST", f"/element/{element}/clear", {})
        self.send("POST", f"/element/{element}/value", {"text": text})

    def click(self, selector: str) -> None:
        element = self.send("POST", "/element", {"using": "css selector", "value": selector})[ELEMENT]
        self.send("POST", f"/element/{element}/click", {})

    def wait_for(self, condition, timeout_s: float = 20) -> dict:
        """Poll the page state until ``condition(state)`` holds; return the state."""
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.send("POST", "/execute/sync", {"script": READ_PAGE, "args": []})
            if condition(state) or time.monotonic() > deadline:
                return state
            time.sleep(0.05)


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[Browser]:
    port = free_port()
    driver = subprocess.Popen([CHROMEDRIVER, f"--port={port}", "--allowed-ips=127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while not _listening(url):
            if time.monotonic() > deadline:
                pytest.fail("chromedriver did not start")
            time.sleep(0.05)
        options = {"binary": CHROMIUM, "args": [*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"]}
        created = call(url + "/session", {"capabilities": {"alwaysMatch": {"goog:chromeOptions": options}}})
        assert created.status == 200, created.body
        browser = Browser(url, created.body["value"]["sessionId"])
        yield browser
        browser.send("DELETE", "")
    finally:
        driver.terminate()
        driver.wait(10)


def _listening(url: str) -> bool:
    try:
        urllib.request.urlopen(url + "/status", timeout=1).close()
        return True
    except OSError:
        return False


def ask(browser: Browser, question: str) -> dict:
    browser.type_into("#question", question)
    browser.click("#ask")
    return browser.wait_for(lambda s: not s["hidden"] and s["titles"] or s["error"])


def test_typing_a_question_shows_the_answer_and_passages(browser, server, pipeline):
    browser.send("POST", "/url", {"url": server.url + "/"})
    question = "What is the capital of Mongolia?"
    state = ask(browser, question)
    assert state["error"] == ""
    expected = pipeline.answer([question], DecodingOptions())[0]  # the page sends the default options
    assert state["answer"] == (expected.answer or "(empty answer)")
    assert state["titles"] == [p.title for p in expected.passages]
    assert state["texts"] == [p.text for p in expected.passages]


def test_the_answer_is_highlighted_in_the_passages(browser, server, pipeline, monkeypatch):
    """A pipeline whose answer is a word of its top passage: the page marks that word there."""
    answer = pipeline.answer

    def quoting(questions, options):
        return [dataclasses.replace(a, answer=a.passages[0].text.split()[3].upper()) for a in answer(questions, options)]

    monkeypatch.setattr(pipeline, "answer", quoting)
    browser.send("POST", "/url", {"url": server.url + "/"})
    state = ask(browser, "Who discovered oxygen?")
    word = state["texts"][0].split()[3]
    assert state["answer"] == word.upper() and state["marks"] == [word]


def test_only_whole_words_are_highlighted(browser, server):
    browser.send("POST", "/url", {"url": server.url + "/"})
    marks = browser.send("POST", "/execute/sync", {"script": """
        const box = document.createElement('div');
        appendHighlighted(box, arguments[0], arguments[1]);
        return [...box.querySelectorAll('mark')].map(m => m.textContent);""",
        "args": ["Tunis is the capital of Tunisia (TUNIS); Tunis_x, éTunis.", "tunis"]})
    assert marks == ["Tunis", "TUNIS"]


def test_errors_are_shown_in_plain_words(browser, server):
    browser.send("POST", "/url", {"url": server.url + "/"})
    state = ask(browser, "x" * 201)
    assert state["hidden"] and state["error"] == "Question 1 is too long: 201 characters, at most 200 allowed"


def test_a_server_with_a_token_asks_for_it(browser, pipeline):
    from serving.conftest import running

    with running(pipeline, token="s3cret") as srv:
        browser.send("POST", "/url", {"url": srv.url + "/"})
        state = ask(browser, "Who discovered oxygen?")
        assert state["hidden"] and "needs an access token" in state["error"]
        browser.type_into("#token", "s3cret")
        browser.click("#ask")
        state = browser.wait_for(lambda s: not s["hidden"] and s["titles"])
        assert state["error"] == "" and state["titles"]


def test_an_abstention_shows_no_answer_and_marks_nothing(browser, server, pipeline, monkeypatch):
    from ragmodels.abstention import AbstentionRule

    # confidence sigmoid(0) = 0.5 for every question, below the threshold: the model abstains
    monkeypatch.setattr(pipeline, "abstention", AbstentionRule(weights={}, bias=0.0, threshold=0.9, vocabulary=[]))
    browser.send("POST", "/url", {"url": server.url + "/"})
    state = ask(browser, "Who wrote Hamlet?")
    assert state["error"] == "" and state["answer"] == "No answer in the knowledge base"
    assert state["titles"] and state["marks"] == []  # the closest passages are shown, nothing marked in them
