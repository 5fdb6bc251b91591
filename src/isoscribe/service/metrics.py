"""Prometheus metrics: request latency, queue depth, and the worker pools as they are at scrape time.

Each app has its own registry, so several apps in one process (tests) do not collide. Pool figures
(workers, RSS per worker, exits by reason, crashes) are read from ``WorkerPool.stats()`` and
``WorkerPool.exits`` when scraped rather than mirrored into counters.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

__all__ = ["ServiceMetrics", "LatencyMiddleware", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, float("inf"))


class ServiceMetrics:
    def __init__(self, executor: Any, pipelines: Any, job_depth: Any) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.latency = Histogram(
            "isoscribe_request_latency_seconds",
            "HTTP request latency by route and status",
            ["route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_PoolCollector(executor, pipelines, job_depth))

    def export(self) -> bytes:
        return generate_latest(self.registry)


class _PoolCollector:
    def __init__(self, executor: Any, pipelines: Any, job_depth: Any) -> None:
        self.executor = executor
        self.pipelines = pipelines
        self.job_depth = job_depth

    def describe(self):
        return []

    def collect(self):
        workers = GaugeMetricFamily("isoscribe_workers", "Live worker processes per stage", labels=["stage"])
        rss = GaugeMetricFamily("isoscribe_worker_rss_bytes", "RSS of each worker", labels=["stage", "pid"])
        tasks = GaugeMetricFamily("isoscribe_worker_tasks", "Tasks each worker has run", labels=["stage", "pid"])
        exits = CounterMetricFamily(
            "isoscribe_worker_exits", "Worker exits by reason (max_tasks, rss_cap, idle …)", labels=["stage", "reason"]
        )
        crashes = CounterMetricFamily("isoscribe_worker_crashes", "Workers that died during a task", labels=["stage"])
        pool_queue = GaugeMetricFamily("isoscribe_pool_queue_depth", "Tasks waiting in a pool", labels=["stage"])
        for stage, pool in getattr(self.executor, "pools", {}).items():
            stats = pool.stats()
            workers.add_metric([stage], len(stats.workers))
            for worker in stats.workers:
                rss.add_metric([stage, str(worker.pid)], worker.rss_mb * 1024 * 1024)
                tasks.add_metric([stage, str(worker.pid)], worker.tasks_done)
            for reason, count in stats.exits_by_reason.items():
                exits.add_metric([stage, reason], count)
            crashes.add_metric([stage], stats.crashes)
            pool_queue.add_metric([stage], stats.queue_depth)
        queue = GaugeMetricFamily("isoscribe_queue_depth", "Admitted work not yet finished", labels=["kind"])
        queue.add_metric(["sync"], self.pipelines.in_flight)
        queue.add_metric(["jobs"], self.job_depth())
        retries = CounterMetricFamily("isoscribe_crash_retries", "Tasks retried after a worker crash")
        retries.add_metric([], self.pipelines.retries)
        yield from (workers, rss, tasks, exits, crashes, pool_queue, queue, retries)


class LatencyMiddleware:
    """Pure ASGI (not BaseHTTPMiddleware) so that request bodies still stream to the endpoint."""

    def __init__(self, app: Any, service: Any) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = {"code": 500}

        async def send_with_status(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            metrics: ServiceMetrics | None = self.service.metrics
            if metrics is not None:
                route = getattr(scope.get("endpoint"), "__name__", "unmatched")
                metrics.latency.labels(route, str(status["code"])).observe(time.perf_counter() - started)
