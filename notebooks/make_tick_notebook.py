"""Write ``notebooks/tick.ipynb`` (run from the repository root: ``python
notebooks/make_tick_notebook.py``). The notebook is thin: literal parameters, one library call,
display helpers from ``pairlib.tick_charts``, scrapbook glue. No outputs are written."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

CELLS = [
    new_markdown_cell(
        "# Live tick\n\n"
        "One tick at a candle close: reconcile the store with the venue, compute every pair's "
        "z-score, decide with the strategy rule, size new positions, execute both legs, and "
        "record everything in the store. Any error is shown in red at the top."
    ),
    new_code_cell(
        "# Parameters: literals only (papermill injects overrides below this cell).\n"
        "as_of = None  # ISO-8601 candle close (UTC), or None for the last closed candle\n"
        'params_file = "params/trading.yaml"  # trading params (venue, data, strategy, risk)\n'
        "live = False  # must be True (--live) to trade a live venue\n"
        "notebook_path = None  # path of this report (set by pairlib tick)\n"
        "allow_missed_entries = None  # None follows missed_tick_entries in the params file",
        metadata={"tags": ["parameters"]},
    ),
    new_code_cell(
        "import pandas as pd\n"
        "import scrapbook as sb\n"
        "from IPython.display import HTML, Markdown, display\n"
        "\n"
        "from pairlib import tick, tick_charts\n"
        "\n"
        "log = tick_charts.capture_logs()  # shown at the end: the status banner comes first\n"
        "result = tick.run(params_file, as_of, live=live, notebook_path=notebook_path,\n"
        "                  allow_missed_entries=allow_missed_entries)\n"
        "display(HTML(tick_charts.status_banner(result)))"
    ),
    new_markdown_cell(
        "## Every pair: z, signal, action and reason\n"
        "`signal` is the strategy's target position, `action` what the tick did, `position` "
        "the position after the tick."
    ),
    new_code_cell("display(result.signals)"),
    new_markdown_cell(
        "## z-scores of open and acted-on pairs\n"
        "With the ±entry, ±exit and ±stop bands, the entry marker and this tick's action."
    ),
    new_code_cell(
        "for fig in tick_charts.z_figures(result):\n"
        "    fig.show()"
    ),
    new_markdown_cell("## Orders and fills"),
    new_code_cell("display(result.orders)\ndisplay(result.fills)"),
    new_markdown_cell("## Positions and equity"),
    new_code_cell(
        "display(result.positions)\n"
        "facts = [f\"**{k}** {v:,.2f}\" for k, v in result.account.items()]\n"
        "display(Markdown(\" · \".join(facts) or \"no account data\"))\n"
        "if len(result.equity_history) > 1:\n"
        "    tick_charts.equity_figure(result.equity_history).show()"
    ),
    new_markdown_cell("## Reconciliation and incidents"),
    new_code_cell(
        "display(result.mismatches)\n"
        "display(pd.DataFrame(result.incidents, columns=[\"kind\", \"symbol\", \"detail\"]))"
    ),
    new_code_cell(
        "summary = result.scraps()  # JSON-safe Python values\n"
        "sb.glue(\"summary\", summary)\n"
        "for name, value in summary.items():\n"
        "    if value is not None:  # scrapbook cannot glue None\n"
        "        sb.glue(name, value)\n"
        "sb.glue(\"signals\", result.signals, encoder=\"pandas\")\n"
        "sb.glue(\"orders\", result.orders, encoder=\"pandas\")\n"
        "sb.glue(\"fills\", result.fills, encoder=\"pandas\")\n"
        "sb.glue(\"positions\", result.positions, encoder=\"pandas\")"
    ),
    new_markdown_cell("## Log\nEvery decision with its reason, every order and incident."),
    new_code_cell("print(log.getvalue())"),
    new_markdown_cell("A failed or refused tick fails this notebook (the report above is kept)."),
    new_code_cell("result.raise_for_status()"),
]


def build() -> nbformat.NotebookNode:
    """The tick notebook, without outputs or execution counts."""
    nb = new_notebook(cells=CELLS)
    nb.metadata = {
        "kernelspec": {"display_name": "pairlib", "language": "python", "name": "pairlib"},
        "language_info": {"name": "python"},
    }
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"tick-{i:02d}"  # stable ids: regenerating changes nothing
    return nb


if __name__ == "__main__":
    nbformat.write(build(), HERE / "tick.ipynb")
