"""`leangate bench`: compare leangate with LiteLLM, Portkey and no gateway on the same requests.

The harness lives in `benchmarks/harness/` of the repository, so this command runs from a source
checkout (the package is installed editable), not from an installed wheel.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]

DESCRIPTION = (
    "Benchmark leangate against the LiteLLM proxy, the Portkey gateway and a direct baseline, all on "
    "loopback against `leangate stub-upstream --prompt-cache --latency-ms 50`. Prints Markdown tables: "
    "billed tokens and cost per scenario, added latency, throughput, CPU time and peak memory. Peers are "
    "installed once into --peers-dir (pip and npm need the package registries); a peer that cannot be "
    "installed or started is reported as unavailable."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--smoke", action="store_true",
                        help="One short pass through leangate and the direct baseline only, no peer installs (under a minute).")
    parser.add_argument("--gateways", default="direct,leangate,litellm,portkey",
                        help="Comma-separated gateways to run, in order (default: direct,leangate,litellm,portkey).")
    parser.add_argument("--passes", type=int, default=10, help="Latency passes over every scenario (default: 10).")
    parser.add_argument("--session-length", type=int, default=30, help="Requests in the replayed session (default: 30).")
    parser.add_argument("--clients", type=int, default=50, help="Concurrent clients of the load runs (default: 50).")
    parser.add_argument("--seconds", type=float, default=8.0, help="Duration of each load run in seconds (default: 8).")
    parser.add_argument("--peers-dir", default=str(REPOSITORY / "benchmarks" / ".peers"),
                        help="Folder for the peers' installs, reused between runs (default: benchmarks/.peers).")
    parser.add_argument("--workdir", help="Folder for logs, configs and policy copies (default: a new temporary folder).")
    parser.add_argument("--json", dest="json_path", help="Also write the raw results to this JSON file.")
    parser.add_argument("--markdown", help="Also write the Markdown tables to this file.")
    parser.add_argument("--chart", help="Also draw the PNG chart to this file.")


def _check(args: argparse.Namespace) -> str | None:
    """Return an error message for invalid options, or None."""
    if not (REPOSITORY / "benchmarks" / "harness" / "run.py").exists():
        return f"the benchmark harness is missing from {REPOSITORY / 'benchmarks' / 'harness'}; run from a source checkout"
    if not Path("/proc/self/stat").exists():
        return "leangate bench reads CPU time and memory from /proc, so it runs on Linux only"
    if args.passes < 1:
        return f"--passes must be at least 1, got {args.passes}"
    if args.session_length < 1:
        return f"--session-length must be at least 1, got {args.session_length}"
    if args.clients < 1:
        return f"--clients must be at least 1, got {args.clients}"
    if args.seconds <= 0:
        return f"--seconds must be above 0, got {args.seconds}"
    return None


def run(args: argparse.Namespace) -> int:
    error = _check(args)
    if error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if str(REPOSITORY) not in sys.path:
        sys.path.insert(0, str(REPOSITORY))
    from benchmarks.harness import report
    from benchmarks.harness.run import ALL_GATEWAYS, BenchOptions, run_benchmark, smoke_options

    names = tuple(name.strip() for name in args.gateways.split(",") if name.strip())
    if not args.smoke and (not names or any(name not in ALL_GATEWAYS for name in names)):
        print(f"error: invalid --gateways {args.gateways!r}; choose from {', '.join(ALL_GATEWAYS)}", file=sys.stderr)
        return 2

    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="leangate-bench-"))
    if args.smoke:
        options = smoke_options(workdir)
    else:
        options = BenchOptions(workdir=workdir, cache_dir=Path(args.peers_dir), gateways=names, passes=args.passes,
                               session_length=args.session_length, clients=args.clients, load_seconds=args.seconds)

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    progress(f"logs and configs in {workdir}")
    results = run_benchmark(options, progress)
    command = "leangate bench " + " ".join(shlex.quote(argument) for argument in sys.argv[2:])
    text = report.markdown(results, command.strip())
    print(text)
    if args.json_path:
        Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_path).write_text(json.dumps(results, indent=1), encoding="utf-8")
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(text, encoding="utf-8")
    if args.chart:
        try:
            report.write_chart(results, Path(args.chart))
        except ImportError as error:
            print(f"error: the chart needs matplotlib ({error}); install it with `pip install -e '.[test]'`",
                  file=sys.stderr)
            return 1
    failed = [name for name, gateway in results["gateways"].items()
              if name in ("direct", "leangate") and gateway["status"] != "ok"]
    return 1 if failed else 0
