#!/usr/bin/env python3
"""The archive benchmark's sampler and report (scripts/bench.sh archive).

  bench_archive.py sample OUT.json --metrics URL --redis-port P [--mysql-db DB] [--settings K=V...]
      every second until SIGTERM: Redis used_memory (INFO memory), the node's
      /metrics (messages stored, archive lag, written, trimmed, errors) and,
      with --mysql-db, SELECT COUNT(*) FROM chat_message; writes OUT.json.
  bench_archive.py attach OUT.json BENCH.json   puts chat-bench's report into OUT.json
  bench_archive.py render DIR                   DIR/{archive,no-archive}.json -> DIR/README.md, DIR/archive.png

Everything in the report is computed from the samples; see render().
"""
import json
import os
import platform
import signal
import subprocess
import sys
import time
import urllib.request

METRICS = {
    "chat_messages_stored_total": "stored",
    "chat_archive_lag_entries": "lag_entries",
    "chat_archive_lag_seconds": "lag_seconds",
    "chat_archive_messages_written_total": "written",
    "chat_archive_trimmed_total": "trimmed",
    "chat_archive_errors_total": "archive_errors",
}


def redis_memory(port):
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO", "memory"], capture_output=True, text=True, timeout=5).stdout
    info = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    keys = subprocess.run(["redis-cli", "-p", str(port), "DBSIZE"], capture_output=True, text=True, timeout=5).stdout
    return int(info["used_memory"]), int(info["used_memory_rss"]), int(keys.strip() or 0)


def node_metrics(url):
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    got = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) == 2 and parts[0] in METRICS:
            got[METRICS[parts[0]]] = float(parts[1])
    return got


def sql_rows(db):
    out = subprocess.run(
        ["mariadb", "--protocol=TCP", "-h127.0.0.1", "-uparley", "--password=parley", "-N", "-B", db,
         "-e", "SELECT COUNT(*) FROM chat_message"],
        capture_output=True, text=True, timeout=10,
    )
    return int(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else None


def sample(out, argv):
    opts, settings = {}, {}
    i = 0
    while i < len(argv):
        if argv[i] == "--settings":
            for kv in argv[i + 1:]:
                k, _, v = kv.partition("=")
                settings[k] = v
            break
        opts[argv[i].lstrip("-")] = argv[i + 1]
        i += 2
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    samples = []
    t0 = time.time()
    k = 0
    while not stop:
        s = {"t": round(time.time() - t0, 3)}
        try:
            s["used_memory"], s["used_memory_rss"], s["keys"] = redis_memory(opts["redis-port"])
            s.update(node_metrics(opts["metrics"]))
        except Exception as e:  # a missed sample is a gap, not the end of the run
            s["error"] = str(e)
        if opts.get("mysql-db"):
            try:
                s["sql_rows"] = sql_rows(opts["mysql-db"])
            except Exception as e:
                s["sql_error"] = str(e)
        s["sample_s"] = round(time.time() - t0 - s["t"], 3)
        samples.append(s)
        k += 1
        # Every second on the second; a slow sample skips the seconds it took.
        while time.time() - t0 < k and not stop:
            time.sleep(0.05)
        k = max(k, int(time.time() - t0))
    json.dump({"settings": settings, "samples": samples}, open(out, "w"), indent=1)


def attach(out, bench):
    r = json.load(open(out))
    r["bench"] = json.load(open(bench))
    r["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, {round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB"
    json.dump(r, open(out, "w"), indent=1)


def slope(xs, ys):
    """Least-squares slope of ys over xs."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


def traffic(samples):
    """The samples while messages were being stored: from the first with
    any stored to the last where the count still grew."""
    ok = [s for s in samples if "stored" in s and "used_memory" in s]
    moving = [i for i in range(1, len(ok)) if ok[i]["stored"] > ok[i - 1]["stored"]]
    if not moving:
        return ok, []
    return ok, ok[moving[0] - 1:moving[-1] + 1]


def analyse(r):
    ok, busy = traffic(r["samples"])
    base = ok[0]
    a = {
        "baseline_used_memory": base["used_memory"],
        "traffic_start_s": busy[0]["t"],
        "traffic_end_s": busy[-1]["t"],
        "messages": int(busy[-1]["stored"] - busy[0]["stored"]),
        "send_rate": (busy[-1]["stored"] - busy[0]["stored"]) / (busy[-1]["t"] - busy[0]["t"]),
        "used_memory_end": busy[-1]["used_memory"],
        "used_memory_peak": max(s["used_memory"] for s in busy),
    }
    # Growth per stored message over the whole traffic, least squares.
    a["bytes_per_message_whole_run"] = slope([s["stored"] for s in busy], [s["used_memory"] for s in busy])
    half = [s for s in busy if s["t"] >= (busy[0]["t"] + busy[-1]["t"]) / 2]
    a["second_half_from_s"] = half[0]["t"]
    a["bytes_per_message_second_half"] = slope([s["stored"] for s in half], [s["used_memory"] for s in half])
    a["used_memory_slope_second_half_bytes_per_s"] = slope([s["t"] for s in half], [s["used_memory"] for s in half])
    a["used_memory_second_half_mean"] = sum(s["used_memory"] for s in half) / len(half)
    a["used_memory_second_half_min"] = min(s["used_memory"] for s in half)
    a["used_memory_second_half_max"] = max(s["used_memory"] for s in half)
    held = [s["stored"] - s.get("trimmed", 0) for s in half]
    a["messages_in_redis_second_half_mean"] = sum(held) / len(held)
    a["plateau_bytes_per_message_held"] = (a["used_memory_second_half_mean"] - base["used_memory"]) / a["messages_in_redis_second_half_mean"]
    # The last sample, TAIL seconds after the traffic: the client-id keys
    # have expired (10 s TTL), what is left is the hot window, inboxes
    # within retention and the per-conversation and per-user keys.
    last = ok[-1]
    a["after_s"] = round(last["t"] - busy[-1]["t"], 1)
    a["used_memory_after"] = last["used_memory"]
    a["messages_in_redis_after"] = int(last["stored"] - last.get("trimmed", 0))
    a["after_bytes_per_message_held"] = (last["used_memory"] - base["used_memory"]) / max(1, a["messages_in_redis_after"])
    if "CHAT_ARCHIVE_URL" in r.get("settings", {}):
        a["lag_entries_max"] = max(s.get("lag_entries", 0) for s in busy)
        a["lag_seconds_max"] = max(s.get("lag_seconds", 0) for s in busy)
        a["lag_entries_second_half_mean"] = sum(s.get("lag_entries", 0) for s in half) / len(half)
        a["lag_entries_slope_second_half_per_s"] = slope([s["t"] for s in half], [s.get("lag_entries", 0) for s in half])
        a["archive_errors"] = int(ok[-1].get("archive_errors", 0))
        rows = [s for s in ok if s.get("sql_rows") is not None]
        if rows:
            a["sql_rows_end"] = rows[-1]["sql_rows"]
            a["stored_end"] = int(ok[-1]["stored"])
            a["sql_rows_per_s_second_half"] = slope([s["t"] for s in rows if s in half], [s["sql_rows"] for s in rows if s in half])
        a["lag_entries_end"] = ok[-1].get("lag_entries")
    return a


def render(d):
    names = [("no-archive-defaults", "no archive, default retention"), ("no-archive", "no archive, same settings"), ("archive", "with archive")]
    runs = []
    for f, title in names:
        p = os.path.join(d, f + ".json")
        if os.path.exists(p):
            r = json.load(open(p))
            r["analysis"] = analyse(r)
            json.dump(r, open(p, "w"), indent=1)
            runs.append((f, title, r))
    arch = next(r for f, _, r in runs if f == "archive")
    plain = next(r for f, _, r in runs if f == "no-archive")
    A = arch["analysis"]
    mib = 2**20
    st = arch["settings"]
    b = arch["bench"]
    def row(label, fn):
        cells = []
        for _, _, r in runs:
            try:
                cells.append(fn(r["analysis"], r["bench"]))
            except (KeyError, TypeError):
                cells.append("-")
        return f"| {label} | " + " | ".join(cells) + " |"
    lines = [
        "# Archive benchmark: Redis memory with and without the SQL archive",
        "",
        f"Produced by `{st.get('command', 'scripts/bench.sh archive')}` on {arch.get('machine', '?')} "
        "(release build; one node, a private Redis on port 16391, MariaDB and the load generator `chat-bench` all on this machine). "
        "A sampler (`scripts/bench_archive.py`) read Redis `INFO memory`, the node's `/metrics` and "
        "`SELECT COUNT(*) FROM chat_message` once a second; everything below is computed from those samples "
        "(" + ", ".join(f"[{f}.json]({f}.json)" for f, _, _ in runs) + ").",
        "",
        f"Load: {b['users']} users sending to random other users ({b['users'] * (b['users'] - 1) // 2} conversations), "
        f"offered {b['target_rate']} msg/s. Settings: *with archive* and *no archive, same settings*: "
        + ", ".join(f"`{k}={v}`" for k, v in st.items() if k.startswith("CHAT_") and k not in ("CHAT_ARCHIVE_URL", "CHAT_REDIS_URL"))
        + ", and with the archive `CHAT_ARCHIVE_URL=mysql://…` (MariaDB, a fresh database); "
        "*no archive, default retention*: nothing set (inboxes keep 10,000 entries, client ids 24 h), as every earlier benchmark ran.",
        "",
        "![Redis memory and archive lag](archive.png)",
        "",
        "| | " + " | ".join(t for _, t, _ in runs) + " |",
        "|---|" + "---|" * len(runs),
        row("traffic", lambda a, _: f"{a['traffic_end_s'] - a['traffic_start_s']:.0f} s"),
        row("messages stored (measured rate)", lambda a, _: f"{a['messages']:,} ({a['send_rate']:.0f}/s)"),
        row("Redis used_memory before traffic", lambda a, _: f"{a['baseline_used_memory'] / mib:.1f} MiB"),
        row("Redis used_memory at the end of traffic", lambda a, _: f"{a['used_memory_end'] / mib:.1f} MiB"),
        row("Redis growth per stored message, whole run (least squares)", lambda a, _: f"{a['bytes_per_message_whole_run']:.0f} B"),
        row("Redis growth per stored message, second half of the run", lambda a, _: f"**{a['bytes_per_message_second_half']:.1f} B**"),
        row("Redis used_memory slope, second half", lambda a, _: f"{a['used_memory_slope_second_half_bytes_per_s'] / 1024:.1f} KiB/s"),
        row("Redis used_memory over the second half (min to max)", lambda a, _: f"{a['used_memory_second_half_min'] / mib:.1f} to {a['used_memory_second_half_max'] / mib:.1f} MiB"),
        row("messages in Redis over the second half (stored − trimmed, mean)", lambda a, _: f"{a['messages_in_redis_second_half_mean']:,.0f}"),
        row("plateau above baseline per message held, second half", lambda a, _: f"{a['plateau_bytes_per_message_held']:.0f} B"),
        row("after the traffic (client ids expired): used_memory, messages held, per message held",
            lambda a, _: f"{a['used_memory_after'] / mib:.1f} MiB, {a['messages_in_redis_after']:,}, {a['after_bytes_per_message_held']:.0f} B ({a['after_s']:.0f} s after)"),
        row("archive lag, max (entries / whole seconds)", lambda a, _: f"{a['lag_entries_max']:.0f} / {a['lag_seconds_max']:.0f} s"),
        row("archive lag entries: mean and slope over the second half", lambda a, _: f"{a['lag_entries_second_half_mean']:.0f}, {a['lag_entries_slope_second_half_per_s']:.1f} /s"),
        row("SQL rows at the end / messages stored", lambda a, _: f"{a['sql_rows_end']:,} / {a['stored_end']:,}"),
        row("SQL rows per second, second half", lambda a, _: f"{a['sql_rows_per_s_second_half']:.0f}"),
        row("archive errors", lambda a, _: f"{a['archive_errors']}"),
        row("delivery latency p50 / p99 / max (chat-bench)", lambda _, x: f"{x['latency']['p50_ms']:.1f} / {x['latency']['p99_ms']:.1f} / {x['latency']['max_ms']:.0f} ms"),
        row("lost / duplicated (chat-bench)", lambda _, x: f"{x['lost']} / {x['duplicated']}"),
        row("errors (chat-bench)", lambda _, x: f"{x['errors'] or 0}"),
        row("CPU over chat-bench's window, % of one core", lambda _, x: ", ".join(f"{c['name']} {c['percent_of_one_core']:.0f}" for c in x.get("cpu", []))),
        "",
        "What the rows mean. *Growth per stored message* is the least-squares slope of Redis `used_memory` against the "
        "node's `chat_messages_stored_total`; without the archive it is what each message costs Redis for good (in the "
        "second half, once the client-id keys of the 10 s TTL and the 100-entry inboxes are full, the message alone), "
        "with the archive it is about zero once the hot window is full. *Messages in Redis* is "
        "`chat_messages_stored_total − chat_archive_trimmed_total`; the *plateau per message held* divides the second half's "
        "mean used_memory above the pre-traffic baseline by it, so it also carries what else the bounded state holds "
        "(inboxes within retention, client-id keys within their TTL, the archive feed's lag, per-conversation and per-user keys). "
        "`chat_archive_lag_seconds` is a whole number of seconds. "
        "MariaDB is shared with other work on this machine, so its CPU figure may include others' queries.",
    ]
    open(os.path.join(d, "README.md"), "w").write("\n".join(lines) + "\n")
    plot(d, arch, plain, dict((f, r) for f, _, r in runs).get("no-archive-defaults"))
    print("\n".join(lines[8:]))


def plot(d, arch, plain, defaults=None):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
        return
    fig, (m, lag, rows) = plt.subplots(3, 1, figsize=(11, 11), sharex=True)
    curves = [(plain, "no archive, same settings", "r-"), (arch, "with archive (hot window)", "b-")]
    if defaults:
        curves.insert(0, (defaults, "no archive, default retention", "k-"))
    for r, name, style in curves:
        ok, busy = traffic(r["samples"])
        t0 = busy[0]["t"]
        m.plot([s["t"] - t0 for s in ok], [s["used_memory"] / 2**20 for s in ok], style, label=f"Redis used_memory, {name}")
    ok, busy = traffic(arch["samples"])
    t0 = busy[0]["t"]
    m.plot([s["t"] - t0 for s in ok], [(s["stored"] - s.get("trimmed", 0)) / 1000 for s in ok], "c--", label="with archive: messages in Redis (thousands)")
    m.axvline(busy[-1]["t"] - t0, color="gray", ls=":", lw=1)
    m.set_ylabel("MiB (or thousands)")
    m.legend(loc="upper right")
    m.set_title("Redis memory at a steady send rate, with and without the SQL archive")
    lag.plot([s["t"] - t0 for s in ok], [s.get("lag_entries", 0) for s in ok], "m-", label="archive lag, entries")
    lag.set_ylabel("entries")
    l2 = lag.twinx()
    l2.plot([s["t"] - t0 for s in ok], [s.get("lag_seconds", 0) for s in ok], "g-", lw=0.8, label="archive lag, seconds")
    l2.set_ylabel("seconds")
    l2.set_ylim(0, 1.2 * max([1] + [s.get("lag_seconds", 0) for s in ok]))
    lag.legend(loc="upper left")
    l2.legend(loc="upper right")
    lag.axvline(busy[-1]["t"] - t0, color="gray", ls=":", lw=1)
    rs = [s for s in ok if s.get("sql_rows") is not None]
    rows.plot([s["t"] - t0 for s in rs], [s["sql_rows"] / 1000 for s in rs], "k-", label="SQL rows (chat_message)")
    rows.plot([s["t"] - t0 for s in ok], [s["stored"] / 1000 for s in ok], "y--", label="messages stored")
    rows.set_ylabel("thousands")
    rows.set_xlabel("seconds since traffic started (dotted: traffic ends)")
    rows.axvline(busy[-1]["t"] - t0, color="gray", ls=":", lw=1)
    rows.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(os.path.join(d, "archive.png"), dpi=100)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "sample":
        sample(sys.argv[2], sys.argv[3:])
    elif cmd == "attach":
        attach(sys.argv[2], sys.argv[3])
    elif cmd == "render":
        render(sys.argv[2])
    else:
        sys.exit(__doc__)
