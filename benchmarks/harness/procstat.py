"""CPU time and peak memory of a process and its descendants, read from /proc (Linux only)."""

from __future__ import annotations

import os
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in brackets and may contain spaces, so split after it.
    return text[text.rindex(")") + 2:].split()


def process_tree(pid: int) -> list[int]:
    """Return `pid` and every live descendant of it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending.extend(children.get(current, []))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """Return the user plus system CPU time of `pids`, in seconds (processes that ended count 0)."""
    total_ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            # Fields 14 and 15 of /proc/PID/stat (utime, stime), counted from 1 with pid and comm.
            total_ticks += int(fields[11]) + int(fields[12])
    return total_ticks / CLOCK_TICKS


def peak_memory_mib(pids: list[int]) -> float:
    """Return the sum of VmHWM (peak resident set) over `pids`, in MiB."""
    total_kib = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                total_kib += int(line.split()[1])
    return total_kib / 1024
