"""Fixtures that run the real thing: `leangate stub-upstream` and `leangate serve` as processes on
free loopback ports, talked to over HTTP."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
STARTUP_TIMEOUT_S = 30.0

# Every provider kind of the default policy, pointed at the stub by these variables.
PROVIDER_BASE_URL_VARIABLES = (
    "LEANGATE_ANTHROPIC_BASE_URL",
    "LEANGATE_OPENAI_BASE_URL",
    "LEANGATE_AZURE_OPENAI_BASE_URL",
    "LEANGATE_OLLAMA_BASE_URL",
    "LEANGATE_OPENAI_COMPATIBLE_BASE_URL",
)

# Team files that route every tier through one adapter kind, so each adapter is tested end to end.
ADAPTER_TEAMS = {
    "via-anthropic": "anthropic",
    "via-openai": "openai",
    "via-azure": "azure",
    "via-ollama": "ollama",
    "via-compatible": "compatible",
}


@dataclass
class Process:
    url: str
    process: subprocess.Popen
    log_path: Path
    workdir: Path
    extra: dict = field(default_factory=dict)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""


def _leangate() -> list[str]:
    return [sys.executable, "-m", "engine"]


def start_process(args: list[str], workdir: Path, name: str, env: dict[str, str] | None = None,
                  health_path: str = "/health/live") -> Process:
    """Start `leangate ARGS --port 0 --port-file F` and wait until it answers on `health_path`."""
    workdir.mkdir(parents=True, exist_ok=True)
    port_file = workdir / f"{name}.port"
    port_file.unlink(missing_ok=True)
    log_path = workdir / f"{name}.log"
    log_handle = open(log_path, "wb")
    process = subprocess.Popen(
        [*_leangate(), *args, "--port", "0", "--port-file", str(port_file)],
        cwd=str(workdir),
        stdout=log_handle,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    url = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{log_path.read_text(errors='replace')}")
        if url is None and port_file.exists() and port_file.read_text().strip():
            url = f"http://127.0.0.1:{port_file.read_text().strip()}"
        if url is not None:
            try:
                if httpx.get(url + health_path, timeout=1.0).status_code == 200:
                    return Process(url, process, log_path, workdir)
            except httpx.HTTPError:
                pass
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{name} did not start within {STARTUP_TIMEOUT_S}s:\n{log_path.read_text(errors='replace')}")


def write_adapter_teams(policy_dir: Path) -> None:
    teams = policy_dir / "teams"
    teams.mkdir(exist_ok=True)
    for team, provider in ADAPTER_TEAMS.items():
        model_fast = "gpt-4o-mini" if provider != "anthropic" else "claude-haiku-4-5"
        model_strong = "gpt-4o" if provider != "anthropic" else "claude-sonnet-4-5"
        (teams / f"{team}.yaml").write_text(
            "extends: default\n"
            "tiers:\n"
            f"  - {{name: fast, provider: {provider}, model: {model_fast}, below: 0.35}}\n"
            f"  - {{name: strong, provider: {provider}, model: {model_strong}}}\n",
            encoding="utf-8",
        )


def copy_policies(destination: Path) -> Path:
    shutil.copytree(POLICIES, destination, dirs_exist_ok=True)
    write_adapter_teams(destination)
    return destination


@pytest.fixture(scope="session")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    workdir = tmp_path_factory.mktemp("stub")
    record = workdir / "record"
    process = start_process(["stub-upstream", "--record", str(record)], workdir, "stub", health_path="/health")
    process.extra["record"] = record
    yield process
    process.stop()


def stub_env(stub_url: str, workdir: Path) -> dict[str, str]:
    env = {name: stub_url for name in PROVIDER_BASE_URL_VARIABLES}
    env["LEANGATE_DECISION_LOG"] = str(workdir / "decisions.jsonl")
    env["ANTHROPIC_API_KEY"] = "sk-ant-test-secret-value"
    env["OPENAI_API_KEY"] = "sk-openai-test-secret-value"
    env["AZURE_OPENAI_API_KEY"] = "azure-test-secret-value"
    return env


@pytest.fixture
def start_gateway(tmp_path: Path, stub: Process) -> Iterator:
    """Start a gateway on a copy of the shipped policies (plus the adapter teams); `edit(policy_dir)`
    may change the copy before the start."""
    started: list[Process] = []

    def start(edit=None, env: dict[str, str] | None = None, name: str = "gateway") -> Process:
        workdir = tmp_path / name
        policy_dir = copy_policies(workdir / "policies")
        if edit is not None:
            edit(policy_dir)
        process = start_process(["serve", "--policies", str(policy_dir)], workdir, name,
                                env={**stub_env(stub.url, workdir), **(env or {})})
        process.extra["policies"] = policy_dir
        process.extra["decisions"] = workdir / "decisions.jsonl"
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory, stub: Process) -> Iterator[Process]:
    """One gateway on the shipped policies for the whole session, for tests that do not edit policy."""
    workdir = tmp_path_factory.mktemp("gateway")
    policy_dir = copy_policies(workdir / "policies")
    process = start_process(["serve", "--policies", str(policy_dir)], workdir, "gateway", env=stub_env(stub.url, workdir))
    process.extra["policies"] = policy_dir
    process.extra["decisions"] = workdir / "decisions.jsonl"
    yield process
    process.stop()
