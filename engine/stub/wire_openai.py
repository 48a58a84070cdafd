"""OpenAI wire formats: Chat Completions and Responses bodies, stream events and errors."""

from __future__ import annotations

import orjson

from engine.stub.replies import Reply, Usage, split_fragments, split_words

# (type, code) by status, as the OpenAI API fills them.
ERROR_KINDS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


def error_body(status: int, message: str, *, code: str | None = None) -> bytes:
    kind, default_code = ERROR_KINDS.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    return orjson.dumps({"error": {"message": message, "type": kind, "param": None, "code": code or default_code}})


def azure_error_body(status: int, message: str) -> bytes:
    """Azure OpenAI's gateway errors carry the status as a string code."""
    return orjson.dumps({"error": {"code": str(status), "message": message}})


def stream_error_line(message: str) -> bytes:
    return b"data: " + orjson.dumps({"error": {"message": message, "type": "server_error", "param": None, "code": None}}) + b"\n\n"


# ---------------------------------------------------------------------------------------------------
# Chat Completions


def finish_reason(reply: Reply) -> str:
    if reply.stop == "max_tokens":
        return "length"
    if reply.tool_calls and "finish_reason_stop" not in reply.quirks:
        return "tool_calls"
    return "stop"


def chat_usage(usage: Usage) -> dict:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def chat_body(reply: Reply, model: str, usage: Usage, completion_id: str, created: int) -> bytes:
    message: dict = {"role": "assistant", "content": reply.text or None, "refusal": None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": f"call_{call.id_suffix}", "type": "function", "function": {"name": call.name, "arguments": call.arguments_json}}
            for call in reply.tool_calls
        ]
    choice = {"index": 0, "message": message, "finish_reason": finish_reason(reply), "logprobs": None}
    return orjson.dumps(
        {"id": completion_id, "object": "chat.completion", "created": created, "model": model, "choices": [choice], "usage": chat_usage(usage)}
    )


def chat_stream_events(reply: Reply, model: str, usage: Usage, completion_id: str, created: int, include_usage: bool) -> list[bytes]:
    """Return the `data:` lines of a streamed completion, ending with `data: [DONE]`."""
    base = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
    if include_usage:
        base["usage"] = None

    def chunk(delta: dict, finish: str | None = None) -> bytes:
        data = dict(base, choices=[{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}])
        return b"data: " + orjson.dumps(data) + b"\n\n"

    events = [chunk({"role": "assistant", "content": ""})]
    if reply.text:
        events.extend(chunk({"content": piece}) for piece in split_words(reply.text))
    for index, call in enumerate(reply.tool_calls):
        opening = {"index": index, "id": f"call_{call.id_suffix}", "type": "function", "function": {"name": call.name, "arguments": ""}}
        events.append(chunk({"tool_calls": [opening]}))
        for piece in split_fragments(call.arguments_json):
            events.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
    events.append(chunk({}, finish_reason(reply)))
    if include_usage:
        events.append(b"data: " + orjson.dumps(dict(base, choices=[], usage=chat_usage(usage))) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-5", "gpt-5-mini")


def models_body() -> bytes:
    data = [{"id": model, "object": "model", "created": 1735689600, "owned_by": "leangate-stub"} for model in MODELS]
    return orjson.dumps({"object": "list", "data": data})


# ---------------------------------------------------------------------------------------------------
# Responses


def responses_usage(usage: Usage) -> dict:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cache_read_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


def _output_items(reply: Reply, response_id: str) -> list[dict]:
    items: list[dict] = []
    if reply.text:
        part = {"type": "output_text", "text": reply.text, "annotations": [], "logprobs": []}
        items.append({"type": "message", "id": f"msg_{response_id[5:]}", "status": "completed", "role": "assistant", "content": [part]})
    for call in reply.tool_calls:
        items.append(
            {
                "type": "function_call",
                "id": f"fc_{call.id_suffix}",
                "call_id": f"call_{call.id_suffix}",
                "name": call.name,
                "arguments": call.arguments_json,
                "status": "completed",
            }
        )
    return items


def _response_object(reply: Reply | None, model: str, usage: Usage | None, response_id: str, created: int, request: dict) -> dict:
    if reply is None:
        status, output, incomplete = "in_progress", [], None
    elif reply.stop == "max_tokens":
        status, output, incomplete = "incomplete", _output_items(reply, response_id), {"reason": "max_output_tokens"}
    else:
        status, output, incomplete = "completed", _output_items(reply, response_id), None
    return {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": status,
        "model": model,
        "output": output,
        "usage": responses_usage(usage) if usage is not None and reply is not None else None,
        "error": None,
        "incomplete_details": incomplete,
        "instructions": request.get("instructions"),
        "metadata": {},
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "temperature": request.get("temperature"),
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": request.get("tools") or [],
        "top_p": request.get("top_p"),
        "store": request.get("store", True),
    }


def response_body(reply: Reply, model: str, usage: Usage, response_id: str, created: int, request: dict) -> bytes:
    return orjson.dumps(_response_object(reply, model, usage, response_id, created, request))


def responses_stream_events(reply: Reply, model: str, usage: Usage, response_id: str, created: int, request: dict) -> list[bytes]:
    """Return the SSE events of a streamed response, numbered by sequence_number from 0."""
    events: list[bytes] = []

    def emit(kind: str, **fields: object) -> None:
        data = {"type": kind, "sequence_number": len(events), **fields}
        events.append(b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n")

    pending = _response_object(None, model, None, response_id, created, request)
    emit("response.created", response=pending)
    emit("response.in_progress", response=pending)
    for output_index, item in enumerate(_output_items(reply, response_id)):
        if item["type"] == "message":
            part = item["content"][0]
            emit("response.output_item.added", output_index=output_index, item=dict(item, status="in_progress", content=[]))
            empty_part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            emit("response.content_part.added", item_id=item["id"], output_index=output_index, content_index=0, part=empty_part)
            for piece in split_words(part["text"]):
                emit("response.output_text.delta", item_id=item["id"], output_index=output_index, content_index=0, delta=piece, logprobs=[])
            emit("response.output_text.done", item_id=item["id"], output_index=output_index, content_index=0, text=part["text"], logprobs=[])
            emit("response.content_part.done", item_id=item["id"], output_index=output_index, content_index=0, part=part)
        else:
            emit("response.output_item.added", output_index=output_index, item=dict(item, status="in_progress", arguments=""))
            for piece in split_fragments(item["arguments"]):
                emit("response.function_call_arguments.delta", item_id=item["id"], output_index=output_index, delta=piece)
            emit("response.function_call_arguments.done", item_id=item["id"], output_index=output_index, name=item["name"], arguments=item["arguments"])
        emit("response.output_item.done", output_index=output_index, item=item)
    final = _response_object(reply, model, usage, response_id, created, request)
    emit("response.incomplete" if final["status"] == "incomplete" else "response.completed", response=final)
    return events


def responses_stream_error_event(message: str, sequence_number: int) -> bytes:
    data = {"type": "error", "code": "server_error", "message": message, "param": None, "sequence_number": sequence_number}
    return b"event: error\ndata: " + orjson.dumps(data) + b"\n\n"
