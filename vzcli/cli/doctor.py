"""`vz doctor`: verify the store and repair what can be rebuilt from SQLite (logic in vzcli/doctor.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from vzcli import render
from vzcli.cli import State, app, complete_index, handled, usage

if TYPE_CHECKING:
    from vzcli.doctor import Report


@app.command(rich_help_panel="Store")
@handled
def doctor(
    name: str = typer.Argument(None, help="The index to check; every index and the store itself when omitted.",
                               autocompletion=complete_index, show_default=False),
    repair: bool = typer.Option(False, "--repair", help="Fix what can be fixed (counters, orphan rows and "
                                                        "files, ANN files rebuilt from SQLite, a damaged catalog "
                                                        "recovered into a fresh one), then check again."),
    json_: bool = typer.Option(False, "--json", help="Return the report as JSON."),
) -> None:
    """Verify the catalog, the records and the ANN files; exit 1 when an error remains."""
    from vzcli.doctor import run
    from vzcli.store import Store

    if State.remote:
        raise usage("vz doctor checks a local store; it has no --remote mode.")
    report = run(Store(State.store), name, repair=repair)
    if json_:
        render.json_out(report.to_dict())
    else:
        _show(report, name, repair)
    if not report.healthy:
        raise typer.Exit(1)


def _show(report: Report, name: str | None, repair: bool) -> None:
    what = f"index {name!r} in" if name else f"{len(report.checked)} index(es) and the store"
    render.say(f"🩺 Checked {what} {report.store}")
    for p in report.problems:
        mark = "✔ repaired" if p.repaired else ("▲" if p.severity == "warning" else "✘")
        where = f"{p.index}: " if p.index else ""
        hint = "" if p.repaired or repair or p.fix is None else "  (vz doctor --repair fixes this)"
        render.say(f"{mark} {where}[{p.check}] {p.message}{hint}")
    for r in report.repairs:
        render.say(f"🔧 {r}")
    if report.healthy:
        render.say("✅ The store is healthy." if not report.problems or repair else
                   "✅ No errors (warnings only).")
    elif repair:
        render.error("the store has problems that doctor cannot repair; see above")
    else:
        render.error("the store has problems; see above")
