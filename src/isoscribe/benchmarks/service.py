"""``isoscribe bench service``: bounded load on a real ``isoscribe serve`` over loopback.

Two runs with identical load (full: 200 requests, concurrency 4; quick: 60), one injected worker
crash per 50 requests (20 in quick mode): with recycling (``max_tasks_per_worker`` 10) and without
(workers live for the whole run). Reported: errors other than the injected crashes (must be 0),
latency p50/p99 of each run and their ratio, the server process's RSS over time, worker exits by
reason; ``service.json`` and ``service.png`` in the results directory. Then streaming: one 10-minute
recording (2 in quick mode; a shared clip repeated) with ``stream=true``, time to the first
``transcript.text.delta`` against the time to the full response of the same request unstreamed.

This module doubles as the bench's speech stage (``load``/``run``, hosted in the pool's workers):
the real speech stage, except that a request whose prompt says "segfault" kills its worker, so the
crashes the bench injects are real SIGSEGVs in a real worker. Benchmarks only.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import logging
import tempfile
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

from isoscribe.benchmarks.server import ServerProcess
from isoscribe.config import Settings
from isoscribe.isolation.monitor import tree_rss_mb
from isoscribe.logs import log_event
from isoscribe.pipeline.events import Event
from isoscribe.stages import faults, speech
from isoscribe.transcript import SpeechRequest, Transcript

__all__ = ["main", "load", "run"]

logger = logging.getLogger("isoscribe.bench.service")

SHARED_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
CLIP = "librivox/sense_and_sensibility_01_austen_64kb-0880.wav"
CRASH_PROMPT = "segfault"
LONG_CLIP = "long/sonnet001.wav"
STREAM_MINUTES = 10.0
_SECRETS = {("service", "api_key"), ("llm", "api_key"), ("notify", "smtp_password")}

load = speech.load


def run(model: speech.SpeechModels, request: SpeechRequest, emit: Callable[[Event], None] | None = None) -> Transcript:
    if request.initial_prompt == CRASH_PROMPT:
        faults.run({}, faults.FaultRequest("segfault"))
    return speech.run(model, request, emit)


def main(quick: bool, results_dir: Path, settings: Settings, data_dir: Path = SHARED_DATA) -> dict[str, Any]:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request would drown the log
    requests, crash_every = (40, 20) if quick else (200, 50)
    load_shape = {"requests": requests, "concurrency": 4, "crash_every": crash_every, "clip": CLIP}
    audio = (data_dir / CLIP).read_bytes()
    runs = {}
    with tempfile.TemporaryDirectory(prefix="isoscribe-bench-service-") as tmp:
        for name, max_tasks in (("recycling", 10), ("no_recycling", None)):
            config = _server_config(settings, Path(tmp) / name, max_tasks)
            runs[name] = _run_load(config, Path(tmp), audio, requests, crash_every, concurrency=4)
            log_event(logger, "bench_run_done", run=name, **{k: v for k, v in runs[name].items() if k.endswith("_s")})
        minutes = 2.0 if quick else STREAM_MINUTES
        config = _server_config(settings, Path(tmp) / "streaming", None)
        streaming = streaming_latency(config, Path(tmp), data_dir, minutes)
        log_event(logger, "bench_streaming_done", **streaming)
    results = {
        "mode": "quick" if quick else "full",
        "load": load_shape,
        "model": settings.asr.model,
        "asr_workers": 2,
        "runs": {name: {k: v for k, v in r.items() if k != "rss_series"} for name, r in runs.items()},
        "unexpected_errors": sum(r["unexpected_errors"] for r in runs.values()),
        "p50_ratio_recycling_vs_not": _ratio(runs["recycling"]["p50_s"], runs["no_recycling"]["p50_s"]),
        "p99_ratio_recycling_vs_not": _ratio(runs["recycling"]["p99_s"], runs["no_recycling"]["p99_s"]),
        "streaming": streaming,
    }
    (results_dir / "service.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    _plot(runs, results_dir / "service.png")
    return results


def _server_config(settings: Settings, data_dir: Path, max_tasks: int | None) -> dict[str, Any]:
    """The user's settings as TOML tables, with the bench's service, pool and stage on top."""
    config = settings.model_dump(mode="json", exclude_none=True)
    for section, key in _SECRETS:
        config.get(section, {}).pop(key, None)
    config.pop("log_level", None)
    config["asr"]["device"] = "cpu" if settings.asr.device == "auto" else settings.asr.device
    config["service"].update(data_dir=str(data_dir), asr_workers=2, queue_size=16)
    # The two runs differ in max_tasks_per_worker only; 1e6 stands for "never" (TOML has no null).
    config["isolation"].update(
        speech_stage=__name__, prespawn=True, max_tasks_per_worker=max_tasks or 1_000_000, idle_ttl_s=3600
    )
    config["isolation"].pop("max_rss_mb", None)
    return config


def streaming_latency(config: dict, tmp: Path, data_dir: Path, minutes: float) -> dict[str, Any]:
    """Seconds from sending a ``minutes`` long recording to its first delta and to the end of its
    stream, and to the full response of the same request without streaming (one request at a time)."""
    import httpx

    audio = _repeated_wav(data_dir / LONG_CLIP, minutes * 60)
    config["service"].update(max_duration_s=minutes * 60 + 60, max_upload_mb=len(audio) / 1e6 + 1)
    server = ServerProcess(tmp, config, log_level="warning")
    try:
        server.start()
        with httpx.Client(base_url=server.url, timeout=3600) as client:
            streamed = _time_stream(client, audio)
            started = time.perf_counter()
            client.post("/v1/audio/transcriptions", files={"file": ("long.wav", audio)}).raise_for_status()
            full_response_s = time.perf_counter() - started
    finally:
        server.stop()
    return {"audio_s": round(minutes * 60, 1), **streamed, "full_response_s": round(full_response_s, 3)}


def _time_stream(client: Any, audio: bytes) -> dict[str, Any]:
    started = time.perf_counter()
    first_delta_s, deltas = None, 0
    form = {"stream": "true"}
    with client.stream("POST", "/v1/audio/transcriptions", files={"file": ("long.wav", audio)}, data=form) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if '"transcript.text.delta"' in line:
                deltas += 1
                first_delta_s = first_delta_s or time.perf_counter() - started
    return {
        "first_delta_s": round(first_delta_s or 0.0, 3),
        "stream_done_s": round(time.perf_counter() - started, 3),
        "deltas": deltas,
    }


def _repeated_wav(clip: Path, seconds: float) -> bytes:
    """``clip`` (a WAV file) repeated whole until it lasts at least ``seconds``, as WAV bytes."""
    with wave.open(str(clip), "rb") as source:
        params, frames = source.getparams(), source.readframes(source.getnframes())
    repeats = max(1, -int(-seconds * params.framerate // params.nframes))
    out = io.BytesIO()
    with wave.open(out, "wb") as target:
        target.setparams(params)
        target.writeframes(frames * repeats)
    return out.getvalue()


def _run_load(config: dict, tmp: Path, audio: bytes, requests: int, crash_every: int, concurrency: int) -> dict:
    import httpx

    server = ServerProcess(tmp, config, log_level="warning")
    try:
        server.start()
        with httpx.Client(base_url=server.url, timeout=300) as warm:
            warm.post("/v1/audio/transcriptions", files={"file": ("clip.wav", audio)}).raise_for_status()
        sampler = _RssSampler(server.pid)
        sampler.start()
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            outcomes = list(pool.map(lambda i: _request(server.url, audio, i, crash_every), range(requests)))
        wall_s = time.perf_counter() - started
        sampler.stop()
        metrics = server.metrics()
    finally:
        exit_code = server.stop() if server.process is not None else None
    latencies = sorted(o["latency_s"] for o in outcomes if o["expected"] and o["status"] == 200)
    unexpected = [o for o in outcomes if not _as_expected(o)]
    rss = [mb for _, mb, _ in sampler.series]
    workers = [mb for _, _, mb in sampler.series]
    return {
        "requests": requests,
        "ok": sum(1 for o in outcomes if o["status"] == 200),
        "injected_crashes": sum(1 for o in outcomes if o["injected"]),
        "unexpected_errors": len(unexpected),
        "unexpected_examples": unexpected[:3],
        "wall_s": round(wall_s, 3),
        "throughput_rps": round(requests / wall_s, 3),
        "p50_s": round(_percentile(latencies, 50), 3),
        "p99_s": round(_percentile(latencies, 99), 3),
        "server_rss_start_mb": round(rss[0], 1) if rss else None,
        "server_rss_end_mb": round(rss[-1], 1) if rss else None,
        "server_rss_max_mb": round(max(rss), 1) if rss else None,
        "workers_rss_max_mb": round(max(workers), 1) if workers else None,
        "worker_exits_by_reason": _exits_by_reason(metrics),
        "server_exit_code": exit_code,
        "rss_series": sampler.series,
        "server_rss_over_time_mb": [[t, mb] for t, mb, _ in sampler.series[:: max(1, len(sampler.series) // 50)]],
    }


def _request(url: str, audio: bytes, index: int, crash_every: int) -> dict:
    import httpx

    injected = index % crash_every == crash_every - 1
    data = {"prompt": CRASH_PROMPT} if injected else {}
    started = time.perf_counter()
    try:
        response = httpx.post(
            f"{url}/v1/audio/transcriptions", files={"file": ("clip.wav", audio)}, data=data, timeout=300
        )
        status = response.status_code
        code = response.json().get("error", {}).get("code") if status != 200 else None
    except httpx.HTTPError as exc:
        status, code = 0, type(exc).__name__
    return {
        "index": index,
        "injected": injected,
        "expected": not injected,
        "status": status,
        "code": code,
        "latency_s": time.perf_counter() - started,
    }


def _as_expected(outcome: dict) -> bool:
    """A normal request succeeds; an injected crash fails cleanly as worker_crashed, nothing else."""
    if outcome["injected"]:
        return outcome["status"] == 500 and outcome["code"] == "worker_crashed"
    return outcome["status"] == 200


def _exits_by_reason(metrics: str) -> dict[str, float]:
    exits: dict[str, float] = {}
    for line in metrics.splitlines():
        if line.startswith("isoscribe_worker_exits_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            exits[reason] = exits.get(reason, 0) + float(line.rsplit(" ", 1)[1])
    return exits


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    rank = min(len(values) - 1, max(0, round(pct / 100 * (len(values) - 1))))
    return values[rank]


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


class _RssSampler:
    """Every 0.25 s: (seconds since start, server RSS MB, its workers' summed RSS MB)."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.series: list[tuple[float, float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def start(self) -> None:
        self._started = time.perf_counter()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while True:
            rss_mb = self.process.memory_info().rss / 2**20
            workers_mb = (tree_rss_mb(self.process.pid) or rss_mb) - rss_mb
            self.series.append((round(time.perf_counter() - self._started, 2), round(rss_mb, 1), round(workers_mb, 1)))
            if self._stop.wait(0.25):
                return


def _plot(runs: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (rss_axis, latency_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, run_result in runs.items():
        times, rss, workers = zip(*run_result["rss_series"]) if run_result["rss_series"] else ((), (), ())
        line = rss_axis.plot(times, rss, label=f"server, {name.replace('_', ' ')}")[0]
        rss_axis.plot(
            times, workers, linestyle="--", color=line.get_color(), label=f"workers, {name.replace('_', ' ')}"
        )
        latency_axis.bar(
            name.replace("_", " "),
            run_result["p99_s"],
            color="tab:orange",
            label="p99" if name == "recycling" else None,
        )
        latency_axis.bar(
            name.replace("_", " "), run_result["p50_s"], color="tab:blue", label="p50" if name == "recycling" else None
        )
    rss_axis.set(title="RSS under load: server process vs its workers", xlabel="seconds", ylabel="RSS (MB)")
    rss_axis.set_ylim(bottom=0)
    rss_axis.legend()
    latency_axis.set(title="Request latency (injected crashes excluded)", ylabel="seconds")
    latency_axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
