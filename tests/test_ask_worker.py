"""The warm worker of ``ragmodels ask`` (ragmodels.ask_worker): keys, stale sockets, the client's fallbacks,
and one real worker (started by a cold ask, asked again warm, stopped) with byte-identical output."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import QUESTIONS
from ragmodels import ask_worker, default
from ragmodels.cli import ASK_ENVIRONMENT, main


@pytest.fixture
def worker_dir(tmp_path, monkeypatch):
    folder = tmp_path / "w"
    monkeypatch.setenv(ask_worker.ENV_DIR, str(folder))
    monkeypatch.delenv(ask_worker.ENV_DISABLE, raising=False)
    return folder


@pytest.fixture
def local_model(tmp_path):
    """A folder that passes for a local checkpoint naming a local knowledge base (enough for keys)."""
    model, kb = tmp_path / "model", tmp_path / "kb"
    model.mkdir()
    kb.mkdir()
    (kb / "index.faiss").write_bytes(b"x")
    (model / "config.json").write_text(json.dumps({"index_name": "custom", "passages_path": str(kb / "passages"),
                                                   "index_path": str(kb / "index.faiss")}))
    return model, kb


def test_key_follows_arguments_files_and_environment(worker_dir, local_model, monkeypatch):
    model, kb = local_model
    key = ask_worker.compute_key(str(model), None)
    assert key and key == ask_worker.compute_key(str(model), None)
    assert ask_worker.compute_key(str(model), str(kb)) not in (None, key)
    os.utime(kb / "index.faiss", ns=(1, 1))  # the knowledge base the config names changed
    assert ask_worker.compute_key(str(model), None) != key
    key = ask_worker.compute_key(str(model), None)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert ask_worker.compute_key(str(model), None) != key
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setenv(ask_worker.ENV_DISABLE, "0")
    assert ask_worker.compute_key(str(model), None) == key
    # what a worker must not serve: Hub ids, missing indexes, checkpoints that name a Hub index
    assert ask_worker.compute_key("facebook/rag-token-nq", None) is None
    assert ask_worker.compute_key(str(model), str(kb / "missing")) is None
    (model / "config.json").write_text(json.dumps({"index_name": "exact"}))
    assert ask_worker.compute_key(str(model), None) is None
    assert ask_worker.compute_key(str(model), str(kb)) is not None


def test_worker_folder_must_be_private(tmp_path, monkeypatch):
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    monkeypatch.setenv(ask_worker.ENV_DIR, str(folder))
    assert ask_worker.worker_dir() is None
    folder.chmod(0o700)
    assert ask_worker.worker_dir() == str(folder)


def test_switches(monkeypatch):
    monkeypatch.delenv(ask_worker.ENV_DISABLE, raising=False)
    assert not ask_worker.disabled()
    monkeypatch.setenv(ask_worker.ENV_DISABLE, "1")
    assert ask_worker.disabled()


def _spec(worker_dir, local_model):
    model, kb = local_model
    return ask_worker.WorkerSpec.for_args(str(model), str(kb))


def test_stale_socket_is_no_worker_and_gets_cleaned(worker_dir, local_model):
    spec = _spec(worker_dir, local_model)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(spec.socket_path)  # a worker that died without removing its socket
    dead.close()
    open(spec.lock_path, "w").close()
    assert ask_worker.ask(spec, {"questions": ["q"]}) is None
    assert ask_worker.ping(spec) is None
    assert ask_worker.stop_workers() == 0
    assert not os.path.exists(spec.socket_path)


def test_a_worker_that_cannot_load_is_not_restarted(worker_dir, local_model):
    spec = _spec(worker_dir, local_model)  # config.json only: loading fails
    done = subprocess.run([sys.executable, "-c", "import sys; from ragmodels.ask_worker import worker_main; "
                           "sys.exit(worker_main(sys.argv[1], 0.1))", spec.to_json()],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" in done.stderr
    assert os.path.exists(spec.failed_path) and not os.path.exists(spec.socket_path)
    assert ask_worker.start(spec) is False
    assert ask_worker.stop_workers() == 0
    assert not os.path.exists(spec.failed_path)


@contextlib.contextmanager
def fake_worker(path: str, replies: list):
    """A thread serving canned replies on ``path``: each item a dict (sent as one JSON line) or bytes."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)
    requests = []

    def serve():
        for reply in replies:
            conn, _ = server.accept()
            with conn, conn.makefile("rb") as reader:
                requests.append(json.loads(reader.readline()))
                conn.sendall(reply if isinstance(reply, bytes) else json.dumps(reply).encode() + b"\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield requests
    finally:
        thread.join(timeout=10)
        server.close()


def test_client_prints_what_the_worker_sends(worker_dir, local_model, capsys, monkeypatch):
    spec = _spec(worker_dir, local_model)
    model, kb = local_model
    reply = {"protocol": ask_worker.PROTOCOL, "status": "ok", "rc": 0, "stdout": "Q: ü?\nA: x\n", "stderr": ""}
    error = {**reply, "rc": 1, "stdout": "", "stderr": "ragmodels: error: n_docs too large\n"}
    monkeypatch.setattr(ask_worker, "start", lambda *a, **k: pytest.fail("a running worker was answered by"))
    with fake_worker(spec.socket_path, [reply, error]) as requests:
        argv = ["ask", "ü?", "--model", str(model), "--index", str(kb), "--num-beams", "2"]
        assert main(argv, use_worker=True) == 0
        assert capsys.readouterr().out == "Q: ü?\nA: x\n"
        assert main([*argv, "--n-docs", "99"], use_worker=True) == 1
        assert capsys.readouterr().err == "ragmodels: error: n_docs too large\n"
    assert requests[0]["key"] == spec.key
    assert requests[0]["args"] == {"questions": ["ü?"], "n_docs": None, "num_beams": 2, "max_new_tokens": 32,
                                   "copy": None, "abstain": True, "json": False}
    assert requests[1]["args"]["n_docs"] == 99


def test_failing_worker_means_in_process_answer_and_a_new_worker(
        worker_dir, tiny_rag_checkpoint, tiny_knowledge_base, capsys, monkeypatch):
    argv = ["ask", *QUESTIONS[:2], "--model", str(tiny_rag_checkpoint("token")), "--index", str(tiny_knowledge_base),
            "--n-docs", "2", "--num-beams", "2", "--max-new-tokens", "6", "--json"]
    assert main(argv) == 0  # in-process: no worker asked, none started
    expected = capsys.readouterr().out
    assert not worker_dir.exists()
    started = []
    monkeypatch.setattr(ask_worker, "start", lambda spec, idle: started.append((spec.key, idle)))
    spec = ask_worker.WorkerSpec.for_args(argv[4], argv[6])
    broken = {"protocol": ask_worker.PROTOCOL, "status": "error"}
    with fake_worker(spec.socket_path, [broken, b'{"protocol": 1, "status": "ok", "rc": 0, "std']):
        assert main([*argv, "--worker-idle-minutes", "3"], use_worker=True) == 0
        assert capsys.readouterr().out == expected
        assert main(argv, use_worker=True) == 0  # a reply cut short
        assert capsys.readouterr().out == expected
    assert started == [(spec.key, 3.0), (spec.key, 10.0)]
    started.clear()
    assert main(argv, use_worker=True) == 0  # no worker at all (the socket is gone)
    assert main([*argv, "--no-worker"], use_worker=True) == 0
    monkeypatch.setenv(ask_worker.ENV_DISABLE, "1")
    assert main(argv, use_worker=True) == 0
    assert capsys.readouterr().out == expected * 3
    assert started == [(spec.key, 10.0)]


# -- one real worker ------------------------------------------------------------------------------------
PR_SET_CHILD_SUBREAPER = 36


@contextlib.contextmanager
def reaping_orphans():
    """Make this process the reaper of orphaned descendants (the detached worker) while inside."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        pytest.skip("prctl(PR_SET_CHILD_SUBREAPER) is not available")
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def _ask(args: list[str], env: dict) -> tuple[subprocess.CompletedProcess, float]:
    """The finished ``ragmodels ask ARGS`` and its CPU seconds (user + system)."""
    before = os.times()
    done = subprocess.run([sys.executable, "-m", "ragmodels.cli", "ask", *args], env=env, capture_output=True,
                          timeout=300)
    after = os.times()
    assert done.returncode == 0, done.stderr.decode()
    return done, after.children_user - before.children_user + after.children_system - before.children_system


CLIENT_IMPORTS = """
import sys, ragmodels.cli
status = ragmodels.cli.main(sys.argv[1:], use_worker=True)
heavy = sorted(m for m in ("torch", "transformers", "numpy", "faiss", "pyarrow") if m in sys.modules)
sys.stderr.write("heavy imports: %s" % heavy)
sys.exit(status)
"""


@pytest.mark.skipif(not default.available(), reason="the default model is not shipped in this checkout")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reaps the detached worker with prctl (Linux)")
@pytest.mark.timeout(900)
def test_real_worker_answers_the_same_bytes_faster(worker_dir, monkeypatch):
    questions = ["What is the capital of Mongolia?", "Who wrote Hamlet?", "Which country borders Lesotho?"]
    for name, value in ASK_ENVIRONMENT.items():  # what `ragmodels ask` sets: the clients' keys include it
        monkeypatch.setenv(name, os.environ.get(name, value))
    env = dict(os.environ)
    spec, reaped = None, False
    with reaping_orphans():
        try:
            cold, cold_cpu = _ask([*questions, "--json", "--worker-idle-minutes", "5"], env)  # starts one
            cold_objects = [json.loads(line) for line in cold.stdout.splitlines()]  # one JSON object a line
            assert [o["question"] for o in cold_objects] == questions
            assert [o["answer"] is None and o["abstained"] for o in cold_objects] == [False, True, False]
            spec = ask_worker.WorkerSpec.for_args(None, None)
            deadline = time.monotonic() + 240
            while (info := ask_worker.ping(spec)) is None:
                assert time.monotonic() < deadline, (worker_dir / f"{spec.key}.log").read_text()
                time.sleep(0.2)
            warm, warm_cpu = _ask([*questions, "--json"], env)
            assert warm.stdout == cold.stdout and warm.stderr == b""
            # the client does next to nothing: CPU seconds, not wall time (a busy machine stretches the latter)
            assert warm_cpu < cold_cpu / 5, (warm_cpu, cold_cpu)
            # other options and the text format, against an in-process answer
            greedy = [questions[0], "--num-beams", "1", "--n-docs", "2"]
            assert _ask(greedy, env)[0].stdout == _ask([*greedy, "--no-worker"], env)[0].stdout
            # concurrent clients, and a client that imports nothing heavy
            clients = [subprocess.Popen([sys.executable, "-c", CLIENT_IMPORTS, "ask", *questions, "--json"], env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
            for client in clients:
                out, err = client.communicate(timeout=120)
                assert client.returncode == 0 and out == cold.stdout
                assert err.decode() == "heavy imports: []"
            assert ask_worker.ping(spec)["pid"] == info["pid"]  # one worker served them all
            stopped = _ask(["--stop-worker"], env)[0]
            assert stopped.stdout == b"stopped 1 ask worker\n"
            assert os.waitpid(info["pid"], 0)[0] == info["pid"]  # exited, and reaped here
            assert not os.path.exists(spec.socket_path)
            reaped = True
        finally:  # whatever happened: no worker left running, none left unreaped
            pid = spec and ask_worker._read_pid(spec.lock_path)
            ask_worker.stop_workers(str(worker_dir))
            if pid and not reaped:
                with contextlib.suppress(ChildProcessError):  # not our child: not ours to kill
                    if os.waitpid(pid, os.WNOHANG)[0] == 0:
                        os.kill(pid, signal.SIGKILL)
                        os.waitpid(pid, 0)


# -- concurrent connections (a worker in this process over the tiny pipeline) -----------------------------
@contextlib.contextmanager
def serving_worker(spec, pipeline):
    """``ask_worker._Worker`` over a ready ``pipeline``, serving ``spec``'s socket from a thread until stopped."""
    worker = ask_worker._Worker(spec, pipeline=pipeline)
    thread = threading.Thread(target=worker.serve, args=(600,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while ask_worker.ping(spec) is None:
            assert thread.is_alive() and time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.02)
        yield worker
    finally:
        ask_worker._exchange(spec.socket_path, {"protocol": ask_worker.PROTOCOL, "op": "stop"}, timeout=30)
        thread.join(timeout=30)
        assert not thread.is_alive(), "the worker did not stop"


def test_a_silent_client_does_not_block_other_asks(worker_dir, tiny_rag_checkpoint, tiny_knowledge_base, monkeypatch):
    from ragmodels.pipeline import RagPipeline
    from ragmodels.answering import ask_fields_namespace, format_answers

    monkeypatch.setattr(ask_worker, "READ_TIMEOUT_S", 600.0)  # phase 1: the silent clients are not timed out
    monkeypatch.setenv(ask_worker.ENV_TIMEOUT, "20")  # a worker that waited on them would not answer in time
    model, kb = str(tiny_rag_checkpoint("token")), str(tiny_knowledge_base)
    pipeline = RagPipeline.from_pretrained(model, index=kb, device="cpu")
    spec = ask_worker.WorkerSpec.for_args(model, kb)
    fields = {"questions": QUESTIONS[:2], "n_docs": 2, "num_beams": 1, "max_new_tokens": 6, "copy": None, "json": True}
    with serving_worker(spec, pipeline):
        silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        trickle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with silent, trickle:
            silent.connect(spec.socket_path)  # connects and sends nothing
            trickle.connect(spec.socket_path)
            trickle.sendall(b'{"protocol": 1, ')  # starts a request and never ends it
            reply = ask_worker.ask(spec, fields)  # answered while both are open and waiting
            assert reply is not None and reply["rc"] == 0
            assert reply["stdout"] == format_answers(pipeline, ask_fields_namespace(fields))
            for idle in (silent, trickle):  # still open, unanswered
                idle.setblocking(False)
                with pytest.raises(BlockingIOError):
                    idle.recv(1)
        # phase 2: with a short read timeout a silent client is closed by the worker, unanswered
        monkeypatch.setattr(ask_worker, "READ_TIMEOUT_S", 0.2)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
            silent.connect(spec.socket_path)
            silent.settimeout(60)
            assert silent.recv(1) == b""
        assert ask_worker.ask(spec, {**fields, "questions": ["x" * 1000]})["rc"] == 1  # errors still come back
