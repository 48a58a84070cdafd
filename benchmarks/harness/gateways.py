"""The gateways under test, behind one small interface, and the socket checks run on each of them.

A `Gateway` is where the client sends its requests (base URL, path, extra headers) plus the
process ids whose CPU time and memory the harness measures. The direct baseline is the stub itself.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.harness.procstat import process_tree
from engine import __version__ as leangate_version
from engine.localrun import LocalService, start_gateway

REPOSITORY = Path(__file__).resolve().parents[2]


@dataclass
class Gateway:
    name: str
    version: str
    base_url: str
    path: str = "/v1/messages"
    headers: dict[str, str] = field(default_factory=dict)
    command: str = ""
    root_pid: int | None = None
    stop: Callable[[], None] = lambda: None

    @property
    def url(self) -> str:
        return self.base_url + self.path

    def pids(self) -> list[int]:
        return process_tree(self.root_pid) if self.root_pid else []


class GatewayUnavailable(RuntimeError):
    """Raised when a gateway cannot be installed or started; the message is the reason reported."""


def direct(stub: LocalService) -> Gateway:
    """Return the baseline, where the client talks to the stub itself."""
    return Gateway("direct", "-", stub.url, command="(no gateway)", root_pid=stub.pid)


# The `leangate-lexical` variant: no embedding on the request path. The tier model without
# semantic_difficulty (policies/presets/tier-model-lexical.yaml, with the threshold its training
# suggested) and the semantic cache off, as a team that needs throughput more than routing accuracy
# would configure it.
LEXICAL_EDITS = (
    ("tier_model: !include tier-model.yaml", "tier_model: !include presets/tier-model-lexical.yaml"),
    ("cache:\n  enabled: true\n", "cache:\n  enabled: false\n"),
    ("    below: 0.2721\n", "    below: 0.3265\n"),
)


def leangate(workdir: Path, stub: LocalService, variant: str = "leangate") -> Gateway:
    """Start `leangate serve` with a copy of the repository's policies, pointed at the stub.

    The copy keeps the run on one policy while other people edit `policies/` and the gateway
    hot-reloads it. With `variant` `leangate-lexical`, the copy gets the LEXICAL_EDITS."""
    policy_dir = workdir / "policies"
    shutil.rmtree(policy_dir, ignore_errors=True)
    shutil.copytree(REPOSITORY / "policies", policy_dir)
    if variant == "leangate-lexical":
        default = policy_dir / "default.yaml"
        text = default.read_text(encoding="utf-8")
        for old, new in LEXICAL_EDITS:
            if old not in text:
                raise GatewayUnavailable(f"cannot make the lexical variant: {old.strip()!r} is not in default.yaml")
            text = text.replace(old, new)
        default.write_text(text, encoding="utf-8")
    service = start_gateway(workdir, policy_dir, stub.url, name=variant)
    return Gateway(variant, f"{leangate_version} ({_git_revision()})", service.url,
                   command=f"leangate serve --policies {policy_dir.name} --host 127.0.0.1",
                   root_pid=service.pid, stop=service.stop)


def _git_revision() -> str:
    try:
        result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPOSITORY, capture_output=True,
                                text=True, timeout=10, check=False)
    except OSError:
        return "unknown revision"
    return result.stdout.strip() or "unknown revision"


# --- socket checks ---------------------------------------------------------------------------------


def is_loopback_address(address: str) -> bool:
    """Return whether a socket address from `ss` (`127.0.0.1:80`, `[::1]:80`) is on loopback.

    Wildcard listen addresses (`0.0.0.0`, `[::]`, `*`) count as not loopback."""
    host = address.rsplit(":", 1)[0].strip("[]")
    host = host.split("%", 1)[0]
    if host in ("*", "0.0.0.0", "::"):
        return False
    try:
        parsed = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    return parsed.is_loopback


def _sockets(pids: list[int], arguments: list[str]) -> list[tuple[str, str, str]]:
    """Run `ss` and return (state, local, peer) for the sockets owned by `pids`."""
    if not pids or shutil.which("ss") is None:
        return []
    result = subprocess.run(["ss", "-H", "-n", "-p", *arguments], capture_output=True, text=True, timeout=10,
                            check=False)
    owner_markers = {f"pid={pid}," for pid in pids}
    rows = []
    for line in result.stdout.splitlines():
        if not any(marker in line for marker in owner_markers):
            continue
        columns = line.split()
        # One socket type a call, so the columns are State Recv-Q Send-Q Local Peer Process.
        if len(columns) >= 5:
            rows.append((columns[0], columns[3], columns[4]))
    return rows


def listening_addresses(pids: list[int]) -> list[str]:
    """Return the local addresses of every TCP listener of the processes `pids`."""
    return sorted({local for _, local, _ in _sockets(pids, ["-t", "-l"])})


def non_loopback_listeners(pids: list[int]) -> list[str]:
    """Return the listening TCP addresses of `pids` that are not loopback (e.g. `0.0.0.0:4000`)."""
    return sorted({local for _, local, _ in _sockets(pids, ["-t", "-l"]) if not is_loopback_address(local)})


def non_loopback_connections(pids: list[int]) -> list[str]:
    """Return the TCP and UDP peers of `pids` outside loopback, as `state peer` strings."""
    found = set()
    rows = _sockets(pids, ["-t", "-a"]) + _sockets(pids, ["-u", "-a"])
    for state, _, peer in rows:
        if state == "LISTEN" or state == "UNCONN" and peer in ("*:*", "0.0.0.0:*", "[::]:*"):
            continue
        if not is_loopback_address(peer):
            found.add(f"{state} {peer}")
    return sorted(found)
