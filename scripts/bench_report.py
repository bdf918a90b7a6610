#!/usr/bin/env python3
"""Merges chat-bench reports and renders them.

  bench_report.py merge OUT.json PART.json...   sums the parts of one run
  bench_report.py render DIR                    DIR/*.json -> DIR/README.md, DIR/latency.png
"""
import glob
import json
import os
import platform
import sys


# chat-bench's rule (bench/src/report.rs, SATURATED_LATE_SHARE): a run fell
# behind when more than 1 % of its window's messages arrived after the window.
SATURATED_LATE_SHARE = 0.01


def saturated(r):
    """Whether run r fell behind the offered rate (None: not recorded, a
    report from before chat-bench counted late deliveries)."""
    if "delivered_after_window" not in r:
        return None
    return r["delivered"] > 0 and r["delivered_after_window"] > SATURATED_LATE_SHARE * r["delivered"]


def shown(r):
    """The run's label, marked when it fell behind."""
    return r["label"] + (" (saturated)" if saturated(r) else "")


def merge(out, parts):
    reports = [json.load(open(p)) for p in parts]
    r = dict(reports[0])
    for k in ("users", "sessions", "sent_acked", "sent_per_s", "delivered", "delivered_per_s", "lost", "duplicated", "backpressure"):
        r[k] = sum(x[k] for x in reports)
    if all("delivered_after_window" in x for x in reports):
        r["delivered_after_window"] = sum(x["delivered_after_window"] for x in reports)
        r["saturated"] = saturated(r)
    r["connect_seconds"] = max(x["connect_seconds"] for x in reports)
    errors = {}
    for x in reports:
        for code, n in x["errors"].items():
            errors[code] = errors.get(code, 0) + n
    r["errors"] = errors
    closed = {}
    for x in reports:
        for code, n in x.get("sessions_closed", {}).items():
            closed[code] = closed.get(code, 0) + n
    r["sessions_closed"] = closed
    # CPU: the watched servers once (every part saw them over about the same
    # window), every generator process.
    cpu = [c for c in reports[0].get("cpu", []) if not c["name"].startswith("chat-bench")]
    cpu += [c for x in reports for c in x.get("cpu", []) if c["name"].startswith("chat-bench")]
    r["cpu"] = cpu
    # The scripts/bench.sh command line that makes this run again.
    if os.environ.get("BENCH_AGAIN"):
        r["again"] = os.environ["BENCH_AGAIN"]
    if len(reports) > 1:
        # Percentiles of separate processes cannot be combined exactly: keep
        # the worst of each, and say so.
        lat = {k: max(x["latency"][k] for x in reports) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")}
        lat["count"] = sum(x["latency"]["count"] for x in reports)
        lat["note"] = f"worst of {len(reports)} processes"
        r["latency"] = lat
        # Node memory: the last process to finish saw every session connected.
        nodes = {}
        for x in reports:
            for m in x["node_memory"]:
                cur = nodes.setdefault(m["node"], dict(m, sessions=0))
                cur["sessions"] += m["sessions"]
                cur["rss_before_bytes"] = min(cur["rss_before_bytes"], m["rss_before_bytes"])
                cur["rss_connected_bytes"] = max(cur["rss_connected_bytes"], m["rss_connected_bytes"])
                cur["rss_end_bytes"] = max(cur["rss_end_bytes"], m["rss_end_bytes"])
        for m in nodes.values():
            grown = m["rss_connected_bytes"] - m["rss_before_bytes"]
            m["bytes_per_session"] = grown / m["sessions"] if m["sessions"] else 0
        r["node_memory"] = list(nodes.values())
        r["command"] = f"{len(reports)} processes: " + reports[0]["command"]
    r["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, {round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB"
    json.dump(r, open(out, "w"), indent=2)


def order(r):
    """Scenario, then offered rate, then run number: `redis-12000#2` after
    `redis-12000` and before `redis` (20,000)."""
    base, _, run = r["label"].partition("#")
    return (base.partition("-")[0], r["target_rate"], int(run or 1))


def render(d):
    runs = sorted((json.load(open(p)) for p in glob.glob(os.path.join(d, "*.json"))), key=order)
    lines = [
        "# Benchmark results",
        "",
        "Produced by `scripts/bench.sh <scenario>` (release build; the load generator `chat-bench`, from `bench/`, on the same machine).",
        "Numbers are measured, not asserted; see the command of each run.",
        "",
        "| scenario | sessions | target msg/s | sent msg/s | delivered msg/s | p50 ms | p90 ms | p99 ms | max ms | lost | dup | errors | closed by node | node RSS / session after connecting | CPU over the window (% of one core) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lat = r["latency"]
        per = ", ".join(f"{m['bytes_per_session'] / 1024:.1f} KiB" for m in r["node_memory"])
        errors = ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "0"
        closed = ", ".join(f"{k}: {v}" for k, v in r.get("sessions_closed", {}).items()) or "0"
        cpu = r.get("cpu", [])
        cpu_s = ", ".join(f"{c['name']} {c['percent_of_one_core']:.0f}" for c in cpu)
        if cpu:
            cpu_s += f"; **total {sum(c['percent_of_one_core'] for c in cpu):.0f}** of {(os.cpu_count() or 1) * 100}"
        lines.append(
            f"| {shown(r)} | {r['sessions']} | {r['target_rate']} | {r['sent_per_s']:.0f} | {r['delivered_per_s']:.0f} "
            f"| {lat['p50_ms']:.2f} | {lat['p90_ms']:.2f} | {lat['p99_ms']:.2f} | {lat['max_ms']:.1f} "
            f"| {r['lost']} | {r['duplicated']} | {errors} | {closed} | {per} | {cpu_s or '-'} |"
        )
    costed = [r for r in runs if r["target_rate"] > 0 and r.get("cpu") and r["delivered_per_s"] > 0]
    if costed:
        cores = os.cpu_count() or 1
        lines += [
            "",
            "CPU per delivered message: each process's CPU over the window divided by the delivery rate, in µs, "
            "with the part spent in the kernel (on loopback a write also pays the TCP receive work of its peer) in brackets. "
            f"The ceiling is what this machine's {cores} cores could carry at that cost with nothing idle: "
            "latency targets need a rate well below it. "
            "CPU time spent spinning counts as use (RabbitMQ's Erlang schedulers busy-wait before they sleep), "
            "so where RabbitMQ runs the ceiling is a lower bound. "
            "A run marked saturated fell behind (more than 1 % of its window's messages arrived after the window): "
            "the work on those fell outside the window, so its µs per message are underestimates and its ceiling an overestimate. "
            "The server columns leave the generator out (every process but chat-bench): what the server alone costs "
            "per message, and about what the same cores could carry if the generator ran elsewhere (about: on loopback "
            "each side's writes carry part of the other's receive work).",
            "",
            "| scenario | delivered msg/s | µs of CPU per message (kernel) | total µs | ceiling msg/s | server µs | server ceiling msg/s |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in costed:
            us = lambda pct: pct / 100 / r["delivered_per_s"] * 1e6
            parts = []
            for c in r["cpu"]:
                kernel = c.get("system_percent_of_one_core")
                parts.append(f"{c['name']} {us(c['percent_of_one_core']):.0f}" + (f" ({us(kernel):.0f})" if kernel is not None else ""))
            total = sum(us(c["percent_of_one_core"]) for c in r["cpu"])
            server = sum(us(c["percent_of_one_core"]) for c in r["cpu"] if not c["name"].startswith("chat-bench"))
            server_s = f"{server:.0f} | {cores * 1e6 / server:,.0f}" if server > 0 else "- | -"
            lines.append(
                f"| {shown(r)} | {r['delivered_per_s']:.0f} | {', '.join(parts)} | {total:.0f} | {cores * 1e6 / total:,.0f} | {server_s} |"
            )
    synced = [r for r in runs if r.get("sync")]
    if synced:
        lines += [
            "",
            "Catch-up after the traffic: the first users of each run open a new session and `sync` their whole inbox "
            "from pts 0 (pages of 1000), one user after another; every acknowledged message of theirs must be there once.",
            "",
            "| scenario | users | pages | entries | entries/s | page p50 ms | page p99 ms | page max ms | missing | dup | errors |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in synced:
            s, lat = r["sync"], r["sync"]["page_latency"]
            lines.append(
                f"| {r['label']} | {s['users']} | {s['pages']} | {s['entries']} | {s['entries_per_s']:.0f} "
                f"| {lat['p50_ms']:.2f} | {lat['p99_ms']:.2f} | {lat['max_ms']:.1f} | {s['missing']} | {s['duplicated']} | {s['errors']} |"
            )
    lines += ["", "Reproduce, machines, and the load generator's own command line:", ""]
    for r in runs:
        again = r.get("again")
        if not again:
            # Reports made before bench.sh recorded its command line.
            base, _, run = r["label"].partition("#")
            scenario, _, rate = base.partition("-")
            if base.startswith("redis-archive"):
                scenario, rate = "redis-archive", base[len("redis-archive") + 1 :]
            again = f"RATE={rate} " if rate else ""
            again += f"RUNS={run} " if run else ""
            again += f"scripts/bench.sh {scenario}"
        lines.append(f"- **{r['label']}**: `{again}` on {r.get('machine', '?')}; ran `{r['command']}`")
    idle = [r for r in runs if r["target_rate"] == 0]
    for r in idle:
        for m in r["node_memory"]:
            per = m["bytes_per_session"]
            lines += [
                "",
                f"Idle sessions: **measured** {m['sessions']} sessions on one node at {per / 1024:.1f} KiB of node RSS each "
                f"({m['rss_connected_bytes'] / 2**20:.0f} MiB in all). One process may open at most 20,000 files here, "
                "so one node cannot hold more; 100,000 sessions per node is an **extrapolation**: "
                f"about {100_000 * per / 2**30:.2f} GiB at the measured cost per session.",
            ]
    open(os.path.join(d, "README.md"), "w").write("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
        return
    traffic = [r for r in runs if r["target_rate"] > 0]
    fig, (a, b) = plt.subplots(1, 2, figsize=(16, 6), gridspec_kw={"width_ratios": [3, 1]})
    if traffic:
        xs = range(len(traffic))
        for i, (q, c) in enumerate((("p50_ms", "#4c72b0"), ("p90_ms", "#dd8452"), ("p99_ms", "#c44e52"))):
            a.bar([x + i * 0.27 for x in xs], [r["latency"][q] for r in traffic], 0.27, label=q[:3], color=c)
        a.set_xticks([x + 0.27 for x in xs], [f"{r['label']} ({r['delivered_per_s']:.0f}/s)" for r in traffic], fontsize=7, rotation=40, ha="right")
        a.set_ylabel("send -> msg latency (ms, log scale)")
        a.set_yscale("log")
        a.set_title("End-to-end latency")
        a.legend()
    # Idle runs only: their many sessions amortise what a node allocates once
    # (the traffic runs' figure, right after connecting fewer sessions, does not).
    mem = [(r["label"], m["bytes_per_session"] / 1024) for r in idle for m in r["node_memory"] if m["sessions"]]
    b.bar([m[0] for m in mem], [m[1] for m in mem], color="#55a868")
    b.axhline(8, color="gray", linestyle="--", label="8 KiB target")
    b.set_ylabel("node RSS per session (KiB)")
    b.set_title("Memory per idle connection")
    b.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(d, "latency.png"), dpi=110)


if __name__ == "__main__":
    if sys.argv[1] == "merge":
        merge(sys.argv[2], sys.argv[3:])
    elif sys.argv[1] == "render":
        render(sys.argv[2])
