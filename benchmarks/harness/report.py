"""Markdown tables and a PNG chart from the results of `benchmarks.harness.run.run_benchmark`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.harness.load import percentile
from benchmarks.harness.scenarios import FORWARDING_RUN, UNIQUE_RUN


def _gateways(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return list(results["gateways"].items())


def _ok(gateway: dict[str, Any]) -> bool:
    return gateway.get("status") == "ok"


def latency_percentiles(values: list[float]) -> tuple[float, float] | None:
    """Return (p50, p95) of a list of milliseconds, or None when it is empty."""
    if not values:
        return None
    ordered = sorted(values)
    return percentile(ordered, 0.50), percentile(ordered, 0.95)


def _money(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"${value:.4f}" if value < 1 else f"${value:.2f}"


def _delta(value: float | None, baseline: float | None) -> str:
    if value is None or not baseline:
        return "—"
    return f"{(value - baseline) / baseline * 100:+.1f}%"


def _models(scenario: dict[str, Any]) -> str:
    calls = scenario["billed"]["by_model"]
    if not calls:
        return "none (cache hit)" if scenario.get("cache_hits") else "none"
    return ", ".join(f"{model} ×{count}" if count > 1 else model for model, count in calls.items())


def _tiers(scenario: dict[str, Any]) -> str:
    tiers = scenario.get("tiers") or []
    if not tiers:
        return "—"
    counts: dict[str, int] = {}
    for tier in tiers:
        counts[tier] = counts.get(tier, 0) + 1
    return ", ".join(f"{tier} ×{count}" if count > 1 else tier for tier, count in counts.items())


def gateway_table(results: dict[str, Any]) -> str:
    rows = ["| gateway | version | status | command or reason |", "|---|---|---|---|"]
    for name, gateway in _gateways(results):
        detail = gateway.get("command", "") if _ok(gateway) else gateway.get("reason", "")
        rows.append(f"| {name} | {gateway.get('version', '—')} | {gateway['status']} | {_cell(detail)} |")
    return "\n".join(rows)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def scenario_table(results: dict[str, Any]) -> str:
    """Build one row per scenario and gateway: billed tokens, cost, tier, model and added latency."""
    rows = [
        "| scenario | gateway | uncached in | cache read | cache write | output | cost | vs direct | tier | upstream model | added p50 ms | added p95 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    direct = results["gateways"].get("direct", {})
    for scenario_info in results["scenarios"]:
        key = scenario_info["key"]
        baseline = direct.get("scenarios", {}).get(key) if _ok(direct) else None
        baseline_latency = latency_percentiles(baseline.get("latencies_ms", [])) if baseline else None
        for name, gateway in _gateways(results):
            label = f"{scenario_info['title']}" if name == next(iter(results["gateways"])) else ""
            if not _ok(gateway):
                rows.append(f"| {label} | {name} | {gateway['status']}: see the gateway table | | | | | | | | | |")
                continue
            scenario = gateway["scenarios"][key]
            if not scenario["ok"]:
                rows.append(f"| {label} | {name} | failed: {_cell(scenario['error'][:160])} | | | | | | | | | |")
                continue
            billed = scenario["billed"]
            writes = billed["cache_write_5m"] + billed["cache_write_1h"]
            latency = latency_percentiles(scenario.get("latencies_ms", []))
            added = ("—", "—")
            if latency and baseline_latency and name != "direct":
                added = (f"{latency[0] - baseline_latency[0]:+.1f}", f"{latency[1] - baseline_latency[1]:+.1f}")
            elif latency and name == "direct":
                added = (f"({latency[0]:.1f})", f"({latency[1]:.1f})")
            versus = "—"
            if name != "direct" and baseline:
                versus = _delta(scenario["cost_usd"], baseline["cost_usd"])
            rows.append(
                f"| {label} | {name} | {billed['uncached']:,} | {billed['cache_read']:,} | {writes:,} | {billed['output']:,} "
                f"| {_money(scenario['cost_usd'])} | {versus} | {_tiers(scenario)} | {_models(scenario)} | {added[0]} | {added[1]} |"
            )
    return "\n".join(rows)


def load_table(results: dict[str, Any]) -> str:
    """Build one row per gateway and load run, with the gateway's memory after start and at its peak."""
    rows = [
        "| gateway | load run | requests/s | errors | served from cache | p50 ms | p95 ms | CPU ms/request | VmHWM after start MiB | VmHWM at end MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, gateway in _gateways(results):
        if not _ok(gateway):
            rows.append(f"| {name} | {gateway['status']} | | | | | | | | |")
            continue
        memory = f"{gateway.get('memory_after_start_mib', 0):.0f} | {gateway.get('peak_memory_mib', 0):.0f}"
        for label, load in gateway["load"].items():
            if "error" in load:
                rows.append(f"| {name} | {label} | failed: {_cell(load['error'][:160])} | | | | | | {memory} |")
                continue
            cpu = load.get("cpu_ms_per_request")
            errors = str(load["errors"])
            if load["errors"]:
                errors += f" ({_cell('; '.join(load['error_samples'])[:160])})"
            hits = f"{load.get('cache_hits', 0) / load['requests']:.0%}" if load["requests"] else "—"
            # The load client times failed requests too, so a run where every request failed has no latency to show.
            all_failed = load["errors"] == load["requests"]
            p50 = "—" if all_failed else f"{load['p50_ms']:.0f}"
            p95 = "—" if all_failed else f"{load['p95_ms']:.0f}"
            rows.append(f"| {name} | {label} | {load['per_second']:.0f} | {errors} | {hits} | {p50} | "
                        f"{p95} | {f'{cpu:.2f}' if cpu is not None else 'n/a'} | {memory} |")
    return "\n".join(rows)


def headline(results: dict[str, Any]) -> list[str]:
    """Summarise the session cost per gateway and list every scenario where leangate billed more."""
    lines = []
    direct = results["gateways"].get("direct", {})
    direct_session = direct.get("scenarios", {}).get("session", {}).get("cost_usd") if _ok(direct) else None
    for name, gateway in _gateways(results):
        if not _ok(gateway):
            continue
        session = gateway["scenarios"]["session"]
        if session["ok"]:
            versus = "" if name == "direct" else f" ({_delta(session['cost_usd'], direct_session)} against direct)"
            lines.append(f"- {name}: the replayed session billed {_money(session['cost_usd'])}{versus}.")
    leangate = results["gateways"].get("leangate", {})
    if _ok(leangate) and _ok(direct):
        for info in results["scenarios"]:
            mine = leangate["scenarios"][info["key"]].get("cost_usd")
            theirs = direct["scenarios"][info["key"]].get("cost_usd")
            if mine is not None and theirs is not None and mine > theirs:
                lines.append(f"- leangate billed more than direct on \"{info['title']}\": "
                             f"{_money(mine)} against {_money(theirs)} ({_delta(mine, theirs)}).")
        lines += _session_lever_lines(leangate.get("session_decisions", []))
        lines += _target_lines(results, leangate, direct)
        pipeline = latency_percentiles(leangate.get("pipeline_ms", []))
        if pipeline:
            lines.append(f"- leangate's own pipeline time (`pipeline_ms` in its decision log) over the scenario "
                         f"requests: p50 {pipeline[0]:.1f} ms, p95 {pipeline[1]:.1f} ms.")
    lines += _first_sight_lines(results)
    for name, gateway in _gateways(results):
        if _ok(gateway) and gateway.get("egress"):
            lines.append(f"- {name} had connections outside loopback: {', '.join(gateway['egress'])}.")
    return lines


def _first_sight_lines(results: dict[str, Any]) -> list[str]:
    """Compare each request's latency in the billing pass, where every text is new to the gateway
    (so leangate computes its embedding), with the same request sent directly."""
    direct = results["gateways"].get("direct", {})
    if not _ok(direct):
        return []
    lines = []
    for name, gateway in _gateways(results):
        if name == "direct" or not _ok(gateway):
            continue
        differences = []
        for info in results["scenarios"]:
            mine = gateway["scenarios"][info["key"]].get("first_latencies_ms", [])
            theirs = direct["scenarios"][info["key"]].get("first_latencies_ms", [])
            differences += [a - b for a, b in zip(mine, theirs) if a is not None and b is not None]
        spread = latency_percentiles(differences)
        if spread:
            lines.append(f"- {name}: latency added on the first sight of each request (billing pass, one sample "
                         f"per request, {len(differences)} requests): p50 {spread[0]:+.1f} ms, p95 {spread[1]:+.1f} ms.")
    return lines


def _session_lever_lines(decisions: list[dict[str, Any]]) -> list[str]:
    """Describe where leangate changed the tool list or the tier within the replayed session,
    the two changes that make the provider write the cached prefix again."""
    if not decisions:
        return []
    changes = []
    for index in range(1, len(decisions)):
        before, after = decisions[index - 1], decisions[index]
        if before["tools"] != after["tools"]:
            changes.append(f"tools {before['tools']} → {after['tools']} at request {index + 1}")
        if before["tier"] != after["tier"]:
            changes.append(f"tier {before['tier']} → {after['tier']} at request {index + 1}")
    if not changes:
        return [f"- leangate kept one tool list ({decisions[0]['tools']} tools) and one tier "
                f"({decisions[0]['tier']}) through the session."]
    return [f"- leangate's session decisions: {', '.join(changes)}. Each change starts a new cached "
            "prefix, which the provider writes again at 1.25x the input price."]


# leangate's targets on a 2-core machine with a 50 ms stub.
TARGET_ADDED_P50_MS = 4.0
TARGET_REQUESTS_PER_SECOND = 650.0
TARGET_PEAK_MEMORY_MIB = 200.0


def _target_lines(results: dict[str, Any], leangate: dict[str, Any], direct: dict[str, Any]) -> list[str]:
    added = []
    for info in results["scenarios"]:
        mine = latency_percentiles(leangate["scenarios"][info["key"]].get("latencies_ms", []))
        theirs = latency_percentiles(direct["scenarios"][info["key"]].get("latencies_ms", []))
        if mine and theirs:
            added.append(mine[0] - theirs[0])
    lines = []
    if added:
        median = sorted(added)[len(added) // 2]
        verdict = "met" if median < TARGET_ADDED_P50_MS else "missed"
        lines.append(f"- leangate target, latency added at p50 under {TARGET_ADDED_P50_MS:g} ms: {verdict} "
                     f"(median over the scenarios {median:+.1f} ms, range {min(added):+.1f} to {max(added):+.1f} ms). "
                     "The latency passes repeat each text, so leangate's embedding memo serves all of them but the "
                     "first: these are the cheap stages.")
    for label, meaning in ((FORWARDING_RUN, "one text repeated with the response cache bypassed, so every "
                                             "request runs every stage and reaches the stub"),
                           (UNIQUE_RUN, "a unique text per request, each embedded once")):
        load = leangate.get("load", {}).get(label, {})
        if "per_second" in load:
            verdict = "met" if load["per_second"] >= TARGET_REQUESTS_PER_SECOND else "missed"
            lines.append(f"- leangate target, at least {TARGET_REQUESTS_PER_SECOND:g} requests/s at "
                         f"{results['options']['clients']} clients: {verdict} on \"{label}\" "
                         f"({load['per_second']:.0f} requests/s, {meaning}).")
    peak = leangate.get("peak_memory_mib")
    if peak:
        verdict = "met" if peak < TARGET_PEAK_MEMORY_MIB else "missed"
        lines.append(f"- leangate target, peak memory under {TARGET_PEAK_MEMORY_MIB:g} MiB: {verdict} ({peak:.0f} MiB).")
    return lines


def markdown(results: dict[str, Any], command: str) -> str:
    machine = results["machine"]
    options = results["options"]
    prices = results["prices"]["per_million_tokens"]
    price_text = "; ".join(
        f"`{pattern}` ${price['input']:g} input, ${price['cache_write_5m']:g} 5-minute cache write, "
        f"${price['cache_read']:g} cache read, ${price['output']:g} output" for pattern, price in prices.items())
    parts = [
        f"Run {results['started']}, {results['elapsed_s']:.0f} s: `{command}`",
        "",
        f"Machine: {machine['cpu_model']}, {machine['cores']} cores, Python {machine['python']}, Node {machine['node']}, "
        f"load average {machine['load_average_start'][0]:.1f} at the start and {machine['load_average_end'][0]:.1f} "
        f"at the end. Stub latency {options['stub_latency_ms']} ms; {options['passes']} latency passes; "
        f"{options['clients']} clients for {options['load_seconds']:g} s per load run.",
        "",
        f"Prices per million tokens ({results['prices']['date']}): {price_text}.",
        "",
        gateway_table(results),
        "",
        scenario_table(results),
        "",
        load_table(results),
        "",
        *headline(results),
    ]
    return "\n".join(parts) + "\n"


def write_chart(results: dict[str, Any], path: Path) -> None:
    """Draw billed cost per scenario, the session's running cost and throughput into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gateways = [(name, gateway) for name, gateway in _gateways(results) if _ok(gateway)]
    figure, (costs, session, throughput) = plt.subplots(1, 3, figsize=(16, 5), gridspec_kw={"width_ratios": [3, 2, 1.4]})

    keys = [info["key"] for info in results["scenarios"] if info["key"] != "session"]
    width = 0.8 / max(1, len(gateways))
    for offset, (name, gateway) in enumerate(gateways):
        values = [(gateway["scenarios"][key].get("cost_usd") or 0) * 100 for key in keys]
        positions = [index + offset * width for index in range(len(keys))]
        costs.bar(positions, values, width, label=name)
    costs.set_xticks([index + width * (len(gateways) - 1) / 2 for index in range(len(keys))], keys, rotation=30, ha="right")
    costs.set_ylabel("billed cost, US cents")
    costs.set_title("One request or pair, cold prompt cache")
    costs.legend(fontsize=8, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.27))

    for name, gateway in gateways:
        running, total = [], 0.0
        for cost in gateway["scenarios"]["session"].get("per_request_cost", []):
            total += cost or 0.0
            running.append(total * 100)
        # The baseline is dashed and on top, because a gateway that forwards unchanged draws exactly over it.
        direct = name == "direct"
        session.plot(range(1, len(running) + 1), running, "--" if direct else "-", marker=".", label=name,
                     zorder=3 if direct else 2)
    session.set_xlabel("request of the replayed session")
    session.set_ylabel("running billed cost, US cents")
    session.set_title("Claude Code session, prompt caching simulated")
    session.legend()

    names = [name for name, _ in gateways]
    labels = list(gateways[0][1]["load"]) if gateways else []
    bar = 0.8 / max(1, len(labels))
    for offset, label in enumerate(labels):
        rates = [gateway["load"].get(label, {}).get("per_second", 0) for _, gateway in gateways]
        throughput.bar([index + offset * bar for index in range(len(names))], rates, bar, label=label)
    throughput.set_xticks([index + bar * (len(labels) - 1) / 2 for index in range(len(names))], names,
                          rotation=30, ha="right")
    throughput.set_ylabel(f"requests/s at {results['options']['clients']} clients")
    throughput.set_title("Throughput, 50 ms stub")
    # Below the axes: the bars reach the top of the panel, and the run names are long.
    throughput.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.3))

    figure.suptitle(f"leangate bench, {results['started']}, {results['machine']['cores']} shared cores")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
