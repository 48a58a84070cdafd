"""`leangate bench --smoke` end to end, plus the harness's own helpers on real data."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.harness import prices, procstat, scenarios
from benchmarks.harness.gateways import GatewayUnavailable, is_loopback_address, non_loopback_listeners
from benchmarks.harness.load import is_loopback_url, percentile
from benchmarks.harness.peers import LOOPBACK_PRELOAD, litellm_config, start_portkey
from engine.tokens import count_text

REPOSITORY = Path(__file__).resolve().parents[1]
needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
needs_ss = pytest.mark.skipif(shutil.which("ss") is None, reason="ss (iproute2) is not installed")


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


# Each entry of `forms` calls net.Server.prototype.listen in one form, and the script prints the bound addresses.
LISTEN_FORMS_SCRIPT = """
const net = require("node:net");
const http = require("node:http");
const path = require("node:path");
const forms = {
  "port, undefined, callback": (server, done) => server.listen(0, undefined, done),
  "port": (server, done) => { server.once("listening", done); server.listen(0); },
  "port, callback": (server, done) => server.listen(0, done),
  "port, backlog, callback": (server, done) => server.listen(0, 64, done),
  "port, null, backlog, callback": (server, done) => server.listen(0, null, 64, done),
  "string port, callback": (server, done) => server.listen("0", done),
  "port, 0.0.0.0": (server, done) => server.listen(0, "0.0.0.0", done),
  "port, ::": (server, done) => server.listen(0, "::", done),
  "port, 0:0:0:0:0:0:0:0": (server, done) => server.listen(0, "0:0:0:0:0:0:0:0", done),
  "options": (server, done) => server.listen({ port: 0 }, done),
  "options with host ::": (server, done) => server.listen({ port: 0, host: "::" }, done),
  "no arguments": (server, done) => { server.once("listening", done); server.listen(); },
  "callback only": (server, done) => server.listen(done),
  "explicit 127.0.0.1": (server, done) => server.listen(0, "127.0.0.1", done),
  "explicit ::1": (server, done) => server.listen({ port: 0, host: "::1" }, done),
  "unix socket": (server, done) => server.listen(path.join(process.argv[2], "test.sock"), done),
};
(async () => {
  const addresses = {};
  for (const [form, listen] of Object.entries(forms)) {
    const server = form === "port, undefined, callback" ? http.createServer() : net.createServer();
    await new Promise((resolve) => listen(server, resolve));
    const address = server.address();
    addresses[form] = typeof address === "string" ? "unix" : address.address;
    await new Promise((resolve) => server.close(resolve));
  }
  console.log(JSON.stringify(addresses));
})();
"""


@needs_node
def test_loopback_preload_covers_listen_forms(tmp_path):
    script = tmp_path / "forms.js"
    script.write_text(LISTEN_FORMS_SCRIPT)

    completed = subprocess.run(["node", "--require", str(LOOPBACK_PRELOAD), str(script), str(tmp_path)],
                               capture_output=True, text=True, timeout=60)

    assert completed.returncode == 0, completed.stderr
    addresses = json.loads(completed.stdout)
    expected = {form: "127.0.0.1" for form in addresses}
    expected["explicit ::1"] = "::1"
    expected["unix socket"] = "unix"
    assert addresses == expected
    assert completed.stderr.count("listening on 127.0.0.1") == 13


# A stand-in for the Portkey start script. It listens the way @hono/node-server 1.19 does and
# writes its environment to env.json in its working folder.
FAKE_PORTKEY_SCRIPT = """
const fs = require("node:fs");
const http = require("node:http");
const port = Number(process.argv.find((argument) => argument.startsWith("--port=")).split("=")[1]);
fs.writeFileSync("env.json", JSON.stringify(process.env));
http.createServer((request, response) => response.end("fake gateway")).listen(port, undefined, () => {});
"""

# A start script whose child process runs without the preload and listens on every interface.
FAKE_PORTKEY_WITH_WILDCARD_CHILD = """
const { spawn } = require("node:child_process");
const fs = require("node:fs");
const http = require("node:http");
const port = Number(process.argv.find((argument) => argument.startsWith("--port=")).split("=")[1]);
const child = spawn(process.execPath, ["-e",
  "require('node:net').createServer((socket) => socket.destroy()).listen(0, () => console.log('listening'))"],
  { stdio: ["ignore", "pipe", "inherit"] });
fs.writeFileSync("child.pid", String(child.pid));
child.stdout.once("data", () => http.createServer((request, response) => response.end("fake")).listen(port));
"""


def _fake_portkey(peers_dir: Path, script: str) -> None:
    package = peers_dir / "portkey" / "node_modules" / "@portkey-ai" / "gateway"
    (package / "build").mkdir(parents=True)
    (package / "build" / "start-server.js").write_text(script)
    (package / "package.json").write_text('{"name": "@portkey-ai/gateway", "version": "0.0.0-test"}')


def _is_gone(pid: int, wait_s: float = 5.0) -> bool:
    """Return whether `pid` ended (or is a zombie) within `wait_s` seconds."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return True
        if stat[stat.rindex(")") + 2] == "Z":
            return True
        time.sleep(0.1)
    return False


@needs_node
@needs_ss
def test_portkey_start_listens_on_loopback_only(tmp_path, monkeypatch):
    _fake_portkey(tmp_path / "peers", FAKE_PORTKEY_SCRIPT)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-not-a-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-not-a-secret")
    monkeypatch.setenv("REDIS_CONNECTION_STRING", "redis://127.0.0.1:1")

    gateway = start_portkey(tmp_path / "work", "http://127.0.0.1:9", tmp_path / "peers")
    try:
        pids = gateway.pids()
        listeners = subprocess.run(["ss", "-H", "-n", "-p", "-t", "-l"], capture_output=True, text=True,
                                   timeout=10).stdout
        environment = json.loads((tmp_path / "work" / "env.json").read_text())
    finally:
        gateway.stop()

    assert gateway.version == "0.0.0-test"
    assert gateway.base_url.startswith("http://127.0.0.1:")
    assert f"127.0.0.1:{gateway.base_url.rsplit(':', 1)[1]}" in listeners
    assert non_loopback_listeners(pids) == []
    assert gateway.headers["x-portkey-custom-host"] == "http://127.0.0.1:9/v1"
    assert environment["TRUSTED_CUSTOM_HOSTS"] == "127.0.0.1"
    assert "ANTHROPIC_API_KEY" not in environment
    assert "AWS_SECRET_ACCESS_KEY" not in environment
    assert "REDIS_CONNECTION_STRING" not in environment
    assert _is_gone(gateway.root_pid)


@needs_node
@needs_ss
def test_portkey_start_rejects_wildcard_listener(tmp_path):
    _fake_portkey(tmp_path / "peers", FAKE_PORTKEY_WITH_WILDCARD_CHILD)

    try:
        gateway = start_portkey(tmp_path / "work", "http://127.0.0.1:9", tmp_path / "peers")
    except GatewayUnavailable as error:
        reason = str(error)
    else:
        gateway.stop()
        pytest.fail("start_portkey returned a gateway whose child listens on every interface")

    assert "listened on a non-loopback address" in reason
    assert "stopped it" in reason
    child_pid = int((tmp_path / "work" / "child.pid").read_text())
    assert _is_gone(child_pid)


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
    # A Portkey install whose start script exits at once, so nothing is downloaded.
    _fake_portkey(tmp_path / "peers", 'console.error("fake gateway: cannot start"); process.exit(3);')
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
    if shutil.which("node") is None:
        assert "node is not installed" in portkey["reason"]
    elif shutil.which("ss") is None:
        assert "ss (iproute2) is not installed" in portkey["reason"]
    else:
        assert "exited with status 3 during start-up" in portkey["reason"]
        assert "fake gateway: cannot start" in portkey["reason"]
    assert "| portkey | unavailable: see the gateway table |" in completed.stdout
    assert "| portkey | — | unavailable |" in completed.stdout
