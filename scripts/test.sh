#!/usr/bin/env bash
# Install everything the tests need (runtime + peer libraries + Playwright + Debian's Chromium) and run
# every test, browser and long ones included. Extra arguments go to pytest.
source "$(dirname "$0")/env.sh"
install_requirements requirements-dev.txt
install_requirements requirements-ray.txt  # the audit's Ray engine (an optional extra at run time; tested here)
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
exec "$VENV_PY" -m pytest "$@"
