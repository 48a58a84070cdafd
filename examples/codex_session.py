"""Replay a Codex-style session of four turns through leangate with the official openai SDK.

Usage: python examples/codex_session.py http://127.0.0.1:8787  (a gateway in front of
`leangate stub-upstream`, whose `<<call NAME {json}>>` markers make the stand-in model call tools).
"""
from pathlib import Path
import json, sys, uuid
import openai
base = sys.argv[1]
client = openai.OpenAI(base_url=base + "/v1", api_key="codex-key", max_retries=0,
                       default_headers={"session_id": str(uuid.uuid4()), "originator": "codex_cli_rs"})
tools = json.load(open(Path(__file__).resolve().parent.parent / "tests" / "data" / "codex_cli.openai_responses_format.json"))
tools.append({"type": "custom", "name": "apply_patch", "description": "Apply a patch to files.",
              "format": {"type": "grammar", "syntax": "lark", "definition": "start: /(.|\\n)+/"}})
history = [{"type": "message", "role": "user", "content": [{"type": "input_text",
            "text": 'Show the last commit. <<call shell {"command": ["git", "log", "-1", "--oneline"]}>>'}]}]
def turn(n, stream):
    if stream:
        with client.responses.stream(model="leangate-auto", instructions="You are Codex.", input=history, tools=tools, store=False) as s:
            events = [e.type for e in s]
            resp = s.get_final_response()
        kinds = f"{len(events)} events, first {events[0]}, last {events[-1]}"
    else:
        raw = client.responses.with_raw_response.create(model="leangate-auto", instructions="You are Codex.", input=history, tools=tools, store=False)
        resp = raw.parse(); kinds = f"tier {raw.headers['x-leangate-tier']}, class {raw.headers.get('x-leangate-class')}, tokens {raw.headers['x-leangate-tokens-before']}->{raw.headers['x-leangate-tokens-after']}"
    items = [(o.type, getattr(o, 'name', None)) for o in resp.output]
    u = resp.usage
    print(f"turn {n} ({'stream' if stream else 'create'}): status {resp.status}, output {items}, usage in {u.input_tokens} (cached {u.input_tokens_details.cached_tokens}) out {u.output_tokens}; {kinds}")
    return resp
r = turn(1, False)
call = next(o for o in r.output if o.type == "function_call")
history += [{"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "a1b2c3d Fix the checkout total"}]
r = turn(2, True)
history += [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": r.output_text}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": 'Add a hello file. <<call apply_patch {"input": "*** Begin Patch\\n*** Add File: hello.txt\\n+hello\\n*** End Patch"}>>'}]}]
r = turn(3, True)
patch = next(o for o in r.output if o.type == "custom_tool_call")
print("   custom tool input:", patch.input.replace("\n", "\\n"))
history += [{"type": "custom_tool_call", "call_id": patch.call_id, "name": patch.name, "input": patch.input},
            {"type": "custom_tool_call_output", "call_id": patch.call_id, "output": "Success. Updated: A hello.txt"}]
r = turn(4, False)
print("   final text:", r.output_text)
