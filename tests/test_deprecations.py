"""No module of the package raises one of Airflow's deprecation warnings when imported.

Airflow checks its own providers the same way (its ``forbidden_warnings``). Each module is
imported in a fresh interpreter, where nothing was imported before it: a warning that a
module raises once per process would otherwise hide behind an earlier test's import.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import airflow_provider_recordings
from tests.conftest import AIRFLOW_3_DEPRECATIONS

pytestmark = pytest.mark.heavy  # a fresh interpreter imports Airflow and every module

ROOT = Path(__file__).resolve().parents[1]

#: Imported by the same interpreter: Airflow first (its own import-time warnings are
#: Airflow's), then every module of the package, each warning recorded with its category.
CHECK = """
import importlib, json, sys, warnings

names = json.loads(sys.argv[1])
classes = []
for dotted in json.loads(sys.argv[2]):
    module, _, name = dotted.rpartition(".")
    try:
        classes.append(getattr(importlib.import_module(module), name))
    except (ImportError, AttributeError):
        pass
import airflow.providers.common.compat.sdk  # noqa: F401

found, skipped = [], []
for name in names:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            importlib.import_module(name)
        except ImportError as exc:  # an optional dependency this environment lacks
            skipped.append([name, str(exc)])
            continue
    for warning in caught:
        if issubclass(warning.category, tuple(classes)):
            found.append([name, warning.category.__name__, str(warning.message), warning.filename])
print(json.dumps({"checked": len(classes), "found": found, "skipped": skipped}))
"""

#: Modules whose import needs what some environments do not install: the OpenLineage
#: provider (Airflow 3.3's environment only).
OPTIONAL = {"airflow_provider_recordings.lineage": "airflow.providers.openlineage"}


def package_modules() -> list[str]:
    prefix = f"{airflow_provider_recordings.__name__}."
    return [
        airflow_provider_recordings.__name__,
        *sorted(info.name for info in pkgutil.walk_packages(airflow_provider_recordings.__path__, prefix)),
    ]


def test_no_module_raises_an_airflow_deprecation_warning_at_import(tmp_path: Path) -> None:
    modules = package_modules()
    assert "airflow_provider_recordings.assets" in modules
    assert "airflow_provider_recordings.metrics" in modules
    classes = ["airflow.exceptions.AirflowProviderDeprecationWarning", *AIRFLOW_3_DEPRECATIONS]
    completed = subprocess.run(
        [sys.executable, "-c", CHECK, json.dumps(modules), json.dumps(classes)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["checked"] >= 1
    assert report["found"] == []
    for name, reason in report["skipped"]:
        assert OPTIONAL.get(name, "?") in reason, (name, reason)
