#!/usr/bin/env bash
# Creates .venv and installs isoscribe with everything its demo and tests need.
# System packages (espeak-ng for the demo dialogue, redis-server for the Celery tests, ffmpeg
# for format conversion in tests, chromium and its driver for the web page's browser test) are
# installed with apt when missing and we are root.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in espeak-ng:espeak-ng redis-server:redis-server ffmpeg:ffmpeg chromium:chromium chromedriver:chromium-driver; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool##*:}")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${missing[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: please install ${missing[*]} (sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

stamp=.venv/.installed
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt constraints.txt ]; then
  exit 0
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
# torch is pinned to the CPU wheel: an unpinned torch would pull several GB of CUDA packages.
# llama-cpp-python compiles once; pip's wheel cache (~/.cache/pip) keeps the build for later runs.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}"
pip_install() {
  # This machine's pip config names an extra index folder that may be absent; drop that warning only.
  .venv/bin/pip install -q "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
pip_install --upgrade pip
pip_install -c constraints.txt torch==2.13.0
pip_install -c constraints.txt -e ".[dev]"
touch "$stamp"
