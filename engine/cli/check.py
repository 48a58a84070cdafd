"""`leangate check`: validate a policy folder without starting a server."""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = "Validate a policy folder (default.yaml and teams/*.yaml). Prints file:line:col errors and exits 1 when invalid."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", nargs="?", default="policies", help="Policy folder (default: policies).")


def run(args: argparse.Namespace) -> int:
    from engine.policy.errors import PolicyError
    from engine.policy.loader import load_policy_set

    try:
        policies = load_policy_set(args.directory)
    except PolicyError as error:
        for issue in error.issues:
            print(issue, file=sys.stderr)
        print(f"{len(error.issues)} error(s) in {args.directory}", file=sys.stderr)
        return 1
    for warning in policies.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"ok: {len(policies.files)} file(s), teams: {', '.join(policies.team_names())}, version {policies.version}")
    return 0
