"""The fault suite's report: every scenario's row, printed after the run as a table and written to
test-output/fault-scenarios.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.faults.audit import Result, table

RESULTS: list[Result] = []
REPORT = Path(__file__).resolve().parents[2] / "test-output" / "fault-scenarios.md"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    text = table(RESULTS)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(text + "\n")
    terminalreporter.section("fault scenarios")
    terminalreporter.write_line(text)
    terminalreporter.write_line(f"(also in {REPORT})")
