"""One Airflow home for the session: SQLite, a dags folder the tests write DAG files into, migrated
once. Set before Airflow is imported anywhere in the test process (it reads its config then)."""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="tether-airflow-"))
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
DAGS = _HOME / "dags"
DAGS.mkdir()
os.environ.update({
    "AIRFLOW_HOME": str(_HOME),
    "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME / 'airflow.db'}",
})
HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    proc = subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    shutil.copy(HERE.parent.parent / "integration" / "memory_code.py", DAGS / "tether_test_code.py")
    if str(DAGS) not in sys.path:
        sys.path.insert(0, str(DAGS))
    return _HOME


class DagRun:
    """What a ``dag.test()`` run left: its state, each task's state and tries, the XComs."""

    def __init__(self, dr) -> None:
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        self.state = str(dr.state)
        self.tasks = {ti.task_id: (str(ti.state), ti.try_number) for ti in dr.get_task_instances()}
        with create_session() as session:
            rows = session.query(XComModel).filter(XComModel.dag_id == dr.dag_id,
                                                   XComModel.run_id == dr.run_id).all()
            self.xcom = {row.task_id: row.value for row in rows if row.key == "return_value"}
            self.xcoms = {(row.task_id, row.key): row.value for row in rows}


@pytest.fixture
def run_dag(airflow_home):
    """Write a DAG file into the dags folder (``{tag}`` replaced by a fresh name) and test it."""

    def run(source: str, filename: str | None = None) -> tuple[DagRun, str]:
        tag = uuid.uuid4().hex[:6]
        path = DAGS / (filename or f"dag_{tag}.py")
        path.write_text(source.replace("{tag}", tag))
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        try:
            return DagRun(module.dag.test()), tag
        finally:
            path.unlink()  # the next dag.test() parses the whole folder: keep it small

    return run


@pytest.fixture
def run_dag_files(airflow_home):
    """Copy files (a DAG file and the modules it uses) into the dags folder, load the folder into a
    DagBag as Airflow does, and test the DAG ``dag_id`` of it."""

    def run(dag_id: str, *files: Path) -> DagRun:
        from airflow.dag_processing.dagbag import DagBag

        copied = []
        try:
            for file in files:
                copied.append(Path(shutil.copy(file, DAGS / file.name)))
            bag = DagBag(dag_folder=DAGS)
            assert not bag.import_errors, bag.import_errors
            return DagRun(bag.dags[dag_id].test())
        finally:
            for path in copied:
                path.unlink()

    return run
