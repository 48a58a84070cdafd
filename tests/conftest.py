"""Fixtures that run the real thing: `leangate stub-upstream` and `leangate serve` as processes on
free loopback ports, talked to over HTTP."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from pathlib import Path
from typing import Iterator

import pytest

from engine.localrun import LocalService, start_gateway as start_gateway_process, start_stub

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"

# Team files that route every tier through one adapter kind, so each adapter is tested end to end.
ADAPTER_TEAMS = {
    "via-anthropic": "anthropic",
    "via-openai": "openai",
    "via-azure": "azure",
    "via-ollama": "ollama",
    "via-compatible": "compatible",
}

# Provider keys for the gateway under test; tests check that none of them leaks into logs.
TEST_SECRETS = {
    "ANTHROPIC_API_KEY": "sk-ant-test-secret-value",
    "OPENAI_API_KEY": "sk-openai-test-secret-value",
    "AZURE_OPENAI_API_KEY": "azure-test-secret-value",
}


def wait_for_decisions(path: Path, count: int, timeout: float = 10.0) -> list[dict]:
    """Return the decision records in `path` once there are at least `count` of them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            if len(lines) >= count:
                return lines
        time.sleep(0.1)
    raise AssertionError(f"expected {count} decision records in {path}")


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


def launch_gateway(workdir: Path, stub: LocalService, edit=None, env: dict[str, str] | None = None) -> LocalService:
    policy_dir = copy_policies(workdir / "policies")
    if edit is not None:
        edit(policy_dir)
    process = start_gateway_process(workdir, policy_dir, stub.url, env={**TEST_SECRETS, **(env or {})})
    process.extra["policies"] = policy_dir
    process.extra["decisions"] = workdir / "decisions.jsonl"
    return process


def recorded_bodies(record_dir: Path, needle: str, count: int, timeout: float = 10.0) -> list[dict]:
    """Return the recorded upstream bodies that contain `needle`, in the order the stub received them."""
    deadline = time.monotonic() + timeout
    while True:
        found = []
        for path in sorted(record_dir.glob("*.json")):
            if path.name.endswith(".meta.json"):
                continue
            raw = path.read_text(encoding="utf-8")
            if needle in raw:
                found.append(json.loads(raw))
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@contextlib.contextmanager
def recording_gateway(workdir: Path) -> Iterator[LocalService]:
    """Start a stub with --prompt-cache and --record, and a gateway on the shipped policies in front of it.

    The gateway's `extra["stub"]` is the stub, and the stub's `extra["record"]` is its record folder."""
    record = workdir / "record"
    stub = start_stub(workdir / "stub", "--prompt-cache", "--record", str(record))
    stub.extra["record"] = record
    gateway = None
    try:
        gateway = launch_gateway(workdir / "gateway", stub)
        gateway.extra["stub"] = stub
        yield gateway
    finally:
        if gateway is not None:
            gateway.stop()
        stub.stop()


@pytest.fixture(scope="session")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalService]:
    workdir = tmp_path_factory.mktemp("stub")
    record = workdir / "record"
    process = start_stub(workdir, "--record", str(record))
    process.extra["record"] = record
    yield process
    process.stop()


@pytest.fixture
def start_gateway(tmp_path: Path, stub: LocalService) -> Iterator:
    """Start a gateway on a copy of the shipped policies (plus the adapter teams); `edit(policy_dir)`
    may change the copy before the start."""
    started: list[LocalService] = []

    def start(edit=None, env: dict[str, str] | None = None, name: str = "gateway") -> LocalService:
        process = launch_gateway(tmp_path / name, stub, edit, env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory, stub: LocalService) -> Iterator[LocalService]:
    """One gateway on the shipped policies for the whole session, for tests that do not edit policy."""
    process = launch_gateway(tmp_path_factory.mktemp("gateway"), stub)
    yield process
    process.stop()
