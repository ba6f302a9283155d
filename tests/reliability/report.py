"""The table in docs/reliability.md, written by the suite itself.

Each scenario that passes records one row; at the end of the run the rows are merged into
docs/reliability-results.json (by scenario, so a run of the fast scenarios keeps the slow
ones' last rows) and the table between the markers in docs/reliability.md is written anew
from it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.harness import commit
from tests.reliability.ledger import LedgerReport, Outcomes

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "reliability-results.json"
DOCUMENT = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- results: written by tests/reliability -->", "<!-- end of results -->"
COLUMNS = (
    ("scenario", "scenario"),
    ("injected", "what was injected"),
    ("sent", "requests sent"),
    ("accepted", "accepted"),
    ("rejected", "rejected"),
    ("lost", "lost"),
    ("converged_seconds", "time to converge (s)"),
    ("run", "run"),
)


@dataclass(frozen=True)
class Row:
    scenario: str
    injected: str
    sent: int
    accepted: int
    rejected: int
    lost: int
    converged_seconds: float | None
    run: str = ""

    @classmethod
    def of(
        cls,
        scenario: str,
        injected: str,
        outcomes: Outcomes,
        checked: LedgerReport,
        *,
        refused: int = 0,
        converged_seconds: float | None = None,
    ) -> Row:
        """The row of a scenario whose score updates `outcomes` recorded; `refused` counts the
        attempts refused before an update could be sent (completions during an outage)."""
        return cls(
            scenario=scenario,
            injected=injected,
            sent=outcomes.sent + refused,
            accepted=len(outcomes.accepted),
            rejected=outcomes.rejected + refused,
            lost=len(checked.lost),
            converged_seconds=converged_seconds,
        )


class Report:
    def __init__(self) -> None:
        self.rows: list[Row] = []

    def add(self, row: Row) -> None:
        self.rows.append(row)

    def write(self) -> None:
        if not self.rows:
            return
        # The suite's own output does not count as a change to the commit it ran.
        written = [str(path.relative_to(ROOT)) for path in (RESULTS, DOCUMENT)]
        stamp = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `{commit(results=written)}`"
        stored = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        for row in self.rows:
            stored[row.scenario] = asdict(row) | {"run": stamp}
        RESULTS.write_text(json.dumps(stored, indent=2, ensure_ascii=False) + "\n")
        document = DOCUMENT.read_text()
        before, _, rest = document.partition(BEGIN)
        _, _, after = rest.partition(END)
        table = "\n".join(
            [
                "| " + " | ".join(title for _, title in COLUMNS) + " |",
                "|" + "---|" * len(COLUMNS),
                *(
                    "| " + " | ".join(_cell(row.get(key)) for key, _ in COLUMNS) + " |"
                    for row in stored.values()
                ),
            ]
        )
        DOCUMENT.write_text(f"{before}{BEGIN}\n{table}\n{END}{after}")


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|")
