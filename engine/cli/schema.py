"""`leangate schema`: write the policy JSON Schema generated from the pydantic models."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DESCRIPTION = "Write schemas/policy.schema.json from the policy models (editors validate policy files against it)."
DEFAULT_PATH = Path("schemas/policy.schema.json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=str(DEFAULT_PATH), help=f"Output file (default: {DEFAULT_PATH}); `-` prints it.")


def render() -> str:
    from engine.policy.models import json_schema

    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def run(args: argparse.Namespace) -> int:
    text = render()
    if args.out == "-":
        print(text, end="")
        return 0
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    return 0
