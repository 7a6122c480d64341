"""DAG files parse, wire the expected tasks, import fast and import no heavy library at top level."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

DAG_FILES = sorted((REPO / "dags").glob("*.py"))
HEAVY = [
    "torch",
    "transformers",
    "trl",
    "ray",
    "pyarrow",
    "numpy",
    "pandas",
    "datasets",
    "boto3",
    "kubernetes",
]

PROBE = """
import json, runpy, sys, time
import airflow.sdk  # Airflow itself is loaded by the DAG processor before any DAG file
before = set(sys.modules)
start = time.perf_counter()
runpy.run_path(sys.argv[1])
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "new": sorted(set(sys.modules) - before)}))
"""


def test_dagbag_has_no_import_errors(airflow_db: str) -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    assert {"interaction_ingest", "continuous_training"} <= set(bag.dag_ids)
    training = bag.get_dag("continuous_training")
    assert training is not None
    assert training.get_task("delete_ray_cluster").is_teardown
    assert training.get_task("create_ray_cluster").is_setup
    ingest = bag.get_dag("interaction_ingest")
    assert ingest is not None and ingest.catchup


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_without_heavy_libraries(dag_file: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(dag_file)], capture_output=True, text=True, check=True
    )
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    # how fast: benchmarks/dag_parse (a timed assertion here fails on a loaded machine, not on a regression)
    loaded = {m.split(".")[0] for m in probe["new"]}
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
