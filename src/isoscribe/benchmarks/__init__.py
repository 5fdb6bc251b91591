"""Benchmarks run by ``isoscribe bench NAME``; each module has ``main(quick, results_dir) -> dict``."""

from __future__ import annotations

import argparse
import importlib
import json

from isoscribe.config import Settings


def bench_command(settings: Settings, args: argparse.Namespace) -> int:
    module = importlib.import_module(f"isoscribe.benchmarks.{args.name}")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    results = module.main(quick=args.quick, results_dir=args.results_dir, settings=settings)
    print(json.dumps(results, sort_keys=True))
    return 0
