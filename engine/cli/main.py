"""The `leangate` command: one module a subcommand, imported only when that subcommand runs."""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Importing a subcommand's module only when it runs keeps
# `leangate --help` and short commands fast.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("engine.cli.serve", "Run the gateway."),
    "check": ("engine.cli.check", "Validate a policy folder; exit 1 with file:line:col errors."),
    "schema": ("engine.cli.schema", "Write schemas/policy.schema.json from the policy models."),
    "explain": ("engine.cli.explain", "Dry-run the pipeline on request files and print the decision records."),
    "test": ("engine.cli.test", "Run the policy test cases in policies/tests/."),
    "stub-upstream": ("engine.cli.stub_upstream", "Run a local stand-in provider for tests and benchmarks."),
    "demo": ("engine.cli.demo", "Start a stub provider and the gateway, send the example requests, print a table."),
    "hash-key": ("engine.cli.hash_key", "Print the sha256 hash of a gateway key for the policy's `keys:`."),
    "train-tier": ("engine.cli.train_tier", "Fit the tier model from decision logs and labels."),
    "bench": ("engine.cli.bench", "Benchmark leangate against peer gateways on loopback."),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leangate",
        description="A gateway between coding agents and model providers that cuts the tokens reaching the model.",
    )
    parser.add_argument("--version", action="store_true", help="Print the version and exit.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        parser = _top_parser()
        args = parser.parse_args(argv)
        if args.version:
            from engine import __version__

            print(f"leangate {__version__}")
            return 0
        parser.print_help()
        return 0 if not argv else 2

    name, rest = argv[0], argv[1:]
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"leangate {name}", description=getattr(module, "DESCRIPTION", help_text))
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130
