#!/usr/bin/env bash
# A/B of `isoscribe bench service --quick` between two checkouts, interleaved (A, B, A, B) so the
# machine's drift hits both: bench/ab/service_ab.sh OLD_TREE NEW_TREE OUT_DIR
# Each tree runs its own sources (PYTHONPATH) in this checkout's .venv.
set -euo pipefail
old=$1 new=$2 out=$3
venv=$(cd "$(dirname "$0")/../.." && pwd)/.venv
for round in 1 2; do
  for side in old new; do
    tree=${!side}
    PYTHONPATH=$tree/src "$venv/bin/isoscribe" bench service --quick --results-dir "$out/$side-$round" >"$out/$side-$round.log" 2>&1
  done
done
"$venv/bin/python" - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rps = {side: [json.loads((out / f"{side}-{r}" / "service.json").read_text())["runs"][run]["throughput_rps"]
              for r in (1, 2) for run in ("recycling", "no_recycling")] for side in ("old", "new")}
mean = {side: sum(v) / len(v) for side, v in rps.items()}
print(json.dumps({"throughput_rps": rps, "mean": mean, "new_over_old": round(mean["new"] / mean["old"], 3)}))
PY
