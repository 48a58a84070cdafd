"""Install and start the peer gateways: the LiteLLM proxy (PyPI) and the Portkey gateway (npm).

Each peer is installed once into its own folder under the cache folder (`benchmarks/.peers/` by
default, which ignores itself in git) and configured to use only the loopback stub. An install or
start that fails raises `GatewayUnavailable` with the reason, which the report shows.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from benchmarks.harness import gateways
from benchmarks.harness.gateways import Gateway, GatewayUnavailable, non_loopback_listeners
from benchmarks.harness.procstat import process_tree

INSTALL_TIMEOUT_S = 900
STARTUP_TIMEOUT_S = 90.0
LITELLM_REQUIREMENT = "litellm[proxy]"
PORTKEY_PACKAGE = "@portkey-ai/gateway"
# Node preload that turns a listen call without a host into one on 127.0.0.1 (see its header).
LOOPBACK_PRELOAD = Path(__file__).resolve().with_name("loopback_listen.cjs")
# Variables that Portkey 1.15.2 reads at start-up for provider credentials (AWS, Azure, KMS), a
# Redis cache, TLS or a log sink. The harness passes none of them, so that Portkey uses only the
# stub and no credentials of the person running the benchmark.
PORTKEY_DROPPED_PREFIXES = ("AWS_", "AZURE_", "KMS_", "IDENTITY_", "TLS_")
PORTKEY_DROPPED_NAMES = ("REDIS_CONNECTION_STRING", "APM_LOGGER", "PORT")

# Models the clients ask for; every one is routed to the stub as an Anthropic upstream.
PEER_MODELS = ("claude-sonnet-4-5", "claude-haiku-4-5")


def prepare_cache(cache_dir: Path) -> None:
    """Create the peers' folder with a `.gitignore` that ignores everything in it."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        ignore = cache_dir / ".gitignore"
        if not ignore.exists():
            ignore.write_text("*\n", encoding="utf-8")
    except OSError as error:
        raise GatewayUnavailable(f"cannot create the peer folder {cache_dir}: {error}; pass a writable --peers-dir") from error


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _peer_environment(extra: dict[str, str], dropped_prefixes: tuple[str, ...] = (),
                      dropped_names: tuple[str, ...] = ()) -> dict[str, str]:
    """Return the parent environment without provider keys or proxies, plus `extra`.

    Proxy variables are dropped and NO_PROXY covers loopback so that no HTTP client library
    routes the stub's traffic elsewhere. Variables named in `dropped_names` or starting with one
    of `dropped_prefixes` are dropped too."""
    environment = {name: value for name, value in os.environ.items()
                   if not name.lower().endswith("_proxy") and not name.endswith("_API_KEY")
                   and not name.startswith(dropped_prefixes) and name not in dropped_names}
    environment["NO_PROXY"] = environment["no_proxy"] = "127.0.0.1,localhost,::1"
    return {**environment, **extra}


def _wait_ready(process: subprocess.Popen, url: str, log_path: Path, timeout: float = STARTUP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise GatewayUnavailable(f"exited with status {process.returncode} during start-up; "
                                     f"last log lines: {_tail(log_path)}")
        try:
            if httpx.get(url, timeout=2.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    _stop(process)
    raise GatewayUnavailable(f"did not respond at {url} within {timeout:.0f} s; last log lines: {_tail(log_path)}")


def _tail(log_path: Path, lines: int = 5) -> str:
    try:
        text = log_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:]) or "(empty log)"


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def _run_install(command: list[str], log_path: Path, cwd: Path | None = None) -> None:
    with open(log_path, "ab") as log:
        try:
            result = subprocess.run(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                    timeout=INSTALL_TIMEOUT_S, check=False, env=_peer_environment({}))
        except subprocess.TimeoutExpired as error:
            raise GatewayUnavailable(f"install timed out after {INSTALL_TIMEOUT_S} s: {' '.join(command)}") from error
        except OSError as error:
            raise GatewayUnavailable(f"install failed to run {command[0]}: {error}") from error
    if result.returncode != 0:
        raise GatewayUnavailable(f"install failed with status {result.returncode} ({' '.join(command)}); "
                                 f"last log lines: {_tail(log_path)}")


# --- LiteLLM ---------------------------------------------------------------------------------------


def install_litellm(cache_dir: Path) -> tuple[Path, str]:
    """Install the LiteLLM proxy into `cache_dir/litellm` (a virtual environment) once.

    Returns the path of its `litellm` command and the installed version."""
    cache_dir = cache_dir.resolve()
    prepare_cache(cache_dir)
    venv = cache_dir / "litellm"
    command = venv / "bin" / "litellm"
    version = _litellm_version(venv)
    if not command.exists() or version is None:
        log_path = cache_dir / "litellm-install.log"
        if not (venv / "bin" / "python").exists():
            _run_install([sys.executable, "-m", "venv", str(venv)], log_path)
        _run_install([str(venv / "bin" / "pip"), "install", "--quiet", LITELLM_REQUIREMENT], log_path)
        version = _litellm_version(venv)
    if not command.exists() or version is None:
        raise GatewayUnavailable(f"the install finished but {command} or its version is missing")
    return command, version


def _litellm_version(venv: Path) -> str | None:
    python = venv / "bin" / "python"
    if not python.exists():
        return None
    result = subprocess.run([str(python), "-c", "from importlib.metadata import version; print(version('litellm'))"],
                            capture_output=True, text=True, timeout=60, check=False)
    return result.stdout.strip() or None


def litellm_config(stub_url: str) -> str:
    """Return a proxy config that routes every benchmark model to the stub as an Anthropic upstream."""
    lines = ["model_list:"]
    for model in PEER_MODELS:
        lines += [
            f"  - model_name: {model}",
            "    litellm_params:",
            f"      model: anthropic/{model}",
            f"      api_base: {stub_url}",
            "      api_key: stub-key-not-secret",
        ]
    # NOTE: telemetry is a no-op flag in LiteLLM 1.x; the model price map stays local through
    # LITELLM_LOCAL_MODEL_COST_MAP in the environment (see start_litellm).
    lines += ["litellm_settings:", "  drop_params: false", "general_settings: {}"]
    return "\n".join(lines) + "\n"


def start_litellm(workdir: Path, stub_url: str, cache_dir: Path) -> Gateway:
    command, version = install_litellm(cache_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "litellm.yaml"
    config_path.write_text(litellm_config(stub_url), encoding="utf-8")
    port = _free_port()
    arguments = [str(command), "--config", str(config_path), "--host", "127.0.0.1", "--port", str(port),
                 "--num_workers", "1"]
    log_path = workdir / "litellm.log"
    # The proxy refuses to start without a master key; a random one lives only for this run.
    master_key = "sk-bench-" + secrets.token_hex(24)
    environment = _peer_environment({"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
                                     "LITELLM_MASTER_KEY": master_key})
    with open(log_path, "wb") as log:
        process = subprocess.Popen(arguments, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env=environment)
    base_url = f"http://127.0.0.1:{port}"
    _wait_ready(process, base_url + "/health/liveliness", log_path)
    return Gateway("litellm", version, base_url, headers={"authorization": f"Bearer {master_key}"}, command=" ".join(["litellm", *arguments[1:]]).replace(str(workdir) + "/", ""),
                   root_pid=process.pid, stop=lambda: _stop(process))


# --- Portkey ---------------------------------------------------------------------------------------


def install_portkey(cache_dir: Path) -> tuple[Path, str]:
    """Install the Portkey gateway into `cache_dir/portkey` with npm once.

    Returns the path of its server script and the installed version."""
    cache_dir = cache_dir.resolve()
    prepare_cache(cache_dir)
    folder = cache_dir / "portkey"
    package_dir = folder / "node_modules" / "@portkey-ai" / "gateway"
    script = package_dir / "build" / "start-server.js"
    if not script.exists():
        if shutil.which("npm") is None or shutil.which("node") is None:
            raise GatewayUnavailable("node and npm are not installed")
        folder.mkdir(parents=True, exist_ok=True)
        _run_install(["npm", "install", "--no-audit", "--no-fund", PORTKEY_PACKAGE], cache_dir / "portkey-install.log",
                     cwd=folder)
    if not script.exists():
        raise GatewayUnavailable(f"the npm install finished but {script} is missing")
    version = json.loads((package_dir / "package.json").read_text(encoding="utf-8")).get("version", "unknown")
    return script, version


def start_portkey(workdir: Path, stub_url: str, cache_dir: Path) -> Gateway:
    """Start the Portkey gateway on 127.0.0.1 and check its sockets before any request.

    Portkey 1.15.2 has no listen-address option, so Node runs it with LOOPBACK_PRELOAD. If a TCP
    listener of its process tree is not on loopback, Portkey is stopped and GatewayUnavailable
    names the addresses."""
    script, version = install_portkey(cache_dir)
    node = shutil.which("node")
    if node is None:
        raise GatewayUnavailable("node is not installed; install Node.js 18.14.1 or later to run the Portkey gateway")
    if shutil.which("ss") is None:
        raise GatewayUnavailable("ss (iproute2) is not installed, so the harness cannot check that Portkey "
                                 "listens on loopback only; install iproute2")
    workdir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    arguments = [node, "--require", str(LOOPBACK_PRELOAD), str(script), f"--port={port}", "--headless"]
    # Portkey 1.15.2 sends requests to a loopback or private `x-portkey-custom-host` only if the host
    # is in TRUSTED_CUSTOM_HOSTS, so the list names the stub's address alone.
    environment = _peer_environment({"TRUSTED_CUSTOM_HOSTS": "127.0.0.1"}, PORTKEY_DROPPED_PREFIXES,
                                    PORTKEY_DROPPED_NAMES)
    log_path = workdir / "portkey.log"
    with open(log_path, "wb") as log:
        # A session of its own, so that stopping it also stops any process it started.
        process = subprocess.Popen(arguments, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env=environment,
                                   start_new_session=True)
    stop = functools.partial(_stop_session, process)
    try:
        _wait_listening(process, port, log_path)
        listeners = non_loopback_listeners(process_tree(process.pid))
        if listeners:
            raise GatewayUnavailable(f"listened on a non-loopback address ({', '.join(listeners)}) although it "
                                     f"ran with {LOOPBACK_PRELOAD.name}; stopped it")
        base_url = f"http://127.0.0.1:{port}"
        _wait_ready(process, base_url + "/", log_path)
    except GatewayUnavailable:
        stop()
        raise
    headers = {"x-portkey-provider": "anthropic", "x-portkey-custom-host": stub_url + "/v1"}
    command = (f"node --require benchmarks/harness/{LOOPBACK_PRELOAD.name} {PORTKEY_PACKAGE}/build/{script.name} "
               f"--port={port} --headless")
    return Gateway("portkey", version, base_url, headers=headers, command=command, root_pid=process.pid, stop=stop)


def _wait_listening(process: subprocess.Popen, port: int, log_path: Path,
                    timeout: float = STARTUP_TIMEOUT_S) -> None:
    """Wait until the process tree of `process` has a TCP listener on `port`, without connecting to it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise GatewayUnavailable(f"exited with status {process.returncode} during start-up; "
                                     f"last log lines: {_tail(log_path)}")
        addresses = gateways.listening_addresses(process_tree(process.pid))
        if any(address.rsplit(":", 1)[-1] == str(port) for address in addresses):
            return
        time.sleep(0.25)
    raise GatewayUnavailable(f"did not listen on port {port} within {timeout:.0f} s; "
                             f"last log lines: {_tail(log_path)}")


def _stop_session(process: subprocess.Popen) -> None:
    """Stop `process` and every process in its session (started with `start_new_session`)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if process.poll() is None:
        process.wait(timeout=5)
