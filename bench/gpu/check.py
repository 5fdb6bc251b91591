"""The CUDA path, on a machine with a GPU and a CUDA PyTorch (see README, "GPU check"):

* the isolation runtime: a stage with ``device = "auto"`` lands on CUDA; NVML reports each task's peak GPU
  memory; the GPU memory of a worker goes back when it exits (one-shot), is recycled (after two tasks) or
  crashes, and when the pool shuts down;
* segmentation-3.0 (overlap turns), resemblyzer and CAM++ on CUDA give what they give on the CPU, on
  pyannote's sample.

Writes ``$OUT/gpu_check.json`` (or ./gpu_check.json).
"""

from __future__ import annotations

import json
import os
import time
import wave
from pathlib import Path

import numpy as np
import pynvml
import torch

from isoscribe.audio import SAMPLE_RATE
from isoscribe.isolation import StageSpec, WorkerCrashed, WorkerPool, run_isolated
from isoscribe.isolation.monitor import gpu_total_mb
from isoscribe.stages import campplus, overlap
from isoscribe.stages.speaker_embedding import embed, speaker_windows

SAMPLE = Path(__file__).parent / "carry" / "sample.wav"


def main() -> None:
    report = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(), "gpu_total_mb": gpu_total_mb()}
    report["isolation"] = isolation()
    audio = sample()
    report["segmentation"] = segmentation(audio)
    report["resemblyzer"] = resemblyzer(audio)
    report["campplus"] = campplus_vectors(audio)
    text = json.dumps(report, indent=1)
    print(text)
    (Path(os.environ.get("OUT", ".")) / "gpu_check.json").write_text(text)


def isolation() -> dict:
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    base = pynvml.nvmlDeviceGetMemoryInfo(handle).used

    def above_start_mb() -> int:
        return round((pynvml.nvmlDeviceGetMemoryInfo(handle).used - base) / 2**20)

    stage = StageSpec("gpu_stage", config={"device": "auto"})
    one_shot = run_isolated(stage, {"mb": 2048})
    time.sleep(1.0)
    report = {"one_shot": {"value": one_shot.value, "peak_gpu_mb": one_shot.stats.peak_gpu_mb,
                           "gpu_mb_above_start_after_exit": above_start_mb()}}
    pool, tasks = WorkerPool(stage, size=1, max_tasks_per_worker=2), []
    for mb in (1024, 1024, 512):
        result = pool.run({"mb": mb})
        time.sleep(0.5)
        tasks.append({"mb": mb, "worker_pid": result.stats.worker_pid, "worker_task": result.stats.worker_task_number,
                      "peak_gpu_mb": result.stats.peak_gpu_mb, "gpu_mb_above_start_worker_alive": above_start_mb()})
    try:
        pool.run({"mb": 1024, "crash": True})
        crash = "no error"
    except WorkerCrashed as exc:
        crash = type(exc).__name__
    time.sleep(1.0)
    report["pool"] = {"tasks": tasks, "crash": crash, "gpu_mb_above_start_after_crash": above_start_mb()}
    pool.shutdown()
    time.sleep(1.0)
    report["gpu_mb_above_start_after_shutdown"] = above_start_mb()
    return report


def sample() -> np.ndarray:
    with wave.open(str(SAMPLE)) as recording:
        return np.frombuffer(recording.readframes(recording.getnframes()), dtype=np.int16).astype(np.float32) / 32768


def segmentation(audio: np.ndarray) -> dict:
    activity, regions, seconds = {}, {}, {}
    for device in ("cpu", "cuda"):
        segmenter = overlap.load(device)
        started = time.perf_counter()
        activity[device] = overlap.local_activity(segmenter, audio)
        seconds[device] = round(time.perf_counter() - started, 3)
        regions[device] = overlap.overlap_regions(activity[device], segmenter.frame_duration_s)
    cpu, cuda = activity["cpu"], activity["cuda"]
    return {"frames_with_the_same_classes": float((cpu.active == cuda.active).all(axis=-1).mean()),
            "two_voices_max_difference": float(np.abs(cpu.two_voices - cuda.two_voices).max()),
            "overlaps_same": regions["cpu"] == regions["cuda"], "overlaps_cuda": regions["cuda"], "seconds": seconds}


def resemblyzer(audio: np.ndarray) -> dict:
    from resemblyzer import VoiceEncoder

    duration_s = audio.size / SAMPLE_RATE
    windows = speaker_windows([(0.0, duration_s)], duration_s)
    vectors = {device: embed(VoiceEncoder(device, verbose=False).eval(), device, audio, windows)
               for device in ("cpu", "cuda")}
    return {"windows": len(windows), "least_cosine_cpu_cuda": _least_cosine(vectors["cpu"], vectors["cuda"])}


def campplus_vectors(audio: np.ndarray) -> dict:
    duration_s = audio.size / SAMPLE_RATE
    windows = speaker_windows([(0.0, duration_s)], duration_s, campplus.WINDOW_S, campplus.HOP_S)
    vectors = {device: campplus.embed(campplus.load(device), device, audio, windows) for device in ("cpu", "cuda")}
    return {"windows": len(windows), "least_cosine_cpu_cuda": _least_cosine(vectors["cpu"], vectors["cuda"])}


def _least_cosine(first: np.ndarray, second: np.ndarray) -> float:
    norms = np.linalg.norm(first, axis=1) * np.linalg.norm(second, axis=1)
    return float(((first * second).sum(axis=1) / np.maximum(norms, 1e-9)).min())


if __name__ == "__main__":
    main()
