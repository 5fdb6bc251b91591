"""``isoscribe bench isolation``: what process isolation costs, and what it saves.

(a) Call overhead through a warm pool against a direct in-process call, p50 and p99, for a 1 KB
    payload and a 10 MB numpy array (which crosses by shared memory).
(b) Cold start of a bare worker: spawn, import, load an empty stage, one task, exit.
(c) Leak containment, after ``process-isolation-review.md``: a native SDK that leaks ~260 MB a request,
    scaled to 50 MB. Parent RSS after each request for thread-based execution, a one-shot subprocess
    per request, and a recycled pool (RSS cap 500 MB). Each mode runs in a fresh interpreter so one
    mode's leak or imports cannot distort another's curve.
(d) Kill latency: how long after its timeout a hung task fails with StageTimeout, and how long after
    a SIGKILL of the parent its workers are gone (the tests only check that both happen).

Writes ``isolation.json`` and ``isolation.png`` into ``results_dir``. Uses the fault-injection stage.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from isoscribe.config import Settings
from isoscribe.isolation import Limits, StageSpec, StageTimeout, WorkerPool, run_isolated
from isoscribe.stages import faults
from isoscribe.stages.faults import FaultRequest

__all__ = ["main"]

FAULTS = StageSpec("isoscribe.stages.faults")
LEAK_MB = 50
POOL_RSS_CAP_MB = 500
LEAK_MODES = ("thread", "one_shot", "pool")


def main(quick: bool = False, results_dir: Path = Path("bench/results"), settings: Settings | None = None) -> dict:
    settings = settings or Settings()
    start_method = settings.isolation.start_method
    requests = 30 if quick else 100
    results: dict[str, Any] = {
        "benchmark": "isolation",
        "quick": quick,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "start_method": start_method,
            "load_average_1min_at_start": round(os.getloadavg()[0], 2),
        },
        "call_overhead": _call_overhead(quick, start_method),
        "cold_start": _cold_start(quick, start_method),
        "leak_containment": _leak_containment(requests, start_method),
        "kill_latency": _kill_latency(quick, start_method),
    }
    results["machine"]["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    results["acceptance"] = _acceptance(results)
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "isolation.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    _plot(results, results_dir / "isolation.png")
    return results


def _call_overhead(quick: bool, start_method: str) -> dict[str, Any]:
    payloads = {
        "1KB": (os.urandom(1024), 300 if quick else 2000),
        "10MB": (np.random.default_rng(0).standard_normal(10 * 2**20 // 8), 40 if quick else 200),
    }
    model = faults.load(None)
    figures: dict[str, Any] = {}
    with WorkerPool(FAULTS, size=1, start_method=start_method) as pool:
        pool.wait_ready(60)
        for label, (payload, calls) in payloads.items():
            request = FaultRequest("ok", payload=payload)
            direct = _latencies_ms(lambda: faults.run(model, request), calls)
            pooled = _latencies_ms(lambda: pool.run(request), calls)
            figures[label] = {
                "calls": calls,
                "direct_p50_ms": _percentile(direct, 50),
                "direct_p99_ms": _percentile(direct, 99),
                "pool_p50_ms": _percentile(pooled, 50),
                "pool_p99_ms": _percentile(pooled, 99),
                "overhead_p50_ms": round(_percentile(pooled, 50) - _percentile(direct, 50), 4),
                "overhead_p99_ms": round(_percentile(pooled, 99) - _percentile(direct, 99), 4),
            }
    return figures


def _latencies_ms(call: Any, calls: int) -> list[float]:
    for _ in range(min(20, calls)):
        call()  # warm-up: first pickles, first page faults in /dev/shm
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def _percentile(values: list[float], percent: float) -> float:
    return round(float(np.percentile(values, percent)), 4)


def _cold_start(quick: bool, start_method: str) -> dict[str, Any]:
    samples = 7 if quick else 25
    round_trips, to_ready = [], []
    for _ in range(samples):
        started = time.perf_counter()
        run_isolated(FAULTS, FaultRequest("ok"), start_method=start_method)
        round_trips.append(time.perf_counter() - started)
    for _ in range(samples):
        started = time.perf_counter()
        with WorkerPool(FAULTS, size=1, start_method=start_method) as pool:
            pool.wait_ready(60)
            to_ready.append(time.perf_counter() - started)
    return {
        "samples": samples,
        "run_isolated_median_s": round(statistics.median(round_trips), 4),
        "spawn_to_ready_median_s": round(statistics.median(to_ready), 4),
    }


def _kill_latency(quick: bool, start_method: str) -> dict[str, Any]:
    samples = 3 if quick else 10
    timeout_s = 1.0
    past_timeout_s = []
    with WorkerPool(FAULTS, limits=Limits(timeout_s=timeout_s), start_method=start_method) as pool:
        for _ in range(samples):
            pool.wait_ready(60)
            started = time.perf_counter()
            try:
                pool.run(FaultRequest("hang"))
            except StageTimeout:
                past_timeout_s.append(time.perf_counter() - started - timeout_s)
    orphaned_s = [_orphan_gone_s(start_method) for _ in range(samples)]
    return {
        "samples": samples,
        "timeout_to_error_median_s": round(statistics.median(past_timeout_s), 4),
        "timeout_to_error_max_s": round(max(past_timeout_s), 4),
        "parent_kill_to_workers_gone_median_s": round(statistics.median(orphaned_s), 4),
        "parent_kill_to_workers_gone_max_s": round(max(orphaned_s), 4),
    }


def _orphan_gone_s(start_method: str) -> float:
    """SIGKILL a parent holding a ready worker; seconds until that worker is gone."""
    code = (
        "from isoscribe.isolation import StageSpec, WorkerPool\n"
        f"pool = WorkerPool(StageSpec('isoscribe.stages.faults'), start_method={start_method!r})\n"
        "pool.wait_ready(60)\nprint(pool.worker_pids()[0], flush=True)\nimport time; time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    worker = psutil.Process(int(parent.stdout.readline()))
    parent.kill()
    killed_at = time.perf_counter()
    parent.wait()
    while _alive(worker):
        time.sleep(0.001)
    return time.perf_counter() - killed_at


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _leak_containment(requests: int, start_method: str) -> dict[str, Any]:
    curves: dict[str, Any] = {"leak_mb_per_request": LEAK_MB, "requests": requests, "pool_rss_cap_mb": POOL_RSS_CAP_MB}
    for mode in LEAK_MODES:
        code = f"from isoscribe.benchmarks.isolation import leak_run; leak_run({mode!r}, {requests}, {start_method!r})"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        curve = json.loads(done.stdout.strip().splitlines()[-1])
        curve["growth_mb"] = round(curve["parent_rss_mb"][-1] - curve["baseline_mb"], 1)
        curves[mode] = curve
    return curves


def leak_run(mode: str, requests: int, start_method: str = "spawn") -> None:
    """One leak curve in this (fresh) interpreter; prints it as JSON on the last line."""
    request = FaultRequest("leak", mb=LEAK_MB)
    process = psutil.Process()
    rss_mb = lambda: round(process.memory_info().rss / 2**20, 1)  # noqa: E731
    curve: dict[str, Any] = {"parent_rss_mb": []}
    if mode == "thread":
        model = faults.load(None)
        curve["baseline_mb"] = rss_mb()
        for _ in range(requests):
            # As in the review: a fresh one-thread executor per request, shut down afterwards.
            with ThreadPoolExecutor(max_workers=1) as executor:
                executor.submit(faults.run, model, request).result()
            curve["parent_rss_mb"].append(rss_mb())
    elif mode == "one_shot":
        run_isolated(FAULTS, FaultRequest("ok"), start_method=start_method)
        curve["baseline_mb"] = rss_mb()
        for _ in range(requests):
            run_isolated(FAULTS, request, start_method=start_method)
            curve["parent_rss_mb"].append(rss_mb())
    else:
        with WorkerPool(FAULTS, max_rss_mb=POOL_RSS_CAP_MB, start_method=start_method) as pool:
            pool.run(FaultRequest("ok"))
            curve["baseline_mb"] = rss_mb()
            curve["worker_rss_mb"] = []
            for _ in range(requests):
                result = pool.run(request)
                curve["parent_rss_mb"].append(rss_mb())
                curve["worker_rss_mb"].append(round(result.stats.peak_rss_mb, 1))
            curve["recycles"] = pool.stats().exits_by_reason.get("rss_cap", 0)
    print(json.dumps(curve))


def _acceptance(results: dict[str, Any]) -> dict[str, Any]:
    leak = results["leak_containment"]
    return {
        "pool_overhead_p50_1kb_ms": results["call_overhead"]["1KB"]["overhead_p50_ms"],
        "pool_overhead_p50_1kb_le_5ms": results["call_overhead"]["1KB"]["overhead_p50_ms"] <= 5.0,
        "thread_parent_growth_mb": leak["thread"]["growth_mb"],
        "thread_expected_growth_mb": leak["requests"] * LEAK_MB,
        "pool_parent_growth_mb": leak["pool"]["growth_mb"],
        "pool_parent_growth_lt_20mb": leak["pool"]["growth_mb"] < 20,
    }


def _plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    leak = results["leak_containment"]
    figure, (curves, bars) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 2]})
    labels = {"thread": "thread-based (in process)", "one_shot": "one-shot subprocess", "pool": "recycled pool"}
    styles = {"thread": "-", "one_shot": "--", "pool": "-"}
    for mode in LEAK_MODES:
        rss = leak[mode]["parent_rss_mb"]
        label = f"parent RSS, {labels[mode]}: {leak[mode]['growth_mb']:+.0f} MB"
        curves.plot(range(1, len(rss) + 1), rss, styles[mode], linewidth=2, label=label)
    worker = leak["pool"].get("worker_rss_mb")
    if worker:
        cap = leak["pool_rss_cap_mb"]
        curves.plot(range(1, len(worker) + 1), worker, ":", color="grey", label=f"pool worker peak RSS (cap {cap} MB)")
    curves.set_xlabel("request")
    curves.set_ylabel("RSS (MB)")
    curves.set_title(f"Native leak of {leak['leak_mb_per_request']} MB per request")
    curves.legend(fontsize=8)

    overhead = results["call_overhead"]
    names = list(overhead)
    positions = np.arange(len(names))
    for offset, (key, label) in enumerate(
        [("direct_p50_ms", "direct p50"), ("direct_p99_ms", "direct p99"), ("pool_p50_ms", "pool p50"), ("pool_p99_ms", "pool p99")]
    ):
        values = [max(overhead[name][key], 1e-4) for name in names]
        bars.bar(positions + (offset - 1.5) * 0.2, values, width=0.2, label=label)
    bars.set_xticks(positions, names)
    bars.set_yscale("log")
    bars.set_ylabel("latency per call (ms, log scale)")
    bars.set_title("Call latency: direct vs warm pool")
    bars.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
