"""What ``ragmodels ask`` does with a set of questions, shared by the CLI and its warm worker (ask_worker.py).

Loading the pipeline, answering and formatting live here, below both, so the worker runs exactly the CLI's
code (same bytes out) without importing the CLI, and the CLI starts workers without importing the worker's
side of this.
"""

from __future__ import annotations

import argparse
import json

from .argtypes import checkpoint_source


def error_line(err: BaseException) -> str:
    """How the CLI reports bad input (also what an ask worker sends back)."""
    return f"ragmodels: error: {err}\n"


def load_pipeline(model: str | None, index: str | None):
    """The RagPipeline of ``--model``/``--index`` (None: the embedded default), loaded without progress bars."""
    from transformers.utils import logging as hf_logging

    from ragmodels.pipeline import RagPipeline

    def no_loading_bar(factory, args, kwargs):  # transformers' "Loading weights" bar; others unchanged
        if kwargs.get("desc") == "Loading weights":
            return hf_logging.EmptyTqdm(*args, **kwargs)
        return previous(factory, args, kwargs) if previous is not None else factory(*args, **kwargs)

    previous = hf_logging.set_tqdm_hook(no_loading_bar)
    try:
        if model is None:
            return RagPipeline.from_default(index=index)
        return RagPipeline.from_pretrained(checkpoint_source(model), index=index)
    finally:
        hf_logging.set_tqdm_hook(previous)


# the ask options that decide its output (what a client sends to an ask worker), with their defaults
ASK_FIELDS = {"questions": [], "n_docs": None, "num_beams": 4, "max_new_tokens": 32, "copy": None, "abstain": True,
              "json": False}
NO_ANSWER = "No answer in the knowledge base"


def ask_fields_namespace(fields: dict) -> argparse.Namespace:
    """An ask's output options from ``fields`` (missing ones at their defaults, unknown ones ignored)."""
    return argparse.Namespace(**{name: fields.get(name, default) for name, default in ASK_FIELDS.items()})


def format_answers(pipeline, args: argparse.Namespace) -> str:
    """What ``ragmodels ask`` prints for ``args.questions`` (text, or one JSON object per line with --json)."""
    answers = pipeline.answer(args.questions, n_docs=args.n_docs, num_beams=args.num_beams,
                              max_new_tokens=args.max_new_tokens, copy_from_context=args.copy, abstain=args.abstain)
    lines = []
    for question, answer in zip(args.questions, answers):
        if args.json:
            lines.append(json.dumps({"question": question, **answer.to_dict()}, ensure_ascii=False))
            continue
        confidence = "" if answer.confidence is None else f", confidence {answer.confidence:.3f}"
        if answer.abstained:
            lines.append(f"Q: {question}\nA: {NO_ANSWER}.    (the evidence is too weak{confidence}; "
                         "closest passages below; --no-abstain answers anyway)")
        else:
            lines.append(f"Q: {question}\nA: {answer.answer}    (log-likelihood {answer.score:.3f}{confidence})")
        for rank, p in enumerate(answer.passages, 1):
            lines.append(f"  [{rank}] {p.title}  p(z|x)={p.score:.3f}  <q,d>={p.inner_product:.2f}\n      {p.text}")
    return "".join(line + "\n" for line in lines)
