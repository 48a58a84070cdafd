"""Translate Responses input items into canonical system blocks and messages."""

from __future__ import annotations

import logging
from typing import Any

from engine.protocol.errors import ProtocolError
from engine.protocol.responses._common import (
    CUSTOM_TOOL_INPUT_KEY,
    REDACTED_THINKING_PREFIX,
    document_source_from_data_url,
    image_source_from_url,
    parse_arguments,
    required_string,
)

logger = logging.getLogger(__name__)

_SYSTEM_ROLES = ("system", "developer")


class _Conversation:
    """Collects canonical messages, merging consecutive turns of the same role."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def add(self, role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if self.messages and self.messages[-1]["role"] == role:
            self.messages[-1]["content"].extend(blocks)
        else:
            self.messages.append({"role": role, "content": list(blocks)})

    def finish(self) -> list[dict[str, Any]]:
        _drop_thinking_only_turns(self.messages)
        _turn_orphan_results_into_text(self.messages)
        # Anthropic wants every tool_result at the start of its user turn.
        for message in self.messages:
            if message["role"] == "user":
                content = message["content"]
                results = [block for block in content if block["type"] == "tool_result"]
                if results and len(results) != len(content):
                    others = [block for block in content if block["type"] != "tool_result"]
                    message["content"] = results + others
        return self.messages


def translate_input(items: Any, instructions: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Translate `instructions` and `input` into (system text blocks, messages).

    System and developer messages before the first turn join the system prompt. Function call
    outputs become tool_result blocks at the start of the next user turn.
    """
    system: list[dict[str, Any]] = []
    if instructions is not None:
        if not isinstance(instructions, str):
            raise ProtocolError("must be a string", param="instructions")
        if instructions.strip():
            system.append({"type": "text", "text": instructions})

    if isinstance(items, str):
        items = [{"type": "message", "role": "user", "content": items}]
    if not isinstance(items, list):
        raise ProtocolError("missing or invalid: expected a string or a list of input items", param="input")

    conversation = _Conversation()
    for index, item in enumerate(items):
        path = f"input.{index}"
        if not isinstance(item, dict):
            raise ProtocolError("must be an object", param=path)
        kind = item.get("type", "message" if "role" in item else None)

        if kind == "message":
            role = item.get("role")
            if role in _SYSTEM_ROLES and not conversation.messages:
                # Instructions before the first turn belong to the system prompt.
                system.extend(_message_blocks(item.get("content"), f"{path}.content", role))
            elif role in _SYSTEM_ROLES:
                # A later developer message keeps its place in the conversation as user text.
                conversation.add("user", _message_blocks(item.get("content"), f"{path}.content", role))
            elif role in ("user", "assistant"):
                conversation.add(role, _message_blocks(item.get("content"), f"{path}.content", role))
            else:
                raise ProtocolError(
                    f"invalid role {role!r}; use user, assistant, system or developer", param=f"{path}.role"
                )
        elif kind == "function_call":
            conversation.add("assistant", [_function_call(item, path)])
        elif kind == "custom_tool_call":
            conversation.add("assistant", [_custom_tool_call(item, path)])
        elif kind == "local_shell_call" and isinstance(item.get("call_id"), str) and item["call_id"]:
            # Older Codex models call a built-in shell, and its output comes as a function_call_output.
            action = item.get("action") if isinstance(item.get("action"), dict) else {}
            conversation.add("assistant", [{"type": "tool_use", "id": item["call_id"], "name": "local_shell", "input": action}])
        elif kind in ("function_call_output", "custom_tool_call_output"):
            conversation.add("user", [_tool_result(item, path)])
        elif kind == "reasoning":
            block = _reasoning_block(item, path)
            if block is not None:
                conversation.add("assistant", [block])
        elif kind in ("item_reference",):
            raise ProtocolError(
                "is not supported: this gateway stores no items; send the item itself", param=f"{path}.type"
            )
        elif isinstance(kind, str):
            # Hosted-tool items (web_search_call, compaction, ...) have no Anthropic equivalent.
            # They are dropped; the conversation around them stays valid.
            logger.debug("dropping Responses input item of type %s at %s", kind, path)
        else:
            raise ProtocolError("missing `type` (and no `role`)", param=path)

    messages = conversation.finish()
    if not messages:
        raise ProtocolError("must contain at least one user message", param="input")
    return system, messages


def _message_blocks(content: Any, path: str, role: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise ProtocolError("must be a string or a list of content parts", param=path)

    blocks: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        part_path = f"{path}.{index}"
        if not isinstance(part, dict):
            raise ProtocolError("must be an object", param=part_path)
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text", "refusal", "summary_text"):
            field = "refusal" if kind == "refusal" else "text"
            text = part.get(field)
            if not isinstance(text, str):
                raise ProtocolError("must be a string", param=f"{part_path}.{field}")
            if text:
                blocks.append({"type": "text", "text": text})
        elif kind == "input_image":
            if role != "user":
                raise ProtocolError(f"images are only allowed in user messages, not {role}", param=part_path)
            blocks.append(_image_block(part, part_path))
        elif kind == "input_file":
            if role != "user":
                raise ProtocolError(f"files are only allowed in user messages, not {role}", param=part_path)
            blocks.append(_file_block(part, part_path))
        else:
            raise ProtocolError(
                f"unsupported content part type {kind!r}; use input_text, output_text, input_image or input_file",
                param=f"{part_path}.type",
            )
    return blocks


def _image_block(part: dict[str, Any], path: str) -> dict[str, Any]:
    url = part.get("image_url")
    if isinstance(url, dict):
        url = url.get("url")
    if not isinstance(url, str) or not url:
        if part.get("file_id"):
            raise ProtocolError(
                "file_id images are not supported: this gateway has no file store; send a data URL",
                param=f"{path}.file_id",
            )
        raise ProtocolError("missing image_url", param=f"{path}.image_url")
    return {"type": "image", "source": image_source_from_url(url, f"{path}.image_url")}


def _file_block(part: dict[str, Any], path: str) -> dict[str, Any]:
    file_data = part.get("file_data")
    file_url = part.get("file_url")
    if isinstance(file_data, str) and file_data:
        return {"type": "document", "source": document_source_from_data_url(file_data, f"{path}.file_data")}
    if isinstance(file_url, str) and file_url.startswith(("http://", "https://")):
        return {"type": "document", "source": {"type": "url", "url": file_url}}
    raise ProtocolError(
        "unsupported file: send file_data as a data:application/pdf;base64 URL or an http(s) file_url "
        "(file_id needs a file store, which this gateway does not have)",
        param=path,
    )


def _function_call(item: dict[str, Any], path: str) -> dict[str, Any]:
    call_id = required_string(item, "call_id", path)
    name = required_string(item, "name", path)
    arguments = item.get("arguments", "")
    if not isinstance(arguments, str):
        raise ProtocolError("must be a JSON string", param=f"{path}.arguments")
    return {"type": "tool_use", "id": call_id, "name": name, "input": parse_arguments(arguments)}


def _custom_tool_call(item: dict[str, Any], path: str) -> dict[str, Any]:
    call_id = required_string(item, "call_id", path)
    name = required_string(item, "name", path)
    text = item.get("input", "")
    if not isinstance(text, str):
        raise ProtocolError("must be a string", param=f"{path}.input")
    return {"type": "tool_use", "id": call_id, "name": name, "input": {CUSTOM_TOOL_INPUT_KEY: text}}


def _tool_result(item: dict[str, Any], path: str) -> dict[str, Any]:
    call_id = required_string(item, "call_id", path)
    output = item.get("output")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    if isinstance(output, str):
        if output:
            block["content"] = output
        return block
    if not isinstance(output, list):
        raise ProtocolError("must be a string or a list of input_text/input_image parts", param=f"{path}.output")

    content: list[dict[str, Any]] = []
    for index, part in enumerate(output):
        part_path = f"{path}.output.{index}"
        if not isinstance(part, dict):
            raise ProtocolError("must be an object", param=part_path)
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            text = part.get("text")
            if not isinstance(text, str):
                raise ProtocolError("must be a string", param=f"{part_path}.text")
            if text:
                content.append({"type": "text", "text": text})
        elif kind == "input_image":
            content.append(_image_block(part, part_path))
        elif kind == "input_file":
            content.append(_file_block(part, part_path))
        else:
            raise ProtocolError(
                f"unsupported tool output part type {kind!r}; use input_text or input_image",
                param=f"{part_path}.type",
            )
    if content:
        block["content"] = content
    return block


def _reasoning_block(item: dict[str, Any], path: str) -> dict[str, Any] | None:
    """Carry a reasoning item as an Anthropic thinking block when it has a replayable signature.

    This gateway writes each thinking signature (Anthropic's, or an OpenAI reasoning item packed by
    openai_reasoning_signature) into `encrypted_content`, so its reasoning items come back whole. A
    reasoning item without `encrypted_content` cannot be replayed to any provider and is dropped.
    """
    encrypted = item.get("encrypted_content")
    if encrypted is None:
        return None
    if not isinstance(encrypted, str):
        raise ProtocolError("must be a string", param=f"{path}.encrypted_content")
    if encrypted.startswith(REDACTED_THINKING_PREFIX):
        return {"type": "redacted_thinking", "data": encrypted[len(REDACTED_THINKING_PREFIX) :]}

    texts: list[str] = []
    for key in ("summary", "content"):
        parts = item.get(key) or []
        if not isinstance(parts, list):
            raise ProtocolError("must be a list", param=f"{path}.{key}")
        for index, part in enumerate(parts):
            text = part.get("text") if isinstance(part, dict) else None
            if not isinstance(text, str):
                raise ProtocolError("must be an object with a string `text`", param=f"{path}.{key}.{index}")
            texts.append(text)
        if texts:
            break
    return {"type": "thinking", "thinking": "".join(texts), "signature": encrypted}


def _drop_thinking_only_turns(messages: list[dict[str, Any]]) -> None:
    """Remove assistant turns made only of thinking blocks, then merge the turns around them.

    Anthropic rejects such a turn. It comes from a reasoning item whose output the client did not
    send back.
    """
    kept: list[dict[str, Any]] = []
    for message in messages:
        if message["role"] == "assistant":
            if all(block["type"] in ("thinking", "redacted_thinking") for block in message["content"]):
                continue
        if kept and kept[-1]["role"] == message["role"]:
            kept[-1]["content"].extend(message["content"])
        else:
            kept.append(message)
    messages[:] = kept


def _turn_orphan_results_into_text(messages: list[dict[str, Any]]) -> None:
    """Turn each tool_result without a tool_use in the assistant turn before it into user text.

    Anthropic rejects such a result. It comes from a call item this translation dropped, and its
    output is kept as text so that the model still receives it.
    """
    previous_ids: set[str] = set()
    for message in messages:
        if message["role"] == "assistant":
            previous_ids = {block["id"] for block in message["content"] if block["type"] == "tool_use"}
            continue
        content: list[dict[str, Any]] = []
        for block in message["content"]:
            if block["type"] == "tool_result" and block["tool_use_id"] not in previous_ids:
                logger.debug("tool output %s has no matching call; sending it as text", block["tool_use_id"])
                content.extend(_result_as_text(block))
            else:
                content.append(block)
        message["content"] = content
        previous_ids = set()


def _result_as_text(block: dict[str, Any]) -> list[dict[str, Any]]:
    header = f"Output of tool call {block['tool_use_id']}:"
    result = block.get("content")
    if result is None:
        return [{"type": "text", "text": f"{header} (empty)"}]
    if isinstance(result, str):
        return [{"type": "text", "text": f"{header}\n{result}"}]
    return [{"type": "text", "text": header}, *result]
