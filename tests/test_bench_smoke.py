"""`leangate bench --smoke` end to end, plus the harness's own helpers on real data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.harness import prices, procstat, scenarios
from benchmarks.harness.gateways import is_loopback_address
from benchmarks.harness.load import is_loopback_url, percentile
from benchmarks.harness.peers import litellm_config, portkey_listen_option
from engine.tokens import count_text

REPOSITORY = Path(__file__).resolve().parents[1]


def test_scenarios_have_the_briefed_shapes():
    built = {scenario.key: scenario for scenario in scenarios.build_scenarios()}

    assert list(built) == ["short", "read-only", "edit", "refactor-9", "manifest", "grep-60", "cache-pair", "hard", "session"]
    assert "tools" not in built["short"].requests[0].body
    assert len(built["read-only"].requests[0].body["tools"]) == 16
    assert len(built["refactor-9"].requests[0].body["messages"]) == 9
    assert len(built["cache-pair"].requests) == 2
    assert len(built["session"].requests) == 30


def test_tool_result_sizes_match_the_brief():
    manifest = scenarios.package_manifest()
    matches = json.loads(scenarios.grep_matches())

    assert 2600 <= len(manifest.encode()) <= 3400
    assert len(matches) == 60
    assert 3000 <= count_text(scenarios.grep_matches()) <= 3800


def test_session_requests_grow_and_carry_the_session_header():
    requests = scenarios.session_requests(count=8)
    lengths = [len(request.body["messages"]) for request in requests]
    session_ids = {request.headers["x-claude-code-session-id"] for request in requests}

    assert lengths == sorted(lengths)
    assert lengths[0] < lengths[-1]
    assert len(session_ids) == 1
    assert requests[-1].body["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}


def test_cost_uses_the_dated_price_table():
    sonnet = prices.cost_usd("claude-sonnet-4-5", uncached=1_000_000, cache_write_5m=0, cache_write_1h=0,
                             cache_read=1_000_000, output=1_000_000)
    haiku = prices.cost_usd("claude-haiku-4-5-20251001", uncached=0, cache_write_5m=1_000_000, cache_write_1h=0,
                            cache_read=0, output=0)

    assert sonnet == pytest.approx(3.00 + 0.30 + 15.00)
    assert haiku == pytest.approx(1.25)
    assert prices.cost_usd("gpt-4o", uncached=1, cache_write_5m=0, cache_write_1h=0, cache_read=0, output=0) is None
    assert prices.PRICES_DATE


def test_percentile_is_nearest_rank():
    values = [float(number) for number in range(1, 101)]

    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.95) == 95.0
    assert percentile([], 0.5) == 0.0


@pytest.mark.parametrize("address, expected", [
    ("127.0.0.1:8787", True), ("[::1]:8787", True), ("[::ffff:127.0.0.1]:80", True),
    ("0.0.0.0:4000", False), ("[::]:8787", False), ("*:8787", False), ("10.1.2.3:443", False),
])
def test_loopback_check_of_socket_addresses(address, expected):
    assert is_loopback_address(address) is expected


def test_load_client_rejects_non_loopback_urls(tmp_path):
    body = tmp_path / "body.json"
    body.write_text('{"model": "m", "max_tokens": 5, "messages": []}')

    completed = subprocess.run([sys.executable, "-m", "benchmarks.harness.load", "http://example.invalid/v1/messages",
                                "--body-file", str(body), "--seconds", "1"],
                               cwd=REPOSITORY, capture_output=True, text=True, timeout=60)

    assert completed.returncode == 2
    assert "not a loopback URL" in completed.stderr
    assert is_loopback_url("http://[::1]:80/x")
    assert not is_loopback_url("http://example.invalid:80/x")


def test_process_stats_of_this_process():
    import os

    pid = os.getpid()

    assert pid in procstat.process_tree(pid)
    assert procstat.cpu_seconds([pid]) > 0
    assert procstat.peak_memory_mib([pid]) > 10


def test_litellm_config_points_only_at_the_stub():
    config = litellm_config("http://127.0.0.1:5555")

    assert config.count("api_base: http://127.0.0.1:5555") == 2
    assert "model: anthropic/claude-sonnet-4-5" in config


def test_portkey_listen_option_is_read_from_the_script(tmp_path):
    without = tmp_path / "without.js"
    without.write_text('const a=process.argv.slice(2),p=a.find((e=>e.startsWith("--port=")));serve({port:p})')
    with_host = tmp_path / "with.js"
    with_host.write_text('const h=a.find((e=>e.startsWith("--host=")));serve({port:p,hostname:h})')

    assert portkey_listen_option(without) is None
    assert portkey_listen_option(with_host) == "--host="


def test_bench_rejects_invalid_options():
    completed = subprocess.run([sys.executable, "-m", "engine", "bench", "--gateways", "direct,nginx"],
                               cwd=REPOSITORY, capture_output=True, text=True, timeout=60)

    assert completed.returncode == 2
    assert "invalid --gateways" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_bench_smoke_runs_leangate_and_direct(tmp_path):
    results_path = tmp_path / "results.json"
    chart_path = tmp_path / "chart.png"

    completed = subprocess.run(
        [sys.executable, "-m", "engine", "bench", "--smoke", "--workdir", str(tmp_path / "work"),
         "--json", str(results_path), "--chart", str(chart_path)],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=240,
    )

    assert completed.returncode == 0, completed.stderr[-2000:]
    results = json.loads(results_path.read_text())
    assert set(results["gateways"]) == {"direct", "leangate"}
    for name in ("direct", "leangate"):
        gateway = results["gateways"][name]
        assert gateway["status"] == "ok", gateway.get("reason")
        assert gateway["egress"] == []
        for key, scenario in gateway["scenarios"].items():
            assert scenario["ok"], f"{name} {key}: {scenario['error']}"
            assert scenario["cost_usd"] is not None
        assert gateway["load"]["non-stream"]["requests"] > 0
        assert gateway["load"]["stream"]["requests"] > 0
        assert gateway["peak_memory_mib"] > 0
    direct_session = results["gateways"]["direct"]["scenarios"]["session"]
    assert direct_session["usage_relayed_intact"] is True
    assert direct_session["billed"]["cache_read"] > 0
    assert results["gateways"]["leangate"]["scenarios"]["short"]["tiers"]
    assert "| scenario | gateway |" in completed.stdout
    assert chart_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unavailable_peer_stays_in_report(tmp_path):
    # A Portkey install whose start script has no listen-address option, so nothing is downloaded.
    package = tmp_path / "peers" / "portkey" / "node_modules" / "@portkey-ai" / "gateway"
    (package / "build").mkdir(parents=True)
    (package / "build" / "start-server.js").write_text('const p=process.argv.find((e=>e.startsWith("--port=")));')
    (package / "package.json").write_text('{"name": "@portkey-ai/gateway", "version": "0.0.0-test"}')
    results_path = tmp_path / "results.json"

    completed = subprocess.run(
        [sys.executable, "-m", "engine", "bench", "--gateways", "direct,portkey", "--passes", "1",
         "--session-length", "2", "--seconds", "1", "--clients", "5", "--peers-dir", str(tmp_path / "peers"),
         "--workdir", str(tmp_path / "work"), "--json", str(results_path)],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=180,
    )

    assert completed.returncode == 0, completed.stderr[-2000:]
    portkey = json.loads(results_path.read_text())["gateways"]["portkey"]
    assert portkey["status"] == "unavailable"
    assert "0.0.0-test has no option for its listen address" in portkey["reason"]
    assert "| portkey | unavailable: see the gateway table |" in completed.stdout
    assert "| portkey | — | unavailable |" in completed.stdout
