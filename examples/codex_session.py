"""Replay a Codex-style session of four turns through leangate with the official openai SDK.

Usage: python examples/codex_session.py http://127.0.0.1:8787

The gateway should run in front of `leangate stub-upstream`, whose `<<call NAME {json}>>` markers
make the stand-in model call tools. Turn 1 calls the `shell` function, turn 2 replies to its output
(streamed), turn 3 calls the freeform `apply_patch` tool (streamed), and turn 4 replies to its output.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import openai

TOOLS_FILE = Path(__file__).resolve().parent.parent / "tests" / "data" / "codex_cli.openai_responses_format.json"
PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hello\n*** End Patch"


def user_message(text: str) -> dict:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def run_turn(client: openai.OpenAI, number: int, history: list, tools: list, stream: bool):
    arguments = {"model": "leangate-auto", "instructions": "You are Codex.", "input": history, "tools": tools,
                 "store": False}
    if stream:
        with client.responses.stream(**arguments) as events:
            names = [event.type for event in events]
            response = events.get_final_response()
        detail = f"{len(names)} events, first {names[0]}, last {names[-1]}"
    else:
        raw = client.responses.with_raw_response.create(**arguments)
        response = raw.parse()
        detail = (f"tier {raw.headers['x-leangate-tier']}, class {raw.headers.get('x-leangate-class')}, "
                  f"tokens {raw.headers['x-leangate-tokens-before']} -> {raw.headers['x-leangate-tokens-after']}")
    items = [(item.type, getattr(item, "name", None)) for item in response.output]
    usage = response.usage
    print(f"turn {number} ({'stream' if stream else 'create'}): status {response.status}, output {items}, "
          f"input {usage.input_tokens} (cached {usage.input_tokens_details.cached_tokens}), "
          f"output {usage.output_tokens}; {detail}")
    return response


def main(base_url: str) -> None:
    client = openai.OpenAI(base_url=base_url + "/v1", api_key="codex-key", max_retries=0,
                           default_headers={"session_id": str(uuid.uuid4()), "originator": "codex_cli_rs"})
    tools = json.loads(TOOLS_FILE.read_text(encoding="utf-8"))
    tools.append({"type": "custom", "name": "apply_patch", "description": "Apply a patch to files.",
                  "format": {"type": "grammar", "syntax": "lark", "definition": "start: /(.|\\n)+/"}})

    history = [user_message('Show the last commit. <<call shell {"command": ["git", "log", "-1", "--oneline"]}>>')]
    response = run_turn(client, 1, history, tools, stream=False)
    call = next(item for item in response.output if item.type == "function_call")
    history += [
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "a1b2c3d Fix the checkout total"},
    ]

    response = run_turn(client, 2, history, tools, stream=True)
    history += [
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": response.output_text}]},
        user_message("Add a hello file. <<call apply_patch " + json.dumps({"input": PATCH}) + ">>"),
    ]

    response = run_turn(client, 3, history, tools, stream=True)
    patch = next(item for item in response.output if item.type == "custom_tool_call")
    print("   apply_patch input:", patch.input.replace("\n", "\\n"))
    history += [
        {"type": "custom_tool_call", "call_id": patch.call_id, "name": patch.name, "input": patch.input},
        {"type": "custom_tool_call_output", "call_id": patch.call_id, "output": "Success. Updated: A hello.txt"},
    ]

    response = run_turn(client, 4, history, tools, stream=False)
    print("   final text:", response.output_text)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python examples/codex_session.py http://127.0.0.1:PORT")
    main(sys.argv[1])
