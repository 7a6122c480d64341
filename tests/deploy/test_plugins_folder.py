"""`plugins/` used as Airflow's plugins folder (MWAA's plugins.zip, the Helm chart's image): nothing runs.

Airflow's plugin loader imports each .py file of the folder as a module named after the file; our CLI's
`__main__.py` once ran there and made `airflow scheduler` exit 2 (`invalid choice: 'scheduler'`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def _airflow(args: list[str], plugins: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins),
           "AIRFLOW__CORE__LAZY_LOAD_PLUGINS": "False"}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_airflow_loads_the_plugins_folder_without_running_our_cli(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    shutil.copytree(REPO / "plugins", plugins, ignore=shutil.ignore_patterns("__pycache__"))
    result = _airflow(["plugins", "--output", "json"], plugins, tmp_path / "home")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "invalid choice" not in result.stderr


def test_without_the_ignore_file_the_cli_module_still_runs_nothing(tmp_path: Path) -> None:
    # a zip or image that drops .airflowignore: the loader imports __main__.py itself, which must do nothing
    plugins = tmp_path / "plugins"
    shutil.copytree(REPO / "plugins", plugins, ignore=shutil.ignore_patterns("__pycache__", ".airflowignore"))
    result = _airflow(["plugins", "--output", "json"], plugins, tmp_path / "home")
    assert "invalid choice" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == 0, result.stderr[-3000:]
