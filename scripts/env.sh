# Shared by start.sh and test.sh: make (or reuse) the project's virtual environment in .venv and
# install one requirements file into it. Sourced, not run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "cnnvis needs Python 3.11 or newer." >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
VENV_PY="$ROOT/.venv/bin/python"
install_requirements() {
  "$VENV_PY" -m pip install --quiet --disable-pip-version-check -r "$1"
}
