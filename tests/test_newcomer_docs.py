"""What a newcomer reads first agrees with the code: the README's and the home page's
quick start, the home page's table, the deploying page, and the emulator command line
the README gives, run exactly as written."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_recordings.get_provider_info import get_provider_info

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs"
CLI = "python -m airflow_provider_recordings.testing"


def section(text: str, title: str) -> str:
    """The markdown section under ``title`` (up to the next heading of its level)."""
    level = title.split(" ", 1)[0]
    start = text.index(title + "\n")
    following = re.search(rf"^{level} ", text[start + len(title) :], flags=re.MULTILINE)
    return text[start : start + len(title) + following.start()] if following else text[start:]


def test_the_readme_quick_start_mentions_the_emulator_command_line() -> None:
    assert CLI in section(README, "## Quick start")


def test_the_home_page_names_the_provider_as_airflow_lists_it() -> None:
    index = (DOCS / "index.md").read_text()
    info = get_provider_info()
    assert f"`airflow providers list` shows it\nby its package name, `{info['package-name']}`" in index
    assert f"display\nname, *{info['name']}*" in index
    assert CLI in section(index, "## Quick start")


@pytest.mark.parametrize("operator", ["PostHogRecordingErasureOperator", "PostHogRecordingArchiveOperator"])
def test_the_home_page_table_has_erasure_and_archiving(operator: str) -> None:
    table = [line for line in (DOCS / "index.md").read_text().splitlines() if line.startswith("| ")]
    assert any(operator in line for line in table)


def example_dag_ids() -> set[str]:
    found = set()
    for path in (ROOT / "example_dags").glob("*.py"):
        found |= set(re.findall(r'dag_id="([a-z_]+)"', path.read_text()))
    return found


def test_the_deploying_page_triggers_every_example_by_its_dag_id() -> None:
    deploying = (DOCS / "deploying.md").read_text()
    triggered = set(re.findall(r"airflow dags trigger ([a-z_]+)", deploying))
    # The public-link watch runs on its asset watcher, never by hand.
    assert triggered == example_dag_ids() - {"posthog_public_link_watch"}


def test_docs_trigger_the_wait_for_ongoing_example_with_its_list_param() -> None:
    source = (ROOT / "example_dags" / "example_posthog_wait_for_ongoing.py").read_text()
    assert '"distinct_ids": Param(\n            type="array"' in source
    for page in [ROOT / "README.md", *DOCS.rglob("*.md")]:
        for conf in re.findall(
            r"dags (?:trigger|test) posthog_wait_for_ongoing -c '([^']*)'", page.read_text()
        ):
            assert isinstance(json.loads(conf)["distinct_ids"], list), page


def test_every_example_dag_the_emulator_docs_name_exists() -> None:
    emulator_docs = (DOCS / "emulator.md").read_text() + README
    named = set(re.findall(r"\((posthog_[a-z_]+)[,)]", emulator_docs))
    named |= set(re.findall(r"airflow dags (?:test|trigger) (posthog_[a-z_]+)", emulator_docs))
    assert named and named <= example_dag_ids()


def readme_cli_lines() -> list[str]:
    return [line.strip() for line in README.splitlines() if line.strip().startswith(CLI)]


@pytest.mark.parametrize("line", readme_cli_lines())
def test_the_readmes_emulator_command_runs_as_written(line: str, tmp_path: Path) -> None:
    """Run with a free port added, read what it seeded, and paste its last line into bash."""
    args = line.split()[3:]
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_recordings.testing", *args, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for out in process.stdout:
            lines.append(out.rstrip("\n"))
            if out.startswith("export "):
                break
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    text = "\n".join(lines)
    shared = int(re.search(r"(\d+) with a public link", text).group(1))  # type: ignore[union-attr]
    ongoing = int(re.search(r"(\d+) user\(s\) with a session still ongoing", text).group(1))  # type: ignore[union-attr]
    persons = int(re.search(r"(\d+) person\(s\) to erase", text).group(1))  # type: ignore[union-attr]
    assert shared > 0 and ongoing > 0 and persons > 0, text
    echoed = subprocess.run(
        ["bash", "-c", f'{lines[-1]}\nprintf %s "$AIRFLOW_CONN_POSTHOG_DEFAULT"'],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    assert json.loads(echoed)["conn_type"] == "posthog"
