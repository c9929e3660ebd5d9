"""A fork server for the knowledge-base crash tests: imports ragmodels once, then forks one child per
command, so that every build or update the tests SIGKILL is a real process without paying the import.

Protocol (one JSON object per line): ``{"op": "start", "action": ..., "args": {...}}`` forks a child
that runs the action and answers ``{"pid": N}``; ``{"op": "wait", "pid": N}`` answers
``{"status": S}`` (os.waitstatus_to_exitcode: 0 done, -9 killed). The server itself never computes
anything before forking (no OpenMP or torch threads exist to be lost in a child).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import transformers.models.bert.modeling_bert  # noqa: F401  (what a child's encoder load would import)
from transformers import AutoConfig, AutoModel, AutoTokenizer  # noqa: F401

from ragmodels.retrieval.knowledge_base import ContextEncoder, KnowledgeBase, build_knowledge_base


def build(inputs: list[str], kb: str, encoder: str, shard_size: int) -> None:
    build_knowledge_base(inputs, kb, ContextEncoder.from_pretrained(encoder, "cls", max_length=128), shard_size=shard_size,
                         words_per_passage=20, progress=False)


def add(kb: str, texts: list[str], seed: int) -> None:
    """Each text added by its own update, from a knowledge base loaded once (stale after the first)."""
    loaded = KnowledgeBase.load(kb)
    rng = np.random.default_rng(seed)
    for text in texts:
        loaded.add(["Added"], [text], embeddings=rng.standard_normal((1, loaded.dimension)).astype(np.float32))


def delete(kb: str, ids: list[int]) -> None:
    KnowledgeBase.load(kb).delete(ids)


ACTIONS = {"build": build, "add": add, "delete": delete}


def main() -> None:
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "start":
            pid = os.fork()
            if pid == 0:
                try:
                    ACTIONS[command["action"]](**command["args"])
                except BaseException as err:  # a failure must show as a non-zero status, not a second server
                    sys.stderr.write(f"{command['action']} failed: {err!r}\n")
                    os._exit(1)
                os._exit(0)
            answer = {"pid": pid}
        else:
            answer = {"status": os.waitstatus_to_exitcode(os.waitpid(command["pid"], 0)[1])}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
