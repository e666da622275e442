"""`pip install .`: pyproject.toml's dependencies are requirements.txt's, and the `cnnvis` command exists.
(Installing into a fresh venv and serving from it was checked by hand; see the README.)"""

from __future__ import annotations

import tomllib

from conftest import ROOT


def test_pyproject_dependencies_are_the_runtime_requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    requirements = [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]
    assert project["dependencies"] == requirements


def test_the_cnnvis_command_and_package_exist():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == {"cnnvis": "cnnvis.cli:main"}
    import cnnvis
    from cnnvis.cli import main

    assert callable(main) and callable(cnnvis.show) and callable(cnnvis.stop) and callable(cnnvis.load_model)
    from cnnvis.server import DASHBOARD

    assert DASHBOARD.is_file() and (DASHBOARD.parent / "pages" / "explore.py").is_file()
