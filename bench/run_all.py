"""Every benchmark in one run (``make bench``).

Runs each bench script as its own process (so one cannot skew another's
memory), collects their JSON into ``bench/results/latest.json``, writes a
Markdown table (``latest.md``) and a chart of tick cost versus open trades
(``latest.png``), and refreshes the table in README.md between its markers.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

BENCHES = [
    ("engine", [sys.executable, "bench/bench_engine.py"]),
    ("poller", [sys.executable, "bench/bench_poller.py"]),
    ("api", [sys.executable, "bench/bench_api.py"]),
    ("ws", [sys.executable, "bench/bench_ws.py"]),
    ("frontend", [sys.executable, "bench/bench_frontend.py"]),
]


def machine_busy(seconds: float = 1.0) -> float:
    """Share of all CPUs busy over ``seconds`` (/proc/stat; 0.0 where it cannot be read)."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return sum(values), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def wait_for_quiet(max_busy: float = 0.25, timeout_s: float = 30.0) -> dict[str, float]:
    """Before a benchmark: wait (at most ``timeout_s``) until the previous one's
    after-effects (Postgres checkpoints and autovacuum, processes exiting) leave
    the CPUs at most ``max_busy`` busy. Returns the wait and the last reading."""
    t0 = time.monotonic()
    busy = machine_busy()
    while busy > max_busy and time.monotonic() - t0 < timeout_s:
        busy = machine_busy()
    return {"waited_s": round(time.monotonic() - t0, 1), "busy_at_start": round(busy, 3)}


def run_one(name: str, argv: list[str], quick: bool) -> dict[str, Any]:
    script = ROOT / argv[1]
    if not script.exists():
        return {"status": "missing", "script": argv[1]}
    out = RESULTS / f"{name}.json"
    cmd = [*argv, "--out", out.as_posix()]
    if quick and name != "frontend":
        cmd.append("--quick")
    quiet = wait_for_quiet()
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - t0
    print(f"--- {name} ({seconds:.0f} s; CPUs {100 * quiet['busy_at_start']:.0f} % busy at the start,"
          f" after waiting {quiet['waited_s']} s)\n{proc.stdout[-4000:]}", flush=True)
    if proc.returncode != 0:
        print(proc.stderr[-4000:], file=sys.stderr)
        return {"status": "failed", "returncode": proc.returncode, "seconds": seconds,
                "stderr_tail": proc.stderr[-2000:]}
    try:
        data = json.loads(out.read_text())
    except (OSError, ValueError) as exc:
        return {"status": "failed", "error": f"no JSON written: {exc}", "seconds": seconds}
    return {"status": "ok", "seconds": round(seconds, 1), "machine_before": quiet, "results": data}


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def markdown(report: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str]] = []
    eng = _get(report, "benches", "engine", "results")
    if eng:
        rows.append(("Engine core, commands/s in-process", f"{eng['in_process']['commands_per_s']:,.0f}",
                     "≥ 100,000"))
        rows.append(("Engine through Redis, commands/s (XADD → reply)",
                     f"{eng['through_redis']['commands_per_s']:,.0f}", "≥ 20,000"))
        for r in eng["tick_cost"]:
            rows.append((f"Tick cost, {r['open_trades']:,} open trades (p50 / p99)",
                         f"{r['tick_us_p50']:.1f} µs / {r['tick_us_p99']:.1f} µs",
                         f"< 1 ms (a full scan: {r['brute_force_scan_us_p50']:,.0f} µs)"))
        wo = eng.get("tick_cost_with_orders")
        if wo:
            rows.append((f"Tick cost with {wo['resting_orders']:,} resting limit orders and {wo['tpsl_trades']:,} "
                         f"TP/SL live, nothing triggering (p50 / p99)",
                         f"{wo['quiet_tick_us_p50']:.1f} µs / {wo['quiet_tick_us_p99']:.1f} µs",
                         "in proportion to what triggers"))
            rows.append((f"Tick that fills {wo['orders_filled_on_one_tick']} limit orders",
                         f"{wo['tick_with_fills_us']:,.0f} µs ({wo['per_fill_us']:.1f} µs per fill)", ""))
        rec = eng["recovery"]
        rows.append((f"Recovery: {rec['open_trades']:,} trades + {rec['entries_after_snapshot']:,} entries",
                     f"{rec['recovery_seconds']:.2f} s", "< 5 s"))
        rss = rec.get("engine_rss_mb")
        rows.append(("Longest trading stall caused by a snapshot (the fork)",
                     f"{rec['snapshot_stall_ms_max']:.2f} ms" + (f" (engine resident: {rss:,.0f} MB)" if rss else ""),
                     "< 10 ms"))
        native = eng.get("native")
        if native is not None:
            rows.append(("Engine core build used by these figures", "mypyc-compiled" if native else "Python sources",
                         ""))
    for name in ("poller", "api", "ws", "frontend"):
        b = _get(report, "benches", name)
        if b and b.get("status") == "ok" and isinstance(b.get("results"), dict):
            summary = b["results"].get("summary")
            if isinstance(summary, list):
                for item in summary:
                    if isinstance(item, dict) and {"figure", "value"} <= set(item):
                        rows.append((str(item["figure"]), str(item["value"]), str(item.get("target", ""))))
        elif b:
            rows.append((f"{name} benchmark", b.get("status", "?"), ""))
    faults = report.get("faults")
    if isinstance(faults, dict):
        for name, f in sorted(faults.items()):
            if isinstance(f, dict) and "attempted" in f:
                rows.append((f"Fault: {name} (attempted / acknowledged / lost / duplicated / recover)",
                             f"{f.get('attempted')} / {f.get('acknowledged')} / {f.get('lost')} / "
                             f"{f.get('duplicated')} / {f.get('recover_s', f.get('recover_seconds', '?'))} s",
                             "lost 0, duplicated 0"))
    lines = ["| figure | measured | target / reference |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    lines.append("")
    lines.append(f"Measured {report['measured_at']} on {report['machine']}; `make bench` took "
                 f"{report['seconds']:.0f} s.")
    return "\n".join(lines)


def chart(report: dict[str, Any], path: Path) -> bool:
    eng = _get(report, "benches", "engine", "results")
    if not eng:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["open_trades"] for r in eng["tick_cost"]]
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=120)
    ax.plot(sizes, [r["tick_us_p50"] for r in eng["tick_cost"]], "o-", label="indexed tick (p50)")
    ax.plot(sizes, [r["tick_us_p99"] for r in eng["tick_cost"]], "o--", label="indexed tick (p99)")
    ax.plot(sizes, [r["brute_force_scan_us_p50"] for r in eng["tick_cost"]], "s-",
            label="scan every trade (old design)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("open trades")
    ax.set_ylabel("cost of one price tick (µs)")
    ax.set_title("Tick cost vs open trades (nothing liquidating)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def update_readme(table: str) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = "<!-- bench-table:start -->", "<!-- bench-table:end -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        img = "\n![tick cost vs open trades](bench/results/latest.png)\n" if (RESULTS / "latest.png").exists() else ""
        readme.write_text(f"{head}{start}\n{table}\n{img}{end}{tail}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument("--only", nargs="*", help="run only these benches")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    report: dict[str, Any] = {
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, Python {platform.python_version()}",
        "benches": {},
    }
    for name, argv in BENCHES:
        if args.only and name not in args.only:
            saved = RESULTS / f"{name}.json"  # keep the last full run's figures for the others
            if saved.exists():
                report["benches"][name] = {"status": "ok", "reused": True,
                                           "results": json.loads(saved.read_text())}
            continue
        report["benches"][name] = run_one(name, argv, args.quick)
    report["seconds"] = time.monotonic() - t0
    faults = RESULTS / "faults.json"  # written by the fault tests (make test), merged here
    if faults.exists():
        try:
            data = json.loads(faults.read_text())
            report["faults"] = data.get("faults", data)
        except ValueError:
            pass
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2))
    chart(report, RESULTS / "latest.png")
    table = markdown(report)
    (RESULTS / "latest.md").write_text(table + "\n")
    print(table)
    if not args.no_readme and not args.quick:
        update_readme(table)
    failed = [n for n, b in report["benches"].items() if b["status"] == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
