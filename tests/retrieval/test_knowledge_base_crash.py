"""Knowledge bases under SIGKILL and concurrency: builds and updates killed at random points leave the
old or the new version, complete (full checksums), and no staging folder; concurrent updaters both apply.

The processes killed are real: children forked by ``kb_crash_worker`` (a server that imported ragmodels
once), killed with SIGKILL after a seeded random delay drawn over the length of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from transformers import BertModel

from conftest import tiny_bert_config
from ragmodels.retrieval.knowledge_base import ContextEncoder, KnowledgeBase, build_knowledge_base
from retrieval.conftest import kb_leftovers

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the fork server needs os.fork")
KILLS = 5  # updates killed per run (builds: 3, each costs a model load; the slow variants: more)
MAX_LENGTH = 128  # the tiny BERT's positions
WORKER = Path(__file__).with_name("kb_crash_worker.py")


class ForkServer:
    def __init__(self):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(WORKER.parent.parent), *sys.path]),
               "OMP_NUM_THREADS": "1"}  # tiny models: threads only wait for each other on a busy machine
        self.process = subprocess.Popen([sys.executable, str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, env=env)

    def _ask(self, command: dict) -> dict:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def start(self, action: str, **args) -> int:
        return self._ask({"op": "start", "action": action, "args": args})["pid"]

    def wait(self, pid: int) -> int:
        return self._ask({"op": "wait", "pid": pid})["status"]

    def run(self, action: str, **args) -> float:
        """Run an action to completion; its duration in seconds."""
        begin = time.monotonic()
        assert self.wait(self.start(action, **args)) == 0
        return time.monotonic() - begin

    def killed(self, delay: float, action: str, **args) -> int:
        """Start an action, SIGKILL it after ``delay`` seconds (unless done); its exit status."""
        pid = self.start(action, **args)
        time.sleep(delay)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:  # not reaped yet, so only if the pid is gone entirely
            pass
        return self.wait(pid)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.terminate()  # its children are all reaped; no need to wait for the interpreter's exit
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def server():
    s = ForkServer()
    yield s
    s.close()


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory, question_tokenizer):
    folder = tmp_path_factory.mktemp("encoder")
    model = BertModel(tiny_bert_config())
    model.save_pretrained(folder)
    question_tokenizer.save_pretrained(folder)
    return str(folder)


def write_docs(path: Path, tag: str, n: int = 60) -> str:
    path.write_text("".join(json.dumps({"title": f"{tag}{i}", "text": " ".join(f"{tag}{i}w{j}" for j in range(40))})
                            + "\n" for i in range(n)))
    return str(path)


def state(kb_path: Path) -> list[tuple[str, str]]:
    """(id, title) of every passage, after a load with full checksums; and no staging folder left."""
    kb = KnowledgeBase.load(kb_path, full_check=True)
    assert [name for name in kb_leftovers(kb_path) if name != f".{kb_path.name}.work"] == []
    docs = kb.passages.fetch(np.arange(len(kb))[None])[0]
    return list(zip(docs["id"], docs["title"]))


@pytest.mark.parametrize("kills", [3, pytest.param(12, marks=pytest.mark.slow)])
def test_killed_builds_leave_the_old_or_the_new_knowledge_base(tmp_path, server, encoder_dir, kills):
    rng = random.Random(16 + kills)
    kb = tmp_path / "kb"
    inputs = {"a": write_docs(tmp_path / "a.jsonl", "a"), "b": write_docs(tmp_path / "b.jsonl", "b", 70)}
    versions = {}
    for tag in ("b", "a"):  # ends on a; each run also gives the length of an uninterrupted build
        duration = server.run("build", inputs=[inputs[tag]], kb=str(kb), encoder=encoder_dir, shard_size=25)
        versions[tag] = state(kb)
    current, statuses = "a", []
    for _ in range(kills):
        target = "b" if current == "a" else "a"
        statuses += [server.killed(rng.uniform(0.3, 1.1) * duration, "build", inputs=[inputs[target]], kb=str(kb),
                      encoder=encoder_dir, shard_size=25)]
        now = state(kb)
        assert now in (versions[current], versions[target])
        current = target if now == versions[target] else current
    assert -signal.SIGKILL in statuses  # at least one build died mid-way
    server.run("build", inputs=[inputs["b"]], kb=str(kb), encoder=encoder_dir, shard_size=25)  # resumes, completes
    assert state(kb) == versions["b"] and kb_leftovers(kb) == []


@pytest.mark.parametrize("kills", [KILLS, pytest.param(20, marks=pytest.mark.slow)])
def test_killed_updates_leave_the_old_or_the_new_knowledge_base(tmp_path, server, question_tokenizer, kills):
    rng = random.Random(15 + kills)
    kb = tmp_path / "kb"
    encoder = ContextEncoder(BertModel(tiny_bert_config()), question_tokenizer, pooling="cls", max_length=MAX_LENGTH)
    build_knowledge_base([write_docs(tmp_path / "d.jsonl", "d", 300)], kb, encoder, words_per_passage=20,
                         index_kind="hnsw", progress=False)
    duration = server.run("add", kb=str(kb), texts=["warm-up passage"], seed=0)
    statuses = []
    for round_ in range(kills):
        before, next_id = state(kb), KnowledgeBase.load(kb).manifest.next_id
        if round_ % 2:
            statuses.append(server.killed(rng.uniform(0, 1.2 * duration), "delete", kb=str(kb), ids=[0, 5]))
            new = [p for i, p in enumerate(before) if i not in (0, 5)]
        else:
            statuses.append(server.killed(rng.uniform(0, 1.2 * duration), "add", kb=str(kb), texts=["one more"],
                                          seed=round_))
            new = [*before, (str(next_id), "Added")]
        assert state(kb) in (before, new)
    assert -signal.SIGKILL in statuses and kb_leftovers(kb) == []


def test_concurrent_updaters_both_apply(tmp_path, server, question_tokenizer):
    kb = tmp_path / "kb"
    encoder = ContextEncoder(BertModel(tiny_bert_config()), question_tokenizer, pooling="cls", max_length=MAX_LENGTH)
    build_knowledge_base([write_docs(tmp_path / "d.jsonl", "d", 20)], kb, encoder, progress=False)
    first = server.start("add", kb=str(kb), texts=[f"first {i}" for i in range(4)], seed=1)
    second = server.start("add", kb=str(kb), texts=[f"second {i}" for i in range(4)], seed=2)
    assert server.wait(first) == 0 and server.wait(second) == 0  # neither died of the other's publish
    loaded = KnowledgeBase.load(kb, full_check=True)
    texts = loaded.passages.fetch(np.arange(len(loaded))[None])[0]["text"]
    assert len(loaded) == 20 + 8
    assert sorted(texts[20:]) == sorted([f"first {i}" for i in range(4)] + [f"second {i}" for i in range(4)])
    assert loaded.manifest.next_id == 28 and kb_leftovers(kb) == []
