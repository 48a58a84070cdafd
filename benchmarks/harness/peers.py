"""Install and start the peer gateways: the LiteLLM proxy (PyPI) and the Portkey gateway (npm).

Each peer is installed once into its own folder under the cache folder (`benchmarks/.peers/` by
default, which ignores itself in git) and configured to use only the loopback stub. An install or
start that fails raises `GatewayUnavailable` with the reason, which the report shows.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from benchmarks.harness.gateways import Gateway, GatewayUnavailable

INSTALL_TIMEOUT_S = 900
STARTUP_TIMEOUT_S = 90.0
LITELLM_REQUIREMENT = "litellm[proxy]"
PORTKEY_PACKAGE = "@portkey-ai/gateway"

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


def _peer_environment(extra: dict[str, str]) -> dict[str, str]:
    """Return the parent environment without provider keys or proxies, plus `extra`.

    Proxy variables are dropped and NO_PROXY covers loopback so that no HTTP client library
    routes the stub's traffic elsewhere."""
    environment = {name: value for name, value in os.environ.items()
                   if not name.lower().endswith("_proxy") and not name.endswith("_API_KEY")}
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


def portkey_listen_option(script: Path) -> str | None:
    """Return the command-line option or variable that sets the listen address of the Portkey
    server script, or None when it has none.

    The start script of 1.15.2 reads only `--port=` and `--headless` from its arguments and passes
    just a port to the Node server, which then listens on every interface."""
    source = script.read_text(encoding="utf-8", errors="replace")
    for option in ("--host=", "--hostname="):
        if f'"{option}' in source:
            return option
    if re.search(r"process\.env\.(HOST|HOSTNAME|BIND_ADDRESS)\b", source):
        return "HOST"
    return None


def start_portkey(workdir: Path, stub_url: str, cache_dir: Path) -> Gateway:
    script, version = install_portkey(cache_dir)
    option = portkey_listen_option(script)
    if option is None:
        raise GatewayUnavailable(
            f"{PORTKEY_PACKAGE} {version} has no option for its listen address (its start script reads only "
            "--port= and --headless), so it would listen on every interface; not started")
    # TODO: this branch has never run, because no version installed so far offered a listen address.
    # Check the option's syntax against that version's start script before trusting it.
    workdir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    arguments = ["node", str(script), f"--port={port}", "--headless"]
    extra = {"TRUSTED_CUSTOM_HOSTS": "127.0.0.1"}
    if option == "HOST":
        extra["HOST"] = "127.0.0.1"
    else:
        arguments.append(f"{option}127.0.0.1")
    log_path = workdir / "portkey.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(arguments, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                                   env=_peer_environment(extra))
    base_url = f"http://127.0.0.1:{port}"
    _wait_ready(process, base_url + "/", log_path)
    headers = {"x-portkey-provider": "anthropic", "x-portkey-custom-host": stub_url + "/v1"}
    return Gateway("portkey", version, base_url, headers=headers, command=" ".join(arguments[:1] + arguments[2:]),
                   root_pid=process.pid, stop=lambda: _stop(process))
