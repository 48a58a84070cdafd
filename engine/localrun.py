"""Run leangate subcommands as local processes on free loopback ports, for the demo, the tests and
the benchmarks. Each process writes its port to a file once it listens, and callers wait for a
health endpoint to respond before they send traffic."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

STARTUP_TIMEOUT_S = 30.0

# The default policy reads each provider's base URL from these variables.
PROVIDER_BASE_URL_VARIABLES = (
    "LEANGATE_ANTHROPIC_BASE_URL",
    "LEANGATE_OPENAI_BASE_URL",
    "LEANGATE_AZURE_OPENAI_BASE_URL",
    "LEANGATE_OLLAMA_BASE_URL",
    "LEANGATE_OPENAI_COMPATIBLE_BASE_URL",
)


class ServiceError(RuntimeError):
    """Raised when a local service exits early or its health check does not respond in time."""


class LocalService:
    """A `leangate ARGS --port 0 --port-file F` process, started and ready to serve."""

    def __init__(self, name: str, args: list[str], workdir: Path, *, env: dict[str, str] | None = None,
                 health_path: str = "/health/live", timeout: float = STARTUP_TIMEOUT_S):
        self.name = name
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        port_file = workdir / f"{name}.port"
        port_file.unlink(missing_ok=True)
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "engine", *args, "--port", "0", "--port-file", str(port_file)],
            cwd=str(workdir), stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        )
        self.url = ""
        self.extra: dict[str, object] = {}  # callers keep related paths here (record folder, policies)
        self._wait(port_file, health_path, timeout)

    def _wait(self, port_file: Path, health_path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._log.close()
                raise ServiceError(f"{self.name} exited with status {self.process.returncode}:\n{self.log()}")
            port = port_file.read_text().strip() if port_file.exists() else ""
            if port:
                self.url = f"http://127.0.0.1:{port}"
                try:
                    if httpx.get(self.url + health_path, timeout=1.0).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        self.stop()
        raise ServiceError(f"{self.name}: {health_path} did not respond within {timeout:.0f}s; see the log {self.log_path}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if not self._log.closed:
            self._log.close()


def start_stub(workdir: Path, *args: str, name: str = "stub") -> LocalService:
    """Start `leangate stub-upstream` with extra arguments (e.g. `--prompt-cache`, `--record DIR`)."""
    return LocalService(name, ["stub-upstream", *args], workdir, health_path="/health")


def start_gateway(workdir: Path, policy_dir: Path, upstream_url: str, *, env: dict[str, str] | None = None,
                  name: str = "gateway") -> LocalService:
    """Start `leangate serve` on `policy_dir` with every provider of the default policy pointed at
    `upstream_url` and the decision log in `workdir/decisions.jsonl`."""
    variables = {variable: upstream_url for variable in PROVIDER_BASE_URL_VARIABLES}
    variables["LEANGATE_DECISION_LOG"] = str(workdir / "decisions.jsonl")
    return LocalService(name, ["serve", "--policies", str(policy_dir)], workdir, env={**variables, **(env or {})},
                        health_path="/health/ready")
