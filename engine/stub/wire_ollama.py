"""Ollama native chat wire format: NDJSON stream lines, the single-object response and errors."""

from __future__ import annotations

import orjson

from engine.stub.replies import Reply, Usage, split_words

# Ollama's default context window when a request sets no options.num_ctx.
DEFAULT_NUM_CTX = 4096


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


def stream_error_line(message: str) -> bytes:
    return orjson.dumps({"error": message}) + b"\n"


def _tool_calls(reply: Reply) -> list[dict]:
    # Ollama sends tool calls whole, with object arguments and no ids.
    return [{"function": {"name": call.name, "arguments": call.arguments}} for call in reply.tool_calls]


def _final_fields(reply: Reply, usage: Usage, elapsed_ns: int) -> dict:
    return {
        "done": True,
        # Ollama reports "stop" after tool calls too; only a token limit gives "length".
        "done_reason": "length" if reply.stop == "max_tokens" else "stop",
        "total_duration": elapsed_ns,
        "load_duration": 0,
        "prompt_eval_count": usage.input_tokens,
        "prompt_eval_duration": elapsed_ns // 2,
        "eval_count": usage.output_tokens,
        "eval_duration": elapsed_ns - elapsed_ns // 2,
    }


def chat_body(reply: Reply, model: str, usage: Usage, created_at: str, elapsed_ns: int) -> bytes:
    message: dict = {"role": "assistant", "content": reply.text}
    if reply.tool_calls:
        message["tool_calls"] = _tool_calls(reply)
    return orjson.dumps({"model": model, "created_at": created_at, "message": message, **_final_fields(reply, usage, elapsed_ns)})


def stream_lines(reply: Reply, model: str, usage: Usage, created_at: str, elapsed_ns: int) -> list[bytes]:
    """Return the NDJSON lines of a streamed response. The last line carries done: true and the counts."""
    lines: list[bytes] = []

    def line(message: dict, **fields: object) -> None:
        lines.append(orjson.dumps({"model": model, "created_at": created_at, "message": message, **fields}) + b"\n")

    if reply.text:
        for piece in split_words(reply.text):
            line({"role": "assistant", "content": piece}, done=False)
    if reply.tool_calls:
        line({"role": "assistant", "content": "", "tool_calls": _tool_calls(reply)}, done=False)
    line({"role": "assistant", "content": ""}, **_final_fields(reply, usage, elapsed_ns))
    return lines
