"""What a batch did: per-file status, stage times and peaks, errors, and process-tree memory over time.

``write_report`` puts ``report.json``, ``report.md`` and ``memory.png`` in the output directory,
each written atomically.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from isoscribe.files import write_atomic
from isoscribe.isolation.monitor import tree_rss_mb
from isoscribe.summary.markdown import literal

__all__ = [
    "FileReport",
    "BatchReport",
    "MemorySampler",
    "MAX_MEMORY_POINTS",
    "summarised",
    "REPORT_FILES",
    "write_report",
    "render_markdown",
    "plot_memory",
]

REPORT_FILES = {"json": "report.json", "md": "report.md", "png": "memory.png"}
"""The files ``write_report`` puts in the output directory, by kind."""


@dataclass
class FileReport:
    input_path: str
    output_name: str
    status: str
    """done, failed, or skipped (done by an earlier run with the same settings)."""
    attempts: int = 0
    error: str | None = None
    warning: str | None = None
    stages: dict[str, dict[str, float | None]] = field(default_factory=dict)
    """stage -> {"wall_s", "peak_rss_mb", "peak_gpu_mb"}; "post" and "write" run in the parent."""
    outputs: list[str] = field(default_factory=list)


@dataclass
class BatchReport:
    out_dir: str
    files: list[FileReport]
    started_at: str
    wall_s: float
    isolation: str
    executor: str
    workers: int
    budget_mb: float
    stage_peaks_mb: dict[str, float]
    """Peaks the budget gate used (declared, learned or default)."""
    peak_tree_mb: float
    """Highest sampled RSS of the parent plus all its descendants."""
    peak_parent_mb: float
    memory_samples: list[tuple[float, float, float]] = field(default_factory=list)
    """(seconds since start, tree MB, parent MB): at most ``MAX_MEMORY_POINTS``, each the highest of its
    stretch of the run (``summarised``)."""
    overcommitted: dict[str, int] = field(default_factory=dict)
    """Per stage, how often it ran alone although its peak exceeds the budget."""
    recovered: int = 0
    """Files found ``running`` from a killed run and queued again."""

    @property
    def counts(self) -> dict[str, int]:
        counts = {"total": len(self.files), "done": 0, "failed": 0, "skipped": 0}
        for item in self.files:
            counts[item.status] = counts.get(item.status, 0) + 1
        return counts

    @property
    def failures(self) -> list[FileReport]:
        return [item for item in self.files if item.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failures

    def stage_summary(self) -> dict[str, dict[str, float]]:
        """Per stage over this run's files: total and max wall time, max peak RSS."""
        summary: dict[str, dict[str, float]] = {}
        for item in self.files:
            if item.status == "skipped":
                continue
            for stage, record in item.stages.items():
                entry = summary.setdefault(
                    stage, {"files": 0, "total_wall_s": 0.0, "max_wall_s": 0.0, "max_peak_rss_mb": 0.0}
                )
                wall = float(record.get("wall_s") or 0.0)
                entry["files"] += 1
                entry["total_wall_s"] += wall
                entry["max_wall_s"] = max(entry["max_wall_s"], wall)
                entry["max_peak_rss_mb"] = max(entry["max_peak_rss_mb"], float(record.get("peak_rss_mb") or 0.0))
        return summary

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["counts"] = self.counts
        data["stage_summary"] = self.stage_summary()
        return data


MAX_MEMORY_POINTS = 240
"""Points of the memory curve kept in the report, however long the batch ran (samples come at 5 Hz)."""


def summarised(
    samples: list[tuple[float, float, float]], points: int = MAX_MEMORY_POINTS
) -> list[tuple[float, float, float]]:
    """At most ``points`` samples, rounded: the run cut into equal stretches, each kept as its highest
    tree sample, so the peak always survives."""
    stretch = max(1, -(-len(samples) // points))
    kept = [max(samples[i : i + stretch], key=lambda sample: sample[1]) for i in range(0, len(samples), stretch)]
    return [(round(t, 2), round(tree, 1), round(parent, 1)) for t, tree, parent in kept]


class MemorySampler:
    """Samples the RSS of this process and all its descendants on a background thread."""

    def __init__(self, interval_s: float = 0.2) -> None:
        self.interval_s = interval_s
        self.samples: list[tuple[float, float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="memory-sampler", daemon=True)
        self._process = psutil.Process()
        self._start = 0.0

    def __enter__(self) -> MemorySampler:
        self._start = time.monotonic()
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    @property
    def peak_tree_mb(self) -> float:
        return max((tree for _, tree, _ in self.samples), default=0.0)

    @property
    def peak_parent_mb(self) -> float:
        return max((parent for _, _, parent in self.samples), default=0.0)

    def sample(self) -> None:
        parent_mb = _rss_mb(self._process)
        tree_mb = tree_rss_mb(self._process.pid) or parent_mb
        self.samples.append((time.monotonic() - self._start, tree_mb, parent_mb))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()


def _rss_mb(process: psutil.Process) -> float:
    try:
        return process.memory_info().rss / 2**20
    except psutil.Error:  # exited between listing and reading
        return 0.0


def write_report(report: BatchReport, out_dir: Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    paths = {kind: out_dir / name for kind, name in REPORT_FILES.items()}
    write_atomic(paths["json"], json.dumps(report.to_dict(), indent=2, default=str))
    write_atomic(paths["md"], render_markdown(report))
    write_atomic(paths["png"], plot_memory(report))
    return paths


def render_markdown(report: BatchReport) -> str:
    counts = report.counts
    lines = [
        "# isoscribe batch report",
        "",
        f"- started: {report.started_at}, wall time {report.wall_s:.1f} s",
        f"- files: {counts['total']} — done {counts['done']}, failed {counts['failed']}, "
        f"skipped (done before) {counts['skipped']}"
        + (f", interrupted {counts['interrupted']}" if counts.get("interrupted") else ""),
        f"- isolation: {report.isolation} ({report.executor} executor), workers {report.workers}",
        f"- memory budget {report.budget_mb:.0f} MB; stage peaks used: "
        + ", ".join(f"{stage} {peak:.0f} MB" for stage, peak in report.stage_peaks_mb.items()),
        f"- peak RSS of the process tree {report.peak_tree_mb:.0f} MB (parent {report.peak_parent_mb:.0f} MB)",
        "",
        "| file | status | attempts | speech s | speech peak MB | post s | summary s | summary peak MB | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for item in report.files:
        note = item.error or item.warning or ""
        lines.append(
            f"| {literal(Path(item.input_path).name)} | {item.status} | {item.attempts} | "
            f"{_cell(item, 'speech', 'wall_s')} | {_cell(item, 'speech', 'peak_rss_mb')} | "
            f"{_cell(item, 'post', 'wall_s')} | {_cell(item, 'summary', 'wall_s')} | "
            f"{_cell(item, 'summary', 'peak_rss_mb')} | {literal(note.splitlines()[0]) if note else ''} |"
        )
    if report.failures:
        lines += ["", "## Failures", ""]
        for item in report.failures:
            lines += [f"### {literal(item.input_path)}", "", "```", item.error or "", "```", ""]
    return "\n".join(lines) + "\n"


def _cell(item: FileReport, stage: str, key: str) -> str:
    value = item.stages.get(stage, {}).get(key)
    if value is None:
        return ""
    return f"{value:.1f}" if key == "wall_s" else f"{value:.0f}"


def plot_memory(report: BatchReport) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 3.5), dpi=100)
    if report.memory_samples:
        seconds, tree, parent = zip(*report.memory_samples)
        axes.plot(seconds, tree, label="process tree (parent + workers)")
        axes.plot(seconds, parent, label="parent", linestyle="--")
    axes.axhline(report.budget_mb, color="red", linewidth=0.8, label=f"budget {report.budget_mb:.0f} MB")
    axes.set_ylim(0, max(report.peak_tree_mb * 1.3, 100) if report.budget_mb > report.peak_tree_mb * 3 else None)
    axes.set_xlabel("seconds since batch start")
    axes.set_ylabel("RSS (MB)")
    counts = report.counts
    title = f"isoscribe batch, {report.isolation}: {counts['done']} done, {counts['failed']} failed"
    if counts["skipped"]:
        title += f", {counts['skipped']} skipped (done before)"
    axes.set_title(title)
    axes.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()
