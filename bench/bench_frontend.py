#!/usr/bin/env python
"""Benchmark of the web app in a real browser, against the whole local stack.

Builds nothing: it serves the existing ``frontend/dist`` (``make bench`` builds
it first; or ``cd frontend && npm run build``). The stack, the scripted price
feed and Chromium are the browser tests' own (``tests/e2e/stack.py``): the
local stack on free ports with its own Redis prefix, Postgres database and
Mongo-wire server, prices from the fake Backpack server moving every 200 ms.

1. **Time to interactive of the trade page**: from navigation start
   (``performance.timeOrigin``, i.e. ``performance.now()`` = 0) to the first
   animation frame in which the order form can be used with live prices: the
   submit button is enabled, the fill price shows a number, the live
   connection is up and its first price push has arrived (a probe installed
   before the app loads notes it). Measured with a ``requestAnimationFrame``
   poll in the page, marked ``opex:interactive``.
   Cold = a new browser context each time (empty cache, signed in by cookie);
   warm = a reload in the same context.
2. **Chart frame rate while prices stream**: on the trade page, frames counted
   with ``requestAnimationFrame`` for ``--fps-seconds`` while the pusher sends
   price updates (each moves the chart's last candle and the quotes); also the
   longest frame, long tasks (``PerformanceObserver('longtask')``) and the
   renderer main thread's busy share from Chromium's performance metrics
   (CDP ``Performance.getMetrics``: TaskDuration).
3. **Bundle size**: ``node frontend/scripts/bundle-size.mjs`` (gzip -9).

Prints a table and writes JSON (``--out``, default bench/results/frontend.json)
with a ``summary`` list of ``{figure, value, target}`` for the report.

Usage: .venv/bin/python bench/bench_frontend.py [--out FILE] [--runs 5] [--fps-seconds 10] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from playwright.sync_api import BrowserContext, Page, ViewportSize, sync_playwright  # noqa: E402

from tests.e2e.stack import BTC, STEP_S, E2EStack, launch_chromium  # noqa: E402

PASSWORD = "correct horse battery"
VIEWPORT = ViewportSize(width=1280, height=800)
TARGET_TTI_MS = 1500.0
TARGET_FPS = 55.0
TARGET_INITIAL_GZIP_KIB = 150.0

# Notes when the first price push arrives on the app's WebSocket (installed before the app loads).
LIVE_PRICES_PROBE = """(() => {
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (e) => {
        if (window.__opexLivePrices === undefined && typeof e.data === 'string' && e.data.includes('"prices"'))
          window.__opexLivePrices = performance.now();
      });
    }
  };
})();"""

# True in the first animation frame where the order form is usable with live prices.
INTERACTIVE_JS = """() => {
  if (window.__opexLivePrices === undefined) return false;
  const q = (id) => document.querySelector(`[data-testid="${id}"]`);
  const submit = q('order-submit'), price = q('order-price'), conn = q('conn-status');
  if (!submit || submit.disabled || !price || !/\\d/.test(price.textContent || '')) return false;
  if (!conn || conn.dataset.state !== 'connected') return false;
  performance.mark('opex:interactive');
  return [performance.now(), window.__opexLivePrices];
}"""

NAV_TIMING_JS = """() => {
  const n = performance.getEntriesByType('navigation')[0];
  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
  return {dom_content_loaded_ms: n ? n.domContentLoadedEventEnd : null,
          load_ms: n ? n.loadEventEnd : null,
          first_contentful_paint_ms: fcp ? fcp.startTime : null,
          transfer_bytes: performance.getEntriesByType('resource').reduce((s, r) => s + (r.transferSize || 0),
                                                                          n ? n.transferSize || 0 : 0)};
}"""

FPS_JS = """(ms) => new Promise((resolve) => {
  const longTasks = [];
  let obs = null;
  try {
    obs = new PerformanceObserver((list) => list.getEntries().forEach((e) => longTasks.push(e.duration)));
    obs.observe({type: 'longtask'});
  } catch (e) { /* not supported */ }
  const gaps = [];
  let frames = 0, first = null, last = null;
  function frame(t) {
    if (first === null) { first = t; last = t; }
    else { gaps.push(t - last); last = t; frames++; }
    if (t - first < ms) requestAnimationFrame(frame);
    else { if (obs) obs.disconnect(); resolve({frames, elapsed_ms: t - first, gaps, long_tasks: longTasks}); }
  }
  requestAnimationFrame(frame);
})"""


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def new_signed_in_context(browser: Any, stack: E2EStack, email: str) -> BrowserContext:
    ctx: BrowserContext = browser.new_context(base_url=stack.base_url, viewport=VIEWPORT)
    ctx.add_init_script(LIVE_PRICES_PROBE)
    resp = ctx.request.post("/api/v1/user/signin", data={"email": email, "password": PASSWORD})
    if not resp.ok:
        raise RuntimeError(f"sign-in failed: {resp.status} {resp.text()[:200]}")
    return ctx


def measure_tti(page: Page, url: str, reload: bool = False) -> dict[str, Any]:
    if reload:
        page.reload(wait_until="commit")
    else:
        page.goto(url, wait_until="commit")
    tti, first_prices = page.wait_for_function(INTERACTIVE_JS, polling="raf", timeout=60_000).json_value()
    nav = page.evaluate(NAV_TIMING_JS)
    return {"tti_ms": round(float(tti), 1), "first_price_push_ms": round(float(first_prices), 1),
            **{k: (round(v, 1) if isinstance(v, float) else v) for k, v in nav.items()}}


def measure_fps(page: Page, url: str, seconds: float) -> dict[str, Any]:
    pushes: list[float] = []

    def on_ws(ws: Any) -> None:
        ws.on("framereceived", lambda payload: pushes.append(time.monotonic())
              if '"type":"prices"' in (payload if isinstance(payload, str) else payload.decode()) else None)

    page.on("websocket", on_ws)
    page.goto(url, wait_until="commit")
    page.wait_for_function(INTERACTIVE_JS, polling="raf", timeout=60_000)
    page.get_by_test_id("price-chart").locator("canvas").first.wait_for()
    page.mouse.move(1, 1)
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")

    def metrics() -> dict[str, float]:
        return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}

    before, t0 = metrics(), time.monotonic()
    n_before = len(pushes)
    result = page.evaluate(FPS_JS, seconds * 1000)
    after, wall = metrics(), time.monotonic() - t0
    cdp.detach()
    gaps = result["gaps"]
    fps = result["frames"] / (result["elapsed_ms"] / 1000) if result["elapsed_ms"] else 0.0
    busy = (after.get("TaskDuration", 0) - before.get("TaskDuration", 0)) / wall if wall else 0.0
    return {
        "seconds": round(result["elapsed_ms"] / 1000, 2),
        "frames": result["frames"],
        "fps": round(fps, 1),
        "frame_ms_p50": round(pct(gaps, 50), 1),
        "frame_ms_p95": round(pct(gaps, 95), 1),
        "frame_ms_max": round(max(gaps), 1) if gaps else None,
        "frames_over_50ms": sum(1 for g in gaps if g > 50),
        "long_tasks": len(result["long_tasks"]),
        "long_task_ms_max": round(max(result["long_tasks"]), 1) if result["long_tasks"] else 0.0,
        "price_pushes": len(pushes) - n_before,
        "main_thread_busy_pct": round(100 * busy, 1),
        "script_ms": round(1000 * (after.get("ScriptDuration", 0) - before.get("ScriptDuration", 0)), 1),
        "layout_ms": round(1000 * (after.get("LayoutDuration", 0) - before.get("LayoutDuration", 0)), 1),
        "js_heap_used_mib": round(after.get("JSHeapUsedSize", 0) / 2**20, 1),
    }


def bundle_size() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bundle.json"
        proc = subprocess.run(["node", str(ROOT / "frontend" / "scripts" / "bundle-size.mjs"), str(out)],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"bundle-size.mjs failed: {proc.stderr or proc.stdout}")
        data: dict[str, Any] = json.loads(out.read_text())
        return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_pos", nargs="?", help=argparse.SUPPRESS)  # bench/run_all.py passes the path
    parser.add_argument("--out", default=None, help="JSON output (default bench/results/frontend.json)")
    parser.add_argument("--runs", type=int, default=5, help="time-to-interactive runs, cold and warm each")
    parser.add_argument("--fps-seconds", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="3 runs, 5 s of frames")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.fps_seconds = 3, 5.0
    out = Path(args.out or args.out_pos or ROOT / "bench" / "results" / "frontend.json")
    t_start = time.monotonic()

    bundle = bundle_size()  # fails fast when there is no build
    # the build bundle-size.mjs measured (frontend/dist), whatever OPEX_E2E_DIST says
    stack = E2EStack(log_dir=Path(tempfile.mkdtemp(prefix="opex-bench-frontend-")), dist=ROOT / "frontend" / "dist")
    print(f"starting the local stack (log: {stack.log_path}) ...", flush=True)
    stack.start()
    try:
        with sync_playwright() as p:
            browser = launch_chromium(p)
            try:
                email = f"bench-fe-{uuid.uuid4().hex[:10]}@example.com"
                ctx = browser.new_context(base_url=stack.base_url)
                resp = ctx.request.post("/api/v1/user/signup", data={"email": email, "password": PASSWORD})
                assert resp.ok, f"sign-up failed: {resp.status} {resp.text()[:200]}"
                ctx.close()
                url = stack.url(f"/trade/{BTC}")

                # one unmeasured load: the stack's first requests (imports, pools) are not the app's cost
                ctx = new_signed_in_context(browser, stack, email)
                measure_tti(ctx.new_page(), url)
                ctx.close()

                cold, warm = [], []
                for _ in range(args.runs):
                    ctx = new_signed_in_context(browser, stack, email)
                    page = ctx.new_page()
                    cold.append(measure_tti(page, url))
                    warm.append(measure_tti(page, url, reload=True))
                    ctx.close()

                ctx = new_signed_in_context(browser, stack, email)
                fps = measure_fps(ctx.new_page(), url, args.fps_seconds)
                ctx.close()
                chromium_version = browser.version
            finally:
                browser.close()
    finally:
        stack.stop()

    cold_tti = [r["tti_ms"] for r in cold]
    warm_tti = [r["tti_ms"] for r in warm]
    kib = 1024.0
    result: dict[str, Any] = {
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Chromium {chromium_version} headless",
        "viewport": VIEWPORT,
        "price_feed": f"fake Backpack, every market every {STEP_S * 1000:.0f} ms; "
                      f"pushes capped by WS_PRICE_RATE_PER_S (default 2/s)",
        "time_to_interactive": {
            "definition": "navigation start -> first frame with the order form enabled, a fill price shown "
                          "and the live connection up",
            "cold": cold, "warm": warm,
            "cold_ms_p50": statistics.median(cold_tti), "cold_ms_max": max(cold_tti),
            "warm_ms_p50": statistics.median(warm_tti), "warm_ms_max": max(warm_tti),
        },
        "chart_frame_rate": fps,
        "bundle": bundle,
        "seconds": round(time.monotonic() - t_start, 1),
    }
    initial_kib = bundle["initial_gzip_bytes"] / kib
    total_kib = bundle["total_gzip_bytes"] / kib
    trade_chunk = next((a for a in bundle["assets"] if "TradePage" in a["file"]), None)
    result["summary"] = [
        {"figure": f"Trade page time to interactive, cold cache (p50 of {len(cold_tti)}; max)",
         "value": f"{statistics.median(cold_tti):,.0f} ms ({max(cold_tti):,.0f} ms)",
         "target": f"< {TARGET_TTI_MS:,.0f} ms"},
        {"figure": "Trade page time to interactive, reload (p50)",
         "value": f"{statistics.median(warm_tti):,.0f} ms", "target": f"< {TARGET_TTI_MS:,.0f} ms"},
        {"figure": f"Chart frame rate while prices stream ({fps['seconds']:.0f} s, {fps['price_pushes']} pushes)",
         "value": f"{fps['fps']:.1f} fps (p95 frame {fps['frame_ms_p95']:.1f} ms, "
                  f"{fps['frames_over_50ms']} frames > 50 ms)",
         "target": f"≥ {TARGET_FPS:.0f} fps"},
        {"figure": "Renderer main thread busy while prices stream",
         "value": f"{fps['main_thread_busy_pct']:.1f} %", "target": "(lower is better)"},
        {"figure": "Bundle, gzipped: first page / everything",
         "value": f"{initial_kib:.1f} KiB / {total_kib:.1f} KiB"
                  + (f" (trade page chunk {trade_chunk['gzip_bytes'] / kib:.1f} KiB, lazy)" if trade_chunk else ""),
         "target": f"< {TARGET_INITIAL_GZIP_KIB:.0f} KiB first page"},
    ]

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    width = max(len(s["figure"]) for s in result["summary"])
    print(f"\n{'figure':<{width}}  {'measured':<52}  target")
    for s in result["summary"]:
        print(f"{s['figure']:<{width}}  {s['value']:<52}  {s['target']}")
    print(f"\nwrote {out} ({result['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
