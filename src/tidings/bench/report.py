"""The benchmark's results: per-endpoint rows, the issue's targets, Markdown, JSON and the plot.

Rows (per concurrency level; ``phase`` says how they were measured):

* ``json`` / ``pk`` (``baseline``): the raw ASGI baselines. ``json`` is a constant body: its rate
  is the most this generator on this machine can measure at all (the generator's ceiling; the
  server and the generator share the CPUs), so a ratio near ``x json`` 1 means the generator,
  not the API, was the limit.
* ``feed``, ``timeline``, ``compose``, ``like``, ``follow`` (``mix``): the 60/30/7/2/1 mix.
* ``feed (redis)`` / ``feed (pull)``, ``timeline (alone)``, ``like (alone)``,
  ``follow (alone)`` (``alone``): one endpoint by itself, for the throughput targets.
  ``feed (redis, warm)``: right after ``feed (redis)``, the same requests again (the same seed:
  the same readers in the same order), so the row cache holds their pages' rows; the first
  reads over thousands of readers mostly miss it.
* ``feed (embedded)`` / ``timeline (embedded)`` (``alone``, with ``--sqlite``): the embedded
  default — one process on the SQLite copy of the seed, pull feed, in-memory row cache.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tidings.bench.load import Tally
from tidings.bench.storage import storage_lines
from tidings.bench.workload import BASELINES, ENDPOINTS

ORDER = (*BASELINES, *ENDPOINTS)

Row = dict[str, Any]

# (name, value key, comparison, limit)
FEED_P99 = {16: 15.0, 64: 60.0}
COMPOSE_P99 = {16: 30.0}
WRITE_P99 = {64: 50.0}
FANOUT_MIN = 100_000
FANOUT_X_RAW = 2.0  # "twice the raw prototype", re-measured in the same run
EMBEDDED_FEED_MIN = 1_000  # req/s, the embedded default's home feed
VISIBLE_NEAR_10K = 0.5
VISIBLE_MOST = 2.0


def _trials(trials: list[dict[str, Any]]) -> str:
    """Fan-out trials as ``entries in ms``, comma-separated."""
    return ", ".join(f"{t['entries']:,} in {t['seconds'] * 1000:.1f} ms" for t in trials)


def _pct(ordered: list[float], q: float) -> float:
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000, 2)


def summarize(
    tally: Tally, phase: str, names: dict[str, str] | None = None, expect: str | None = None
) -> dict[str, Row]:
    """Rows from one generator run; ``names`` renames labels (e.g. ``feed`` -> ``feed (pull)``).
    ``expect``: the label a single-endpoint run must have; none completed is an error (a
    stalled server), not a missing row."""
    out: dict[str, Row] = {}
    wall = tally.wall or 1.0
    if expect is not None and not tally.latencies.get(expect):
        tally.latencies[expect] = []
        tally.errors[expect] = tally.errors.get(expect, 0) + max(1, tally.unfinished.get(expect, 0))
        tally.samples.setdefault(
            expect,
            f"no request completed in the phase ({tally.unfinished.get(expect, 0)} in flight "
            "at its end)",
        )
    order = {label: i for i, label in enumerate(ORDER)}
    for label, values in sorted(tally.latencies.items(), key=lambda i: (order.get(i[0], 99), i[0])):
        ordered = sorted(values)
        row: Row = {
            "phase": phase,
            "requests": len(ordered),
            "rps": round(len(ordered) / wall, 1),
            "errors": tally.errors.get(label, 0),
            "unfinished": tally.unfinished.get(label, 0),
        }
        if ordered:
            row |= {"p50_ms": _pct(ordered, 0.5), "p90_ms": _pct(ordered, 0.9)}
            row |= {"p99_ms": _pct(ordered, 0.99), "max_ms": round(ordered[-1] * 1000, 2)}
        out[(names or {}).get(label, label)] = row
    return out


def add_ratios(levels: dict[str, dict[str, Any]], pgbench: dict[str, Any]) -> None:
    """``x_pk``, ``x_json`` on every row; ``x_pgbench`` where the issue names a pgbench
    reference (pull feed: the feed SQL alone; like and follow alone: TPC-B)."""
    for level, data in levels.items():
        rows = data["rows"]
        pk = rows.get("pk", {}).get("rps") or 0.0
        plain = rows.get("json", {}).get("rps") or 0.0
        tpcb = pgbench.get("tpcb", {}).get(level, {}).get("tps") or 0.0
        feed_sql = pgbench.get("feed_sql", {}).get(level, {}).get("tps") or 0.0
        for name, row in rows.items():
            row["x_pk"] = round(row["rps"] / pk, 3) if pk else None
            row["x_json"] = round(row["rps"] / plain, 3) if plain else None
            reference = {"feed (pull)": feed_sql, "like (alone)": tpcb, "follow (alone)": tpcb}
            base = reference.get(name)
            row["x_pgbench"] = round(row["rps"] / base, 3) if base else None


def _target(
    name: str, value: float | None, limit: float, *, at_least: bool, unit: str, source: str
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "target": name,
        "limit": limit,
        "value": value,
        "unit": unit,
        "source": source,
    }
    if value is None:
        entry |= {"status": "not measured", "margin_pct": None}
        return entry
    margin = (value - limit) / limit if at_least else (limit - value) / limit
    entry |= {"status": "met" if margin >= 0 else "missed", "margin_pct": round(margin * 100, 1)}
    return entry


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue 5 with the measured value, met/missed and the margin (positive:
    headroom, negative: short by). Throughput targets use the ``alone`` rows at every measured
    level; latency targets the ``mix`` rows (like/follow: their ``alone`` rows, the mix has few
    of them) at the level the issue names, "not measured" when the run did not include it."""
    levels: dict[str, dict[str, Any]] = report["levels"]
    out: list[dict[str, Any]] = []

    def row(level: str, name: str) -> Row:
        rows: dict[str, Row] = levels.get(level, {}).get("rows", {})
        return rows.get(name, {})

    home = "feed (redis)" if report["feed_store"] == "redis" else "feed (pull)"
    # the issue speaks of "the warm path": with the Redis store both rows are judged, the
    # first reads (mostly cold row cache) and the same readers again (warm)
    homes = (home, "feed (redis, warm)") if report["feed_store"] == "redis" else (home,)
    for level in levels:
        for name in homes:
            out.append(
                _target(
                    f"home feed ≥ 0.5 x B_pk req/s @{level}" + (", warm" if "warm" in name else ""),
                    row(level, name).get("x_pk"),
                    0.5,
                    at_least=True,
                    unit="x B_pk",
                    source=f"{name}, c={level}",
                )
            )
    for c, limit in FEED_P99.items():
        out.append(
            _target(
                f"home feed p99 ≤ {limit:g} ms @{c}",
                row(str(c), "feed").get("p99_ms"),
                limit,
                at_least=False,
                unit="ms",
                source=f"feed in the mix, c={c}",
            )
        )
    for level in levels:
        out.append(
            _target(
                f"pull feed ≥ 0.6 x pgbench feed SQL TPS @{level}",
                row(level, "feed (pull)").get("x_pgbench"),
                0.6,
                at_least=True,
                unit="x pgbench",
                source=f"feed (pull), c={level}",
            )
        )
        out.append(
            _target(
                f"timeline ≥ 0.4 x B_pk req/s @{level}",
                row(level, "timeline (alone)").get("x_pk"),
                0.4,
                at_least=True,
                unit="x B_pk",
                source=f"timeline (alone), c={level}",
            )
        )
    for c, limit in COMPOSE_P99.items():
        out.append(
            _target(
                f"compose p99 ≤ {limit:g} ms @{c}",
                row(str(c), "compose").get("p99_ms"),
                limit,
                at_least=False,
                unit="ms",
                source=f"compose in the mix, c={c}",
            )
        )
    for endpoint in ("like", "follow"):
        for level in levels:
            out.append(
                _target(
                    f"{endpoint} ≥ 0.6 x pgbench TPC-B TPS @{level}",
                    row(level, f"{endpoint} (alone)").get("x_pgbench"),
                    0.6,
                    at_least=True,
                    unit="x TPC-B",
                    source=f"{endpoint} (alone), c={level}",
                )
            )
        for c, limit in WRITE_P99.items():
            out.append(
                _target(
                    f"{endpoint} p99 ≤ {limit:g} ms @{c}",
                    row(str(c), f"{endpoint} (alone)").get("p99_ms"),
                    limit,
                    at_least=False,
                    unit="ms",
                    source=f"{endpoint} (alone), c={c}",
                )
            )
    for level in levels:
        out.append(
            _target(
                f"embedded home feed ≥ {EMBEDDED_FEED_MIN:,} req/s @{level}",
                row(level, "feed (embedded)").get("rps"),
                EMBEDDED_FEED_MIN,
                at_least=True,
                unit="req/s",
                source=f"feed (embedded), c={level} (SQLite copy, one process)",
            )
        )
    out.append(
        {
            "target": "zero errors",
            "limit": 0,
            "value": report["errors"],
            "unit": "errors",
            "source": "every row",
            "status": "met" if report["errors"] == 0 else "missed",
            "margin_pct": None,
            "note": f"{report['errors']} errors",
        }
    )
    fanout = report.get("fanout", {})
    out.append(
        _target(
            f"fan-out ≥ {FANOUT_MIN:,} entries/s",
            fanout.get("entries_per_s"),
            FANOUT_MIN,
            at_least=True,
            unit="entries/s",
            source=f"{fanout.get('author', '-')} ({fanout.get('followers', '-')} followers)",
        )
    )
    out.append(
        _target(
            f"fan-out ≥ {FANOUT_X_RAW:g} x the raw pipeline prototype",
            fanout.get("x_raw"),
            FANOUT_X_RAW,
            at_least=True,
            unit="x raw",
            source=f"the same timelines, same run ({fanout.get('raw_entries_per_s', '-')}/s raw)",
        )
    )
    visible = report.get("visibility", {})
    for key, name, limit in (
        ("near_10k", "10k-follower post visible", VISIBLE_NEAR_10K),
        ("most_followed", "most-followed post visible", VISIBLE_MOST),
    ):
        case = visible.get(key, {})
        entry = _target(
            f"{name} ≤ {limit:g} s",
            case.get("max_s"),
            limit,
            at_least=False,
            unit="s (worst trial)",
            source=f"{case.get('author', '-')} ({case.get('followers', '-')} followers)",
        )
        if case.get("trials_s") and case.get("max_s") is None:
            entry |= {"status": "missed", "note": "not visible within the poll timeout"}
        out.append(entry)
    return out


# --- Markdown ----------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _result(entry: dict[str, Any]) -> str:
    status = str(entry["status"])
    margin = entry.get("margin_pct")
    if status == "met" and margin is not None:
        return f"met (+{margin:g} %)" if margin else "met (exactly)"
    if status == "missed" and margin is not None:
        return f"**missed** (short by {-margin:g} %)"
    if status == "missed":
        return f"**missed** ({entry.get('note', entry['value'])})"
    return status


def markdown(report: dict[str, Any]) -> str:
    gen = report["generator"]
    lines = [
        f"# Benchmark {report['when']} (commit {report['commit']})",
        "",
        f"Machine: {report['machine']}. Feed store: `{report['feed_store']}`, row cache: "
        f"`{report.get('row_cache', 'none')}`; "
        f"{report['users']:,} users, {report['clients']:,} clients; {report['workers']} server "
        f"workers; event consumers {report.get('consumers', 'in the API processes')}; "
        f"concurrency {', '.join(str(c) for c in report['concurrency'])}; mix "
        f"{report['duration_s']} s, baselines and single endpoints {report['baseline_duration_s']}"
        f" s each. Generator: {gen['name']} ({gen['detail']}); request sequence seed "
        f"{report.get('seed', 'not recorded')}, row cache keys of this run only (it starts "
        "cold).",
        "",
        *(
            [
                f"Embedded default: `{report['embedded']}` (SQLite copy of the seed), one "
                "process with its defaults (pull feed, in-memory row cache), after the "
                "PostgreSQL servers stopped.",
                "",
            ]
            if report.get("embedded")
            else []
        ),
        *(
            [
                f"**Warning: the outbox held {report['outbox_backlog_at_start']:,} events no "
                "relay had picked up when this run started** (left by servers run without a "
                "relay or worker). The relay and the consumers worked through them during the "
                "run, on the same CPUs: every figure below is lower than on a quiet system, and "
                "the time to visible may be the backlog's. Let `tidings worker` apply them "
                "first.",
                "",
            ]
            if report.get("outbox_backlog_at_start")
            else []
        ),
        *storage_lines(report.get("storage")),
        "## Targets (issue 5)",
        "",
        "| target | measured | from | result |",
        "|---|---:|---|---|",
    ]
    for entry in report["targets"]:
        value = entry["value"]
        shown = "-" if value is None else f"{_cell(value)} {entry['unit']}"
        lines.append(f"| {entry['target']} | {shown} | {entry['source']} | {_result(entry)} |")
    for level, data in report["levels"].items():
        lines += [
            "",
            f"## {level} connections",
            "",
            "| endpoint | phase | requests | req/s | p50 ms | p90 ms | p99 ms | errors "
            "| x B_pk | x json | x pgbench |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        late = [f"{n} {r['unfinished']}" for n, r in data["rows"].items() if r.get("unfinished")]
        for name, row in data["rows"].items():
            shown = f"{name} (generator ceiling)" if name == "json" else name
            cells = [
                shown,
                row["phase"],
                *(
                    _cell(row.get(k))
                    for k in (
                        "requests",
                        "rps",
                        "p50_ms",
                        "p90_ms",
                        "p99_ms",
                        "errors",
                        "x_pk",
                        "x_json",
                        "x_pgbench",
                    )
                ),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        if late:
            lines += [
                "",
                "In flight when wrk stopped (a closed loop always has about one per "
                "connection; not in the percentiles, so a slow row's p99 is understated): "
                f"{', '.join(late)}.",
            ]
    pg = report["pgbench"]
    lines += ["", "## pgbench", ""]
    if "skipped" in pg:
        lines.append(f"Skipped: {pg['skipped']}.")
    else:
        lines += [
            f"{pg['version']}; TPC-B at scale {pg['scale']} in the scratch database "
            f"`{pg['database']}` (dropped afterwards); the pull feed SQL alone against the "
            f"benchmark database; {pg['seconds']} s per run.",
            "",
            "| clients | TPC-B TPS | TPC-B p99 ms | feed SQL TPS | feed SQL p99 ms |",
            "|---:|---:|---:|---:|---:|",
        ]
        for level in report["levels"]:
            tpcb, feed = pg["tpcb"].get(level, {}), pg["feed_sql"].get(level, {})
            lines.append(
                f"| {level} | {_cell(tpcb.get('tps'))} | {_cell(tpcb.get('p99_ms'))} | "
                f"{_cell(feed.get('tps'))} | {_cell(feed.get('p99_ms'))} |"
            )
    fan = report["fanout"]
    lines += ["", "## Fan-out", ""]
    if "skipped" in fan:
        lines.append(f"Skipped: {fan['skipped']}.")
    else:
        trials = _trials(fan["trials"])
        lines.append(
            f"`fan_out` in process for a post by {fan['author']} ({fan['followers']:,} followers,"
            f" the most followed account at or under the threshold {fan['threshold']:,}), "
            f"{fan['timelines']:,} scratch timelines at a cap of {fan['cap']}: "
            f"**{fan['entries_per_s']:,} entries/s** (median; trials: {trials})."
        )
        if fan.get("raw_trials"):
            raw = _trials(fan["raw_trials"])
            lines.append(
                f"The issue's raw prototype on the same timelines (follower ids in hand, `ZADD` "
                f"and `ZREMRANGEBYRANK` per timeline, redis-py pipelines of 500 timelines): "
                f"{fan['raw_entries_per_s']:,} entries/s (median; trials: {raw}); "
                f"`fan_out` = **{fan['x_raw']} x** that."
            )
    vis = report["visibility"]
    lines += ["", "## Time to visible", ""]
    if "skipped" in vis:
        lines.append(f"Skipped: {vis['skipped']}.")
    else:
        lines += [
            f"From the 201 of the post to it on a follower's first feed page (polled every "
            f"{vis['poll_s'] * 1000:g} ms, at most {vis['timeout_s']:g} s); events not yet relayed "
            f"before: {vis['outbox_backlog']}.",
            "",
            "| author | followers | fanned out | follower | trials s | worst s |",
            "|---|---:|---|---|---|---:|",
        ]
        for key in ("most_followed", "near_10k"):
            if key not in vis:
                continue
            case = vis[key]
            trials_s = ", ".join(_cell(s) for s in case.get("trials_s", [])) or "-"
            lines.append(
                f"| {case['author']} | {case['followers']:,} | "
                f"{'yes' if case['fanned_out'] else 'no (merged at read time)'} | "
                f"{case.get('follower', case.get('skipped', '-'))} | {trials_s} | "
                f"{_cell(case.get('max_s'))} |"
            )
    lines += ["", "## Generator", "", gen["note"]]
    if report.get("phase_seconds"):
        spent = ", ".join(f"{k} {v:g} s" for k, v in report["phase_seconds"].items())
        lines += ["", f"Wall time per phase of this run: {spent}."]
    if report["error_samples"]:
        lines += ["", "## Errors", ""]
        lines += [f"- {where}: `{sample}`" for where, sample in report["error_samples"].items()]
    if report.get("server_errors"):
        lines += ["", "## Server log (errors)", ""]
        lines += [f"- `{line}`" for line in report["server_errors"]]
    if report.get("plot"):
        lines += ["", f"![latency percentiles per endpoint]({report['plot']})"]
    return "\n".join(lines) + "\n"


# --- plot --------------------------------------------------------------------------------------


def plot(report: dict[str, Any], path: Path) -> bool:
    """Grouped bars of p50/p90/p99 per endpoint, one panel per concurrency (log scale).
    False when matplotlib is missing (it is in the ``dev`` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    levels = list(report["levels"].items())
    fig, axes = plt.subplots(
        len(levels), 1, figsize=(12, 4.2 * len(levels)), squeeze=False, constrained_layout=True
    )
    colors = {"p50_ms": "#4c72b0", "p90_ms": "#dd8452", "p99_ms": "#c44e52"}
    for ax, (level, data) in zip(axes[:, 0], levels, strict=True):
        rows = [(name, row) for name, row in data["rows"].items() if row.get("p50_ms") is not None]
        width = 0.27
        for i, (key, color) in enumerate(colors.items()):
            xs = [j + (i - 1) * width for j in range(len(rows))]
            values = [max(row[key], 0.01) for _, row in rows]
            bars = ax.bar(xs, values, width, label=key.removesuffix("_ms"), color=color)
            if key == "p99_ms":
                ax.bar_label(
                    bars,
                    labels=[f"{v:,.0f}" if v >= 100 else f"{v:.3g}" for v in values],
                    fontsize=7,
                    padding=1,
                )
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(
            [f"{name}\n{row['phase']}" for name, row in rows], fontsize=8, rotation=0
        )
        ax.set_yscale("log")
        ax.set_ylabel("latency, ms (log)")
        ax.set_title(
            f"{level} connections ({report['generator']['name']}; feed store "
            f"{report['feed_store']}; commit {report['commit']})",
            fontsize=10,
        )
        ax.grid(axis="y", which="both", alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    for c, limit in FEED_P99.items():  # the feed p99 targets, where measured
        for ax, (level, _data) in zip(axes[:, 0], levels, strict=True):
            if level == str(c):
                ax.axhline(limit, color="#c44e52", linestyle=":", linewidth=1)
                ax.annotate(
                    f"feed p99 target {limit:g} ms",
                    (0, limit),
                    fontsize=7,
                    color="#c44e52",
                    xytext=(2, 2),
                    textcoords="offset points",
                )
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --- files -------------------------------------------------------------------------------------


def write_results(report: dict[str, Any], directory: Path) -> Path:
    """``<time>.json``, ``.md`` and ``.png``, and ``latest.*`` copies; returns the JSON path."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = report["when"].replace(":", "").replace("-", "")
    image = directory / f"{stamp}.png"
    report["plot"] = image.name if plot(report, image) else None
    body = json.dumps(report, indent=2) + "\n"
    path = directory / f"{stamp}.json"
    path.write_text(body)
    text = markdown(report)
    (directory / f"{stamp}.md").write_text(text)
    (directory / "latest.json").write_text(body)
    if report["plot"]:
        (directory / "latest.png").write_bytes(image.read_bytes())
        text = text.replace(f"]({image.name})", "](latest.png)")
    (directory / "latest.md").write_text(text)
    return path
