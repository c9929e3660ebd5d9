"""The ``ragmodels`` command line: ``ragmodels <group> <command> ...``.

Each command group registers its subcommands from its own small function listed in ``GROUPS``; a
command stores its handler as ``func`` and returns an exit status. Handlers import their (heavy)
modules lazily, so ``ragmodels --help`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .answering import ASK_FIELDS, error_line, format_answers, load_pipeline
from .argtypes import checkpoint_source, integer, number
from .commands.data import add_data_command
from .questions import MAX_QUESTION_CHARS

SERVE_TOKEN_ENV = "RAGMODELS_SERVE_TOKEN"


def add_index_commands(subparsers: argparse._SubParsersAction) -> None:
    """``ragmodels index build|info|add|delete|import-dpr|import-hf|tokens|shard``: knowledge bases."""
    group = subparsers.add_parser("index", help="build, inspect, update and import knowledge bases")
    commands = group.add_subparsers(dest="index_command", required=True)

    build = commands.add_parser("build", help="documents (JSONL, CSV/TSV, folder of .txt/.md) -> knowledge base")
    build.add_argument("inputs", nargs="+", help="JSONL/CSV/TSV files or folders of .txt/.md files")
    build.add_argument("--output", "-o", required=True, help="knowledge-base folder to create or replace")
    _encoder_args(build, required=False)
    _passage_args(build)
    _index_args(build)
    build.add_argument("--batch-size", type=int, default=64, help="passages per encoder batch (default 64)")
    build.add_argument("--shard-size", type=int, default=10_000,
                       help="passages per resumable shard (default 10000): a killed build resumes after the last one")
    build.set_defaults(func=_index_build)

    info = commands.add_parser("info", help="describe a knowledge base and check its files")
    info.add_argument("kb", help="knowledge-base folder")
    info.add_argument("--full-check", action="store_true", help="verify full SHA-256 checksums (reads every byte)")
    info.add_argument("--json", action="store_true", help="print the manifest as JSON")
    info.set_defaults(func=_index_info)

    add = commands.add_parser("add", help="add documents to a knowledge base (no re-encoding of the rest)")
    add.add_argument("kb", help="knowledge-base folder")
    add.add_argument("inputs", nargs="+", help="JSONL/CSV/TSV files or folders of .txt/.md files")
    _passage_args(add)
    add.set_defaults(func=_index_add)

    delete = commands.add_parser("delete", help="delete passages by id (later ids move up)")
    delete.add_argument("kb", help="knowledge-base folder")
    delete.add_argument("ids", nargs="+", type=int, help="passage ids (row positions, as retrievers return them)")
    delete.set_defaults(func=_index_delete)

    dpr = commands.add_parser("import-dpr", help="import DPR's psgs_w100.tsv with .npy embeddings")
    dpr.add_argument("passages", help="DPR passages TSV (id, text, title)")
    dpr.add_argument("embeddings", nargs="+", help=".npy files of embeddings, rows in TSV order (no pickles)")
    dpr.add_argument("--output", "-o", required=True, help="knowledge-base folder")
    _encoder_args(dpr, required=False)
    _index_args(dpr)
    dpr.set_defaults(func=_index_import_dpr)

    hf = commands.add_parser("import-hf", help="import a save_to_disk dataset + FAISS index (reference's layout)")
    hf.add_argument("passages_path", help="folder written by datasets.Dataset.save_to_disk")
    hf.add_argument("index_path", help="FAISS index file (dataset.get_index('embeddings').save)")
    hf.add_argument("--output", "-o", required=True, help="knowledge-base folder")
    _encoder_args(hf, required=False)
    hf.set_defaults(func=_index_import_hf)

    tokens = commands.add_parser("tokens", help="store every passage's generator tokens beside the knowledge base")
    tokens.add_argument("kb", help="knowledge-base folder")
    tokens.add_argument("--model", required=True,
                        help="RAG checkpoint (folder or Hub id) whose generator tokenizer, prefix and title_sep to use")
    tokens.set_defaults(func=_index_tokens)
    add_index_shard_command(commands)


def add_index_shard_command(commands: argparse._SubParsersAction) -> None:
    """``ragmodels index shard KB --shards N --out DIR``: cut a knowledge base for distributed retrieval."""
    shard = commands.add_parser("shard", help="cut a knowledge base into N shards for RayRagRetriever")
    shard.add_argument("kb", help="knowledge-base folder")
    shard.add_argument("--shards", type=int, required=True, help="number of shards (contiguous passage ranges)")
    shard.add_argument("--out", "-o", required=True, help="folder to write shards.json and shard-*/ to (replaced)")
    shard.set_defaults(func=_index_shard)


def add_ask_command(subparsers: argparse._SubParsersAction) -> None:
    """``ragmodels ask "question" ...``: answer questions, through a warm worker when one is running."""
    ask = subparsers.add_parser(
        "ask", help="answer questions, showing the passages used and their scores",
        description="Answer questions with the passages used and their scores. The first ask answers in this "
                    "process and starts a background worker that keeps the model loaded, so later asks with the "
                    "same --model/--index skip the seconds of imports and loading; it exits after "
                    "--worker-idle-minutes without questions (see ragmodels.ask_worker).")
    ask.add_argument("questions", nargs="*", help="one or more questions")
    _pipeline_args(ask)
    ask.add_argument("--n-docs", type=integer(1), default=None,
                     help="passages per question (default: the model's n_docs)")
    ask.add_argument("--num-beams", type=integer(1), default=4, help="beams (1: greedy)")
    ask.add_argument("--max-new-tokens", type=integer(1), default=32, help="most tokens per answer")
    ask.add_argument("--copy", action=argparse.BooleanOptionalAction, default=None,
                     help="answers restricted to token spans of the retrieved passages (copy-constrained decoding; "
                          "default: as the model's config says, on for the embedded default)")
    ask.add_argument("--abstain", action=argparse.BooleanOptionalAction, default=True,
                     help="say 'No answer in the knowledge base' when the evidence is weak, by the abstention rule "
                          "stored with the model (default: on; --no-abstain always answers)")
    ask.add_argument("--json", action="store_true",
                     help="stdout: exactly one JSON object per question, in input order (question, answer: null when "
                          "abstained, abstained, confidence, score, passages); anything else goes to stderr")
    ask.add_argument("--no-worker", action="store_true",
                     help="answer in this process; neither use nor start a worker (or set RAGMODELS_NO_WORKER=1)")
    ask.add_argument("--worker-idle-minutes", type=number(0), default=10.0, metavar="N",
                     help="a worker started by this ask exits after N minutes without questions (default 10)")
    ask.add_argument("--stop-worker", action="store_true",
                     help="stop this user's running ask workers (then answer any questions given, in-process)")
    ask.set_defaults(func=_ask, ask_parser=ask)


def add_serve_command(subparsers: argparse._SubParsersAction) -> None:
    """``ragmodels serve ...``: the HTTP server (needs the serve extra)."""
    serve = subparsers.add_parser("serve", help="serve answers over HTTP (pip install 'ragmodels[serve]')")
    _pipeline_args(serve)
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default: loopback only; any other warns unless --token is set)")
    serve.add_argument("--port", type=integer(0, 65535), default=8000, help="port (0: any free one; default 8000)")
    serve.add_argument("--token", default=os.environ.get(SERVE_TOKEN_ENV) or None,
                       help=f"require 'Authorization: Bearer TOKEN' on /v1/answer and /readyz "
                            f"(default: ${SERVE_TOKEN_ENV}; prefer the variable: a flag shows in the process list)")
    serve.add_argument("--max-batch-size", type=integer(1), default=8, help="questions per model call (1: no batching)")
    serve.add_argument("--max-wait-ms", type=number(0), default=10.0, help="how long a request waits to be batched")
    serve.add_argument("--max-questions", type=integer(1), default=16, help="most questions per request")
    serve.add_argument("--max-question-chars", type=integer(1, MAX_QUESTION_CHARS), default=MAX_QUESTION_CHARS,
                       help=f"longest question (default and most: {MAX_QUESTION_CHARS}, as ragmodels ask)")
    serve.add_argument("--max-n-docs", type=integer(1), default=20, help="largest n_docs a request may ask for")
    serve.add_argument("--max-new-tokens", type=integer(1), default=128,
                       help="largest max_new_tokens a request may ask for")
    serve.add_argument("--max-body-bytes", type=integer(1), default=2**20,
                       help="largest request body; larger ones get 413 (default 1 MiB)")
    serve.add_argument("--max-in-flight", type=integer(1), default=32,
                       help="questions queued or being answered at once; past it requests get 503 with Retry-After "
                            "(default 32)")
    serve.add_argument("--timeout", type=number(0, above=True), default=60.0, help="seconds before a request gets 504")
    serve.set_defaults(func=_serve)


def add_train_eval_commands(subparsers: argparse._SubParsersAction) -> None:
    """``ragmodels init``, ``train`` and ``eval``, registered by their own packages."""
    from ragmodels.commands.evaluate import add_eval_command
    from ragmodels.commands.train import add_init_command, add_train_command

    add_init_command(subparsers)
    add_train_command(subparsers)
    add_eval_command(subparsers)


GROUPS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_index_commands, add_ask_command, add_serve_command, add_train_eval_commands, add_data_command,
]
# groups whose registration imports heavy modules (torch, datasets, pandas): only registered for real when
# they are the command being run; otherwise a placeholder keeps them listed in ``ragmodels --help``.
HEAVY_GROUPS = {
    "init": (add_train_eval_commands, "make a trainable RAG checkpoint offline (MiniLM + a generator)"),
    "train": (add_train_eval_commands, "fine-tune RAG-Token / RAG-Sequence on question/answer JSONL"),
    "eval": (add_train_eval_commands, "EM/F1 and retrieval recall@k on a question/answer JSONL set"),
}


def build_parser(group: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or (``group`` given and not one of HEAVY_GROUPS) one that skips their imports."""
    parser = argparse.ArgumentParser(prog="ragmodels", description="Retrieval-Augmented Generation models.")
    subparsers = parser.add_subparsers(dest="group", required=True)
    light = group is not None and group not in HEAVY_GROUPS
    for register in GROUPS:
        if light and any(register is heavy for heavy, _ in HEAVY_GROUPS.values()):
            continue
        register(subparsers)
    if light:
        for name, (_, help_text) in HEAVY_GROUPS.items():
            subparsers.add_parser(name, help=help_text, add_help=False)
    return parser


# set (unless already set) in a ``ragmodels ask`` or ``serve`` process before torch is imported: idle OpenMP threads
# sleep instead of spinning. With the default intra-op threads on a machine with any other load, a thread
# spinning at every small op's barrier while the one with work waits for a time slice made an answer of
# the default model take 2-4 s instead of 30-60 ms. How threads wait does not change what they compute.
ASK_ENVIRONMENT = {"OMP_WAIT_POLICY": "PASSIVE"}


def _group_of(argv: Sequence[str]) -> str:
    """The command group named by ``argv`` ("" when there is none, e.g. ``ragmodels --help``)."""
    return next((arg for arg in argv if not arg.startswith("-")), "")


def main(argv: Sequence[str] | None = None, *, use_worker: bool | None = None) -> int:
    """Run the command in ``argv`` (default ``sys.argv[1:]``); the exit status.

    ``use_worker``: whether ``ask`` may answer through (and start) a warm worker (``ragmodels.ask_worker``);
    default: only when run as a program (``argv`` None), so that ``main([...])`` called from Python answers
    in its own process and never leaves a background process behind.
    """
    as_program = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_group_of(argv))
    args = parser.parse_args(argv)
    if args.group == "ask" and not args.questions and not args.stop_worker:
        args.ask_parser.error("the following arguments are required: questions")
    args.use_worker = as_program if use_worker is None else use_worker
    quick_exit = as_program and args.group == "ask"
    if as_program and args.group in ("ask", "serve"):
        for name, value in ASK_ENVIRONMENT.items():
            os.environ.setdefault(name, value)
    try:
        return args.func(args) or 0
    except (ValueError, OSError) as err:  # bad input: one clear line, no traceback
        sys.stderr.write(error_line(err))
        return 1
    finally:
        if quick_exit:
            # the interpreter's final garbage collections walk every object torch and transformers created:
            # ~0.85 s after an in-process ask. Frozen objects are skipped; atexit handlers and the flush of
            # stdout/stderr still run, and an ask leaves nothing else to finalize.
            import gc

            gc.freeze()


# -- index handlers -------------------------------------------------------------------------------
def _encoder_args(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("--encoder", required=required,
                        help="context encoder: transformers model folder or hub name (DPR or any BERT-like); "
                             "index build's default: the packaged all-MiniLM-L6-v2 with mean pooling")
    parser.add_argument("--pooling", choices=("pooler", "cls", "mean"), default=None,
                        help="how token states become one vector (default: pooler for DPR, mean for the packaged "
                             "MiniLM, else cls)")


def _passage_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--words", type=int, default=100, help="words per passage (default 100, as DPR; at most 1000)")
    parser.add_argument("--min-words", type=int, default=None,
                        help="a document's last passage shorter than this joins the one before it "
                             "(default: a fifth of --words, 20 at 100; 0 keeps every tail)")
    parser.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                        help="bad input records (invalid JSON/UTF-8, CSV rows with too many or too few fields, "
                             "unclosed quotes): stop with file:line (raise, default) or leave them out and say how "
                             "many (skip)")


def _index_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", default="flat", choices=("flat", "hnsw", "ivf_pq", "ivf_sq8"), help="FAISS index kind")
    parser.add_argument("--index-param", action="append", default=[], metavar="NAME=VALUE",
                        help="index parameter, e.g. nlist=1024, M=32, pq_m=96 (repeatable)")


def _index_params(pairs: list[str]) -> dict:
    from ragmodels.retrieval.index import parse_index_params

    return parse_index_params(pairs)


def _index_build(args: argparse.Namespace) -> int:
    from ragmodels.retrieval.knowledge_base import build_knowledge_base

    kb = build_knowledge_base(args.inputs, args.output, args.encoder, pooling=args.pooling, words_per_passage=args.words,
                              min_words=args.min_words, on_error=args.on_error, index_kind=args.kind,
                              index_params=_index_params(args.index_param), batch_size=args.batch_size,
                              shard_size=args.shard_size)
    print(kb.describe())
    return 0


def _index_info(args: argparse.Namespace) -> int:
    from ragmodels.retrieval.knowledge_base import KnowledgeBase

    kb = KnowledgeBase.load(args.kb, full_check=args.full_check)
    print(kb.manifest.to_json() if args.json else kb.describe())
    return 0


def _index_add(args: argparse.Namespace) -> int:
    from ragmodels.retrieval.knowledge_base import KnowledgeBase
    from ragmodels.retrieval.knowledge_base.chunking import split_documents
    from ragmodels.retrieval.knowledge_base.readers import Skipped, read_documents

    skipped = Skipped()
    passages = list(split_documents(read_documents(args.inputs, args.on_error, skipped), args.words, args.min_words))
    if skipped.records:
        sys.stderr.write(f"ragmodels: {skipped.summary()}\n")
    kb = KnowledgeBase.load(args.kb).add([p.title for p in passages], [p.text for p in passages])
    print(kb.describe())
    return 0


def _index_delete(args: argparse.Namespace) -> int:
    from ragmodels.retrieval.knowledge_base import KnowledgeBase

    print(KnowledgeBase.load(args.kb).delete(args.ids).describe())
    return 0


def _index_tokens(args: argparse.Namespace) -> int:
    from ragmodels.config import RagConfig
    from ragmodels.retrieval.knowledge_base import KnowledgeBase
    from ragmodels.tokenization import RagTokenizer

    model = checkpoint_source(args.model)
    config = RagConfig.from_pretrained(model)
    tokenizer = RagTokenizer.from_pretrained(model, config=config).generator
    store = KnowledgeBase.load(args.kb).build_passage_tokens(
        tokenizer, prefix=getattr(config.generator, "prefix", None), title_sep=config.title_sep)
    print(f"{len(store)} passages tokenized for {args.model}: {store.folder} ({store.nbytes / 2**20:.1f} MiB); "
          "retrievers over this knowledge base with that tokenizer now read it instead of tokenizing")
    return 0


def _index_import_dpr(args: argparse.Namespace) -> int:
    from ragmodels.retrieval.knowledge_base import import_dpr

    kb = import_dpr(args.passages, args.embeddings, args.output, encoder=args.encoder, pooling=args.pooling,
                    index_kind=args.kind, index_params=_index_params(args.index_param))
    print(kb.describe())
    return 0


def _index_import_hf(args: argparse.Namespace) -> int:
    from ragmodels.retrieval.knowledge_base import import_saved_dataset

    print(import_saved_dataset(args.passages_path, args.index_path, args.output, args.encoder, args.pooling).describe())
    return 0


# -- ask / serve handlers -------------------------------------------------------------------------
def _pipeline_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="RAG checkpoint folder or Hub id (default: the embedded default model)")
    parser.add_argument("--index", help="knowledge-base folder (default: the index the checkpoint names)")


def _ask(args: argparse.Namespace) -> int:
    from ragmodels import ask_worker
    from ragmodels.questions import check_questions

    if args.questions:
        check_questions(args.questions)  # before any loading: the same limits as the server's
    if args.stop_worker:
        stopped = ask_worker.stop_workers()
        print(f"stopped {stopped} ask worker{'' if stopped == 1 else 's'}", file=sys.stderr if args.json else sys.stdout)
        if not args.questions:
            return 0
    spec = None
    if getattr(args, "use_worker", False) and not args.no_worker and not args.stop_worker and not ask_worker.disabled():
        spec = ask_worker.WorkerSpec.for_args(args.model, args.index)
    if spec is not None:
        reply = ask_worker.ask(spec, {name: getattr(args, name) for name in ASK_FIELDS})
        if reply is not None:
            sys.stdout.write(reply["stdout"])
            sys.stderr.write(reply["stderr"])
            return reply["rc"]
    with contextlib.redirect_stdout(sys.stderr):  # whatever loading and answering print is not the answer
        text = format_answers(load_pipeline(args.model, args.index), args)
    sys.stdout.write(text)
    if spec is not None:
        sys.stdout.flush()
        ask_worker.start(spec, args.worker_idle_minutes)
    return 0


def _serve(args: argparse.Namespace) -> int:
    try:
        from ragmodels.serving import ServerSettings, create_app, serve
    except ImportError as err:
        print(f"ragmodels: error: {err}", file=sys.stderr)
        return 1
    if args.model is None:  # fail now rather than in the server's loading thread
        from ragmodels.pipeline import require_default_model

        require_default_model()
    else:
        checkpoint_source(args.model)
    if args.index is not None and not Path(args.index).expanduser().exists():
        raise FileNotFoundError(f"--index {args.index}: no such knowledge-base folder.")
    settings = ServerSettings(max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms,
                              max_questions=args.max_questions, max_question_chars=args.max_question_chars,
                              max_n_docs=args.max_n_docs, max_new_tokens=args.max_new_tokens,
                              request_timeout_s=args.timeout, max_body_bytes=args.max_body_bytes,
                              max_in_flight=args.max_in_flight, token=args.token)
    serve(create_app(lambda: load_pipeline(args.model, args.index), settings), host=args.host, port=args.port,
          protected=settings.token is not None)
    return 0


def _index_shard(args: argparse.Namespace) -> int:
    from ragmodels.retrieval.distributed import shard_knowledge_base

    layout = shard_knowledge_base(args.kb, args.out, args.shards)
    print(f"{len(layout.shards)} shards of {layout.passage_count} passages ({layout.index_kind}) in {layout.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
