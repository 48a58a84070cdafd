"""`leangate explain`: run the pipeline as a dry run on request files and print the decision records."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson

DESCRIPTION = (
    "Run the pipeline as a dry run (no upstream call, nothing stored) on request files and print each "
    "decision record. A file holds an Anthropic Messages, OpenAI Chat or OpenAI Responses body, or "
    '{"body": ..., "headers": {...}} to add request headers such as a session id.'
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="REQUEST.json", help="Request body files.")
    parser.add_argument("--policies", default="policies", help="Policy folder (default: policies).")
    parser.add_argument("--team", default="default", help="Team whose policy applies (default: default).")
    parser.add_argument("--json", action="store_true", help="Print one JSON object per file, one per line.")
    parser.add_argument("--protocol", choices=["auto", "anthropic", "openai-chat", "openai-responses"], default="auto",
                        help="Client protocol of the files (default: detected from each body).")


_OPENAI_ROLES = {"system", "developer", "tool", "function"}


def detect_protocol(body: Any) -> str:
    """Tell an Anthropic Messages body from an OpenAI Chat or Responses body by their shapes."""
    if not isinstance(body, dict):
        return "anthropic"
    if "input" in body and "messages" not in body:
        return "openai-responses"
    if any(key in body for key in ("max_completion_tokens", "stream_options", "n", "response_format", "functions")):
        return "openai-chat"
    if isinstance(body.get("tool_choice"), str):
        return "openai-chat"
    for tool in body.get("tools") or ():
        if isinstance(tool, dict) and isinstance(tool.get("function"), dict):
            return "openai-chat"
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        if message.get("role") in _OPENAI_ROLES or "tool_calls" in message:
            return "openai-chat"
        content = message.get("content")
        if isinstance(content, list) and any(isinstance(p, dict) and p.get("type") == "image_url" for p in content):
            return "openai-chat"
    return "anthropic"


def read_request(path: Path) -> tuple[Any, dict[str, str]]:
    data = orjson.loads(path.read_bytes())
    if isinstance(data, dict) and "body" in data and isinstance(data.get("headers", {}), dict) and "model" not in data:
        headers = {str(k).lower(): str(v) for k, v in (data.get("headers") or {}).items()}
        return data["body"], headers
    return data, {}


def parse_request(protocol: str, body: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    from engine.http.client_protocols import ANTHROPIC, OPENAI_CHAT, OPENAI_RESPONSES

    client = {"anthropic": ANTHROPIC, "openai-chat": OPENAI_CHAT, "openai-responses": OPENAI_RESPONSES}[protocol]
    return client.parse(body)


async def explain_file(path: Path, policies: Any, team: str, runtime: Any, forced_protocol: str) -> dict[str, Any]:
    from engine.pipeline.context import RequestContext, resolve_session
    from engine.pipeline.run import run_pipeline
    from engine.protocol.errors import ProtocolError

    policy = policies.for_team(team)
    record: dict[str, Any] = {"file": str(path), "policy_version": policies.version, "team": team}
    try:
        body, headers = read_request(path)
    except (OSError, orjson.JSONDecodeError) as exc:
        record["error"] = f"cannot read request: {exc}"
        return record
    protocol = detect_protocol(body) if forced_protocol == "auto" else forced_protocol
    record["protocol"] = protocol
    try:
        canonical, side = parse_request(protocol, body)
    except ProtocolError as exc:
        record["error"] = f"invalid request: {exc}"
        return record
    session_id, session_source = resolve_session(headers, canonical, policy.sessions.header,
                                                 policy.sessions.derive_from_conversation)
    ctx = RequestContext(
        request_id=f"explain:{path.name}",
        protocol=protocol,  # type: ignore[arg-type]
        body=canonical,
        headers=headers,
        team=team,
        session_id=session_id,
        scratch={"session_source": session_source},
        requested_model=str(body.get("model") or "") if isinstance(body, dict) else "",
        stream=bool(side.get("stream")),
    )
    await run_pipeline(ctx, policy, runtime, dry_run=True)
    record["requested_model"] = ctx.requested_model
    record.update(ctx.record)
    tier = record.get("tier") or {}
    record["tier"] = {**tier, "tier": tier.get("tier"), "provider": tier.get("provider"), "model": tier.get("model")}
    return record


def _print_human(record: dict[str, Any]) -> None:
    print(f"== {record['file']}")
    if "error" in record:
        print(f"   error: {record['error']}")
        return
    tier = record.get("tier") or {}
    tokens = record.get("tokens") or {}
    print(f"   protocol {record.get('protocol')}, team {record['team']}, policy {record['policy_version']}")
    print(f"   tier {tier.get('tier')} -> {tier.get('provider')}/{tier.get('model')} (decided by {tier.get('decided_by')})")
    if "probability" in tier:
        print(f"   strong-tier probability {tier['probability']:.3f}")
    before, after = tokens.get("before"), tokens.get("after")
    if before:
        print(f"   tokens {before} -> {after} ({100 * (before - after) / before:.1f}% fewer)")
    tools = record.get("tools")
    if tools:
        print(f"   class {tools.get('class')}: kept {len(tools.get('kept') or [])} tools, removed {tools.get('removed')}")
    for entry in record.get("compression") or []:
        print(f"   compression {entry.get('target')}/{entry.get('action')}: {entry.get('tokens_before')} -> {entry.get('tokens_after')}"
              f" (lossless={entry.get('lossless')}, verified={entry.get('verified')})")
    cache = record.get("cache")
    if cache:
        print(f"   cache {cache.get('result')} (similarity {cache.get('similarity')}, guard {cache.get('guard')})")
    prompt_cache = record.get("prompt_cache")
    if prompt_cache:
        carried = ", ".join(prompt_cache.get("carried") or []) or "none"
        added = ", ".join(prompt_cache.get("added") or []) or "none"
        print(f"   prompt cache {prompt_cache.get('mode')} ({prompt_cache.get('provider_kind')}): breakpoints carried {carried}; "
              f"added {added}; cached prefix about {prompt_cache.get('cached_prefix_tokens')} tokens")


def run(args: argparse.Namespace) -> int:
    from engine.pipeline.runtime import Runtime
    from engine.policy.errors import PolicyError
    from engine.policy.loader import load_policy_set

    try:
        policies = load_policy_set(args.policies)
    except PolicyError as error:
        print(f"error: invalid policy:\n{error}", file=sys.stderr)
        return 1
    if args.team != "default" and args.team not in policies.teams:
        print(f"error: unknown team {args.team!r}; teams: {', '.join(policies.team_names())}", file=sys.stderr)
        return 1

    async def explain_all() -> int:
        runtime = Runtime()
        failures = 0
        try:
            for name in args.files:
                record = await explain_file(Path(name), policies, args.team, runtime, args.protocol)
                failures += "error" in record
                if args.json:
                    sys.stdout.write(orjson.dumps(record, option=orjson.OPT_NON_STR_KEYS).decode() + "\n")
                else:
                    _print_human(record)
        finally:
            await runtime.aclose()
        return 1 if failures else 0

    return asyncio.run(explain_all())
