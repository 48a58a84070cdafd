"""Hot reload through the running gateway: live edits, broken edits, admin endpoints, auth modes."""

from __future__ import annotations

import hashlib
import time

import anthropic
import httpx
import openai
import pytest

# The same prompt is sent many times to watch the routing change, so the semantic cache is bypassed.
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01", "x-leangate-cache": "bypass"}
BODY = {"model": "leangate-strong", "max_tokens": 32, "messages": [{"role": "user", "content": "hello"}]}


def served_model(gateway, headers=None) -> str:
    response = httpx.post(gateway.url + "/v1/messages", json=BODY, headers={**ANTHROPIC_HEADERS, **(headers or {})}, timeout=30)
    assert response.status_code == 200, response.text
    return response.headers["x-leangate-model"]


def wait_for(condition, timeout: float) -> float:
    """Poll `condition` until it holds; return the seconds it took, or fail after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout}s")


def test_valid_edit_is_live_within_two_seconds(start_gateway):
    gateway = start_gateway()
    policy = gateway.extra["policies"] / "default.yaml"
    assert served_model(gateway) == "claude-sonnet-4-5"
    version = httpx.get(gateway.url + "/health/ready", timeout=10).json()["policy_version"]

    policy.write_text(policy.read_text().replace("model: claude-sonnet-4-5", "model: claude-opus-4-1"))
    elapsed = wait_for(lambda: served_model(gateway) == "claude-opus-4-1", timeout=2.0)
    assert elapsed < 2.0
    status = httpx.get(gateway.url + "/admin/policy", timeout=10).json()
    assert status["version"] != version
    assert status["last_reload_error"] is None


def test_invalid_edit_keeps_last_good_policy(start_gateway):
    gateway = start_gateway()
    policy = gateway.extra["policies"] / "default.yaml"
    good_version = httpx.get(gateway.url + "/admin/policy", timeout=10).json()["version"]
    lines = policy.read_text().splitlines()
    line_number = next(i for i, line in enumerate(lines) if "below: " in line)
    lines[line_number] = lines[line_number].replace("below: ", "below: not-a-number-")
    policy.write_text("\n".join(lines) + "\n")

    def reported() -> bool:
        return httpx.get(gateway.url + "/admin/policy", timeout=10).json()["last_reload_error"] is not None

    wait_for(reported, timeout=3.0)
    status = httpx.get(gateway.url + "/admin/policy", timeout=10).json()
    issue = status["last_reload_error"]["issues"][0]
    assert f"default.yaml:{line_number + 1}:" in issue
    assert "tiers[0].below" in issue
    assert status["version"] == good_version
    assert served_model(gateway) == "claude-sonnet-4-5"
    assert "policy reload rejected" in gateway.log()


def test_broken_yaml_keeps_serving(start_gateway):
    gateway = start_gateway()
    policy = gateway.extra["policies"] / "default.yaml"
    policy.write_text(policy.read_text() + "\ntiers: [unclosed\n")
    wait_for(lambda: httpx.get(gateway.url + "/admin/policy", timeout=10).json()["last_reload_error"] is not None, 3.0)
    assert served_model(gateway) == "claude-sonnet-4-5"


def test_admin_reload_endpoint(start_gateway):
    gateway = start_gateway()
    response = httpx.post(gateway.url + "/admin/reload", timeout=10)
    assert response.status_code == 200
    assert response.json()["reloaded"] is True


def _keys_policy(key: str, admin_key: str):
    def edit(policy_dir):
        path = policy_dir / "default.yaml"
        text = path.read_text().replace("auth: none", "auth: keys")
        digest = hashlib.sha256(key.encode()).hexdigest()
        admin = hashlib.sha256(admin_key.encode()).hexdigest()
        text = text.replace("keys: []", f"keys:\n  - {{sha256: {digest}, team: via-openai, name: test}}", 1)
        text = text.replace("admin_keys: []", f"admin_keys:\n  - {{sha256: {admin}}}")
        path.write_text(text)
    return edit


def test_gateway_keys_map_to_teams(start_gateway):
    gateway = start_gateway(edit=_keys_policy("team-key-123", "admin-key-456"))
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=gateway.url, api_key="wrong", max_retries=0).messages.create(**BODY)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=gateway.url + "/v1", api_key="wrong", max_retries=0).chat.completions.create(
            model="x", messages=[{"role": "user", "content": "hi"}])
    missing = httpx.post(gateway.url + "/v1/messages", json=BODY, headers=ANTHROPIC_HEADERS, timeout=10)
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "authentication_error"

    # The key of team via-openai routes through the openai adapter: both auth headers work.
    raw = anthropic.Anthropic(base_url=gateway.url, api_key="team-key-123", max_retries=0,
                              default_headers=ANTHROPIC_HEADERS).messages.with_raw_response.create(**BODY)
    assert raw.headers["x-leangate-model"] == "gpt-4o"
    bearer = anthropic.Anthropic(base_url=gateway.url, auth_token="team-key-123", max_retries=0,
                                 default_headers=ANTHROPIC_HEADERS)
    assert bearer.messages.with_raw_response.create(**BODY).headers["x-leangate-model"] == "gpt-4o"

    assert httpx.get(gateway.url + "/admin/policy", timeout=10).status_code == 401
    assert httpx.get(gateway.url + "/admin/policy", headers={"x-api-key": "team-key-123"}, timeout=10).status_code == 403
    assert httpx.get(gateway.url + "/admin/policy", headers={"x-api-key": "admin-key-456"}, timeout=10).status_code == 200
    log = gateway.log()
    assert "team-key-123" not in log
    assert "admin-key-456" not in log


def test_serve_refuses_auth_none_off_loopback(tmp_path):
    import subprocess
    import sys

    from tests.conftest import POLICIES

    result = subprocess.run([sys.executable, "-m", "engine", "serve", "--policies", str(POLICIES), "--host", "0.0.0.0",
                             "--port", "0"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "auth: none" in result.stderr
    assert "loopback" in result.stderr
