"""Run the gateway comparison: scenarios, latency passes and load, one gateway after another.

Each gateway gets its own `leangate stub-upstream --prompt-cache --latency-ms 50 --record DIR`, so
one gateway's prompt-cache writes never turn into another's cache reads. Billed tokens come from
the stub's record: the bodies it received are replayed in order through the stub's own
`PromptCacheSimulator`, which gives the same split the stub reported, whatever a gateway does to
the usage on its way back. The relayed usage is compared with it and a difference is flagged.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from benchmarks.harness import peers, scenarios
from benchmarks.harness.gateways import (Gateway, GatewayUnavailable, direct, leangate, non_loopback_connections,
                                         non_loopback_listeners)
from benchmarks.harness.prices import PRICES, PRICES_DATE, cost_usd
from benchmarks.harness.procstat import cpu_seconds, peak_memory_mib
from engine.localrun import LocalService, ServiceError, start_stub
from engine.stub.prompt_cache import PromptCacheError, PromptCacheSimulator

REPOSITORY = Path(__file__).resolve().parents[2]
ALL_GATEWAYS = ("direct", "leangate", "leangate-lexical", "litellm", "portkey")
REQUEST_TIMEOUT_S = 120.0
ANTHROPIC_VERSION = "2023-06-01"

Progress = Callable[[str], None]


@dataclass
class BenchOptions:
    workdir: Path
    cache_dir: Path = REPOSITORY / "benchmarks" / ".peers"
    gateways: tuple[str, ...] = ALL_GATEWAYS
    passes: int = 10                 # latency passes over every scenario, after the billing pass
    session_length: int = scenarios.SESSION_REQUESTS
    clients: int = 50
    load_seconds: float = 8.0
    latency_ms: int = 50
    smoke: bool = False


def smoke_options(workdir: Path) -> BenchOptions:
    """Return options for one short pass through leangate and the direct baseline, with no peer installs."""
    return BenchOptions(workdir=workdir, gateways=("direct", "leangate"), passes=1, session_length=6,
                        load_seconds=2.0, smoke=True)


def run_benchmark(options: BenchOptions, progress: Progress = lambda message: None) -> dict[str, Any]:
    """Run every selected gateway and return the results as a JSON-ready dict."""
    began = time.monotonic()
    unknown = [name for name in options.gateways if name not in ALL_GATEWAYS]
    if unknown:
        raise ValueError(f"unknown gateway {unknown[0]!r}; choose from {', '.join(ALL_GATEWAYS)}")
    options.workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "options": {"passes": options.passes, "session_length": options.session_length, "clients": options.clients,
                    "load_seconds": options.load_seconds, "stub_latency_ms": options.latency_ms,
                    "smoke": options.smoke},
        "prices": {"date": PRICES_DATE, "per_million_tokens": {pattern: vars(price) for pattern, price in PRICES.items()}},
        "scenarios": [],
        "gateways": {},
    }
    scenario_list = scenarios.build_scenarios(options.session_length)
    results["scenarios"] = [{"key": scenario.key, "title": scenario.title, "requests": len(scenario.requests)}
                            for scenario in scenario_list]
    for name in options.gateways:
        progress(f"{name}: starting")
        results["gateways"][name] = _run_gateway(name, options, scenario_list, progress)
    results["machine"]["load_average_end"] = os.getloadavg()
    results["elapsed_s"] = time.monotonic() - began
    return results


def machine_info() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=False).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    node = shutil.which("node")
    node_version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10,
                                  check=False).stdout.strip() if node else "not installed"
    return {"cpu_model": model, "cores": os.cpu_count(), "python": platform.python_version(), "node": node_version,
            "kernel": platform.release(), "load_average_start": os.getloadavg()}


# --- one gateway -----------------------------------------------------------------------------------


def _record_root() -> Path:
    # The stub writes two files a request, thousands of them under load: keep them in memory.
    shm = Path("/dev/shm")
    return Path(tempfile.mkdtemp(prefix="leangate-bench-", dir=shm if shm.is_dir() else None))


def _start_stub(workdir: Path, options: BenchOptions, record_dir: Path) -> LocalService:
    arguments = ("--prompt-cache", "--latency-ms", str(options.latency_ms), "--record", str(record_dir),
                 "--log-level", "warning")
    try:
        return start_stub(workdir, *arguments, name="stub")
    except ServiceError:
        # One retry: on a shared machine a start can fail for reasons outside the harness (a
        # process killed from outside, a slow start under load).
        return start_stub(workdir, *arguments, name="stub")


def _start_gateway(name: str, workdir: Path, stub: LocalService, cache_dir: Path) -> Gateway:
    if name == "direct":
        return direct(stub)
    if name in ("leangate", "leangate-lexical"):
        try:
            return leangate(workdir, stub, variant=name)
        except ServiceError as error:
            raise GatewayUnavailable(str(error)) from error
    if name == "litellm":
        return peers.start_litellm(workdir, stub.url, cache_dir)
    return peers.start_portkey(workdir, stub.url, cache_dir)


def _run_gateway(name: str, options: BenchOptions, scenario_list: list[scenarios.Scenario],
                 progress: Progress) -> dict[str, Any]:
    workdir = options.workdir / name
    record_dir = _record_root()
    result: dict[str, Any] = {"name": name, "status": "ok", "reason": None, "egress": [], "listeners": []}
    try:
        stub = _start_stub(workdir, options, record_dir)
    except ServiceError as error:
        shutil.rmtree(record_dir, ignore_errors=True)
        result.update(status="failed", reason=f"the stub upstream did not start: {error}")
        progress(f"{name}: failed: {result['reason']}")
        return result
    gateway: Gateway | None = None
    try:
        started = time.monotonic()
        gateway = _start_gateway(name, workdir, stub, options.cache_dir)
        result.update(version=gateway.version, command=gateway.command, startup_s=time.monotonic() - started,
                      memory_after_start_mib=peak_memory_mib(gateway.pids()))
        listeners = non_loopback_listeners(gateway.pids()) if name != "direct" else []
        if listeners:
            result.update(status="unavailable", listeners=listeners,
                          reason=f"listened on a non-loopback address ({', '.join(listeners)}); stopped it")
            return result

        progress(f"{name}: billing pass over {len(scenario_list)} scenarios")
        result["scenarios"] = _billing_pass(gateway, scenario_list, record_dir)
        if name in ("leangate", "leangate-lexical"):
            sent = sum(len(scenario.requests) for scenario in scenario_list)
            decisions = _decisions(workdir / "decisions.jsonl", expected=sent)
            # The session is the last scenario, so its decisions are the last rows of the billing pass.
            result["session_decisions"] = decisions[sent - len(scenario_list[-1].requests):sent]
        result["egress"] += non_loopback_connections(gateway.pids())

        progress(f"{name}: {options.passes} latency passes")
        latencies = _latency_passes(gateway, scenario_list, options.passes)
        for key, values in latencies.items():
            result["scenarios"][key]["latencies_ms"] = values
        if name in ("leangate", "leangate-lexical"):
            result["pipeline_ms"] = _pipeline_times(workdir / "decisions.jsonl")

        result["load"] = {}
        for label, stream, unique, bypass in scenarios.LOAD_RUNS:
            progress(f"{name}: load, {options.clients} clients, {label}, {options.load_seconds:.0f} s")
            result["load"][label] = _load(gateway, stream, unique, bypass, options, workdir, result["egress"])
        result["peak_memory_mib"] = peak_memory_mib(gateway.pids())
        result["egress"] = sorted(set(result["egress"]))
    except GatewayUnavailable as error:
        result.update(status="unavailable", reason=str(error))
        progress(f"{name}: unavailable: {error}")
    finally:
        if gateway is not None:
            gateway.stop()
        stub.stop()
        shutil.rmtree(record_dir, ignore_errors=True)
    return result


# --- scenarios -------------------------------------------------------------------------------------


def _client_headers(gateway: Gateway, request: scenarios.BenchRequest, bypass_cache: bool) -> dict[str, str]:
    headers = {"anthropic-version": ANTHROPIC_VERSION, **request.headers, **gateway.headers}
    if bypass_cache:
        headers["cache-control"] = "no-cache"
    return headers


def _send(client: httpx.Client, gateway: Gateway, request: scenarios.BenchRequest,
          bypass_cache: bool) -> tuple[httpx.Response | None, float, str | None]:
    started = time.perf_counter()
    try:
        response = client.post(gateway.url, json=request.body, headers=_client_headers(gateway, request, bypass_cache))
    except httpx.HTTPError as error:
        return None, time.perf_counter() - started, f"{type(error).__name__}: {error}"
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        return response, elapsed, f"HTTP {response.status_code}: {response.text[:240]}"
    return response, elapsed, None


def _record_files(record_dir: Path) -> list[Path]:
    return sorted(path for path in record_dir.glob("*.json") if not path.name.endswith(".meta.json"))


def _billing_pass(gateway: Gateway, scenario_list: list[scenarios.Scenario], record_dir: Path) -> dict[str, Any]:
    """Send every scenario once and price what reached the stub.

    Each scenario is priced from a cold prompt cache, so its cost does not depend on the scenarios
    before it. A second simulator that runs through the whole pass, as the stub's own cache does,
    checks the usage that the gateway relayed."""
    continuous = PromptCacheSimulator()
    results: dict[str, Any] = {}
    with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
        for scenario in scenario_list:
            cold = PromptCacheSimulator()
            as_stub_saw = _empty_usage()
            relayed = _empty_usage()
            outcome: dict[str, Any] = {"error": None, "tiers": [], "models_reported": [], "cache_hits": 0,
                                       "per_request_cost": [], "upstream_requests": 0, "billed": _empty_usage(),
                                       "first_latencies_ms": []}
            for request in scenario.requests:
                before = len(_record_files(record_dir))
                response, elapsed, error = _send(client, gateway, request, bypass_cache=False)
                outcome["first_latencies_ms"].append(None if error else elapsed * 1000)
                if error and outcome["error"] is None:
                    outcome["error"] = error
                if response is None or response.status_code != 200:
                    outcome["per_request_cost"].append(None)
                    continue
                _collect_response(response, outcome, relayed)
                # Price this request's upstream calls: none on a cache hit, several after a retry.
                files = _record_files(record_dir)[before:]
                billed = _price_records(files, cold)
                _add_usage(as_stub_saw, _price_records(files, continuous))
                billed["output"] = _output_tokens(response) if files else 0
                _add_usage(outcome["billed"], billed)
                outcome["upstream_requests"] += len(files)
                outcome["per_request_cost"].append(_cost(billed))
            outcome["relayed"] = relayed
            outcome["ok"] = outcome["error"] is None
            costs = outcome["per_request_cost"]
            outcome["cost_usd"] = None if None in costs else sum(costs)
            billed = outcome["billed"]
            # The relayed usage of a cache hit describes the cached response, not an upstream call, so skip the check.
            outcome["usage_relayed_intact"] = None if outcome["cache_hits"] else all(
                relayed[key] == as_stub_saw[key] for key in ("uncached", "cache_read", "cache_write_5m", "cache_write_1h"))
            results[scenario.key] = outcome
    return results


def _empty_usage() -> dict[str, int]:
    return {"uncached": 0, "cache_read": 0, "cache_write_5m": 0, "cache_write_1h": 0, "output": 0, "by_model": {}}


def _add_usage(total: dict[str, Any], part: dict[str, Any]) -> None:
    for key in ("uncached", "cache_read", "cache_write_5m", "cache_write_1h", "output"):
        total[key] += part.get(key, 0)
    for model, count in part.get("by_model", {}).items():
        total["by_model"][model] = total["by_model"].get(model, 0) + count


def _collect_response(response: httpx.Response, outcome: dict[str, Any], relayed: dict[str, Any]) -> None:
    tier = response.headers.get("x-leangate-tier")
    if tier:
        outcome["tiers"].append(tier)
    if response.headers.get("x-leangate-cache") == "hit":
        outcome["cache_hits"] += 1
    try:
        body = response.json()
    except ValueError:
        return
    model = body.get("model")
    if model and model not in outcome["models_reported"]:
        outcome["models_reported"].append(model)
    usage = body.get("usage") or {}
    creation = usage.get("cache_creation") or {}
    relayed["uncached"] += usage.get("input_tokens") or 0
    relayed["cache_read"] += usage.get("cache_read_input_tokens") or 0
    five_minutes = creation.get("ephemeral_5m_input_tokens")
    if five_minutes is None:
        # Without the split, every write counts as a 5-minute write, Anthropic's default TTL.
        five_minutes = usage.get("cache_creation_input_tokens") or 0
    relayed["cache_write_5m"] += five_minutes
    relayed["cache_write_1h"] += creation.get("ephemeral_1h_input_tokens") or 0
    relayed["output"] += usage.get("output_tokens") or 0


def _output_tokens(response: httpx.Response) -> int:
    try:
        return int((response.json().get("usage") or {}).get("output_tokens") or 0)
    except (ValueError, TypeError, AttributeError):
        return 0


def _price_records(files: list[Path], simulator: PromptCacheSimulator) -> dict[str, Any]:
    """Replay recorded Messages bodies through the simulator; return their usage split and the
    number of upstream calls per model."""
    usage = _empty_usage()
    for path in files:
        meta = json.loads(path.with_name(path.stem + ".meta.json").read_text(encoding="utf-8"))
        if meta.get("input_tokens") is None:
            continue  # the stub rejected this body, so it billed nothing
        body = json.loads(path.read_bytes())
        model = str(body.get("model"))
        if not path.stem.endswith("-anthropic"):
            # NOTE: every gateway here calls the stub's Messages route; another protocol is
            # priced as uncached input because the replay only covers Anthropic caching.
            usage["uncached"] += int(meta["input_tokens"])
        else:
            try:
                split = simulator.anthropic_usage(body)
            except PromptCacheError:
                continue
            usage["uncached"] += split.input_tokens
            usage["cache_read"] += split.cache_read_input_tokens
            usage["cache_write_5m"] += split.ephemeral_5m_input_tokens
            usage["cache_write_1h"] += split.ephemeral_1h_input_tokens
        usage["by_model"][model] = usage["by_model"].get(model, 0) + 1
    return usage


def _cost(usage: dict[str, Any]) -> float | None:
    models = list(usage["by_model"])
    if not models:
        return 0.0
    # NOTE: a request that reached the stub more than once (a retry or a fallback) is priced at the
    # first model's prices, even if a fallback used another model.
    return cost_usd(models[0], uncached=usage["uncached"], cache_write_5m=usage["cache_write_5m"],
                    cache_write_1h=usage["cache_write_1h"], cache_read=usage["cache_read"], output=usage["output"])


def _latency_passes(gateway: Gateway, scenario_list: list[scenarios.Scenario], passes: int) -> dict[str, list[float]]:
    """Time every request of every scenario `passes` times, past the gateway's response cache."""
    latencies: dict[str, list[float]] = {scenario.key: [] for scenario in scenario_list}
    with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
        for _ in range(passes):
            for scenario in scenario_list:
                for request in scenario.requests:
                    response, elapsed, error = _send(client, gateway, request, bypass_cache=True)
                    if error is None:
                        latencies[scenario.key].append(elapsed * 1000)
    return latencies


def _decision_rows(decision_log: Path) -> list[dict[str, Any]]:
    try:
        lines = decision_log.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    rows = []
    for line in lines:
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def _pipeline_times(decision_log: Path) -> list[float]:
    """Return leangate's own pipeline time (`pipeline_ms`) of every request in its decision log."""
    values = [row.get("pipeline_ms") for row in _decision_rows(decision_log)]
    return [float(value) for value in values if isinstance(value, (int, float))]


def _decisions(decision_log: Path, expected: int, wait_s: float = 5.0) -> list[dict[str, Any]]:
    """Return the tier, request class and number of forwarded tools of each logged request.

    The gateway writes a decision after its response, so wait up to `wait_s` for `expected` rows."""
    deadline = time.monotonic() + wait_s
    rows = _decision_rows(decision_log)
    while len(rows) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
        rows = _decision_rows(decision_log)
    summary = []
    for row in rows:
        tools = row.get("tools") or {}
        kept = tools.get("kept")
        summary.append({"tier": (row.get("tier") or {}).get("tier"), "class": tools.get("class"),
                        "tools": len(kept) if isinstance(kept, list) else None})
    return summary


# --- load ------------------------------------------------------------------------------------------


def _load(gateway: Gateway, stream: bool, unique: bool, bypass_cache: bool, options: BenchOptions, workdir: Path,
          egress: list[str]) -> dict[str, Any]:
    body_path = workdir / f"load-{'stream' if stream else 'plain'}-{'unique' if unique else 'repeated'}.json"
    # A fresh run tag per load run: the request counter restarts at 0 in each one, and a response
    # cached in an earlier run must not serve a later run's "unique" text.
    body = scenarios.load_request(stream, unique, run=f"{'stream' if stream else 'plain'}-{time.time_ns()}")
    body_path.write_text(json.dumps(body), encoding="utf-8")
    headers_path = workdir / "load-headers.json"
    headers = {"anthropic-version": ANTHROPIC_VERSION, **gateway.headers}
    if bypass_cache:
        headers["cache-control"] = "no-cache"
    headers_path.write_text(json.dumps(headers), encoding="utf-8")
    headers_path.chmod(0o600)
    command = [sys.executable, "-m", "benchmarks.harness.load", gateway.url, "--body-file", str(body_path),
               "--headers-file", str(headers_path), "--clients", str(options.clients),
               "--seconds", str(options.load_seconds)]

    pids = gateway.pids()
    cpu_before = cpu_seconds(pids)
    process = subprocess.Popen(command, cwd=REPOSITORY, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Sample the gateway's sockets while it is busy, to catch calls to anywhere but loopback.
    while process.poll() is None:
        egress += non_loopback_connections(pids)
        time.sleep(1.0)
    stdout, stderr = process.communicate()
    cpu_after = cpu_seconds(gateway.pids())
    headers_path.unlink(missing_ok=True)
    if process.returncode != 0:
        return {"error": f"load client failed with status {process.returncode}: {stderr.strip()[-300:]}"}
    outcome = json.loads(stdout)
    outcome["cpu_ms_per_request"] = (cpu_after - cpu_before) * 1000 / outcome["requests"] if outcome["requests"] else None
    return outcome
