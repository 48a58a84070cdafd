"""Tests of the gateway's limits on slow, huge and malformed input, through the real server."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

import httpx

from engine.embedding import load_embedder
from engine.embedding.onnx_minilm import CHARS_PER_TOKEN_BOUND


def read_response(connection: socket.socket) -> str:
    """Read one HTTP/1.1 response with a content-length body; headers and body may come in separate packets."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            break
        body += chunk
    return (head + b"\r\n\r\n" + body).decode("utf-8", "replace")


def test_partial_body_gets_408(start_gateway):
    gateway = start_gateway(env={"LEANGATE_BODY_TIMEOUT_S": "1"}, name="gateway-slow-body")
    address = urlsplit(gateway.url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as connection:
        connection.sendall(
            b"POST /v1/messages HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"anthropic-version: 2023-06-01\r\ncontent-length: 500\r\n\r\n{\"model\": \"claude"
        )
        started = time.monotonic()
        reply = read_response(connection)

    assert reply.startswith("HTTP/1.1 408")
    assert "did not arrive within 1 s" in reply
    assert '"type":"error"' in reply.replace(" ", "")
    assert time.monotonic() - started < 8


def test_serve_rejects_port_out_of_range():
    finished = subprocess.run([sys.executable, "-m", "engine", "serve", "--port", "99999"],
                              capture_output=True, text=True, timeout=60)

    assert finished.returncode == 2
    assert "--port must be between 0 and 65535, got 99999" in finished.stderr
    assert "Traceback" not in finished.stderr


def test_embedder_cuts_long_text_without_changing_vector():
    embedder = load_embedder()
    words = "refactor the payment client " * 2_000
    limit = embedder.max_tokens * CHARS_PER_TOKEN_BOUND

    long_vector, cut_vector = embedder.embed([words * 20, words[:limit]])

    assert len(words * 20) > 10 * limit
    assert float(long_vector @ cut_vector) > 1 - 1e-6


def test_huge_message_is_answered(gateway):
    text = "Please summarise this log. " + "line of output from the build step\n" * 150_000
    body = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": text}]}
    response = httpx.post(gateway.url + "/v1/messages", content=json.dumps(body),
                          headers={"anthropic-version": "2023-06-01", "content-type": "application/json"}, timeout=120)

    assert len(text) > 5_000_000
    assert response.status_code == 200
    assert response.json()["type"] == "message"
