"""Write ``notebooks/tick.ipynb`` (run from the repository root: ``python
notebooks/make_tick_notebook.py``). The notebook is thin: literal parameters, one library call,
display helpers from ``pairlib.tick_charts``, scraps and figures shown with ``pairlib.notebook``
(scrapbook's and plotly's formats, without their slow imports). No outputs are written.

Its params-related parameters are the params file's path and ``missed_tick_entries``, named
after the one params key it overrides (passed to ``tick.run`` as ``allow_missed_entries``)."""

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
        "record everything in the store. Any error is shown in red at the top.\n\n"
        "Few cells on purpose: papermill saves the whole report before and after every cell."
    ),
    new_code_cell(
        "# Parameters: literals only (papermill injects overrides below this cell).\n"
        "as_of = None  # ISO-8601 candle close (UTC), or None for the last closed candle\n"
        'params_file = "params/pairlib.yaml"  # the params (venue, data, strategy, risk, ...)\n'
        "live = False  # must be True (--live) to trade a live venue\n"
        "notebook_path = None  # path of this report (set by pairlib tick)\n"
        "missed_tick_entries = None  # overrides missed_tick_entries of params_file; None keeps it",
        metadata={"tags": ["parameters"]},
    ),
    new_code_cell(
        "from IPython.display import HTML, Markdown, display\n"
        "\n"
        "from pairlib import tick, tick_charts\n"
        "from pairlib.notebook import show  # plotly figures without plotly's renderer imports\n"
        "\n"
        "log = tick_charts.capture_logs()  # shown at the end: the status banner comes first\n"
        "result = tick.run(params_file, as_of, live=live, notebook_path=notebook_path,\n"
        "                  allow_missed_entries=missed_tick_entries)\n"
        "display(HTML(tick_charts.status_banner(result)))\n"
        "display(Markdown(\"## Every pair: z, signal, action and reason\\n\"\n"
        "                 \"`signal` is the strategy's target position, `action` what the tick \"\n"
        "                 \"did, `position` the position after the tick.\"))\n"
        "display(result.signals)\n"
        "display(Markdown(\"## z-scores of open and acted-on pairs\\n\"\n"
        "                 \"With the ±entry, ±exit and ±stop bands, the entry marker and this \"\n"
        "                 \"tick's action.\"))\n"
        "for fig in tick_charts.z_figures(result):\n"
        "    show(fig)"
    ),
    new_code_cell(
        "display(Markdown(\"## Orders and fills\"))\n"
        "display(result.orders)\n"
        "display(result.fills)\n"
        "display(Markdown(\"## Positions and equity\"))\n"
        "display(result.positions)\n"
        "display(Markdown(tick_charts.account_line(result)))\n"
        "if len(result.equity_history) > 1:\n"
        "    show(tick_charts.equity_figure(result.equity_history))\n"
        "display(Markdown(\"## Reconciliation and incidents\"))\n"
        "display(result.mismatches)\n"
        "display(tick_charts.incidents_frame(result))"
    ),
    new_code_cell(
        "tick_charts.glue_result(result)  # scrapbook scraps: summary values and the tables\n"
        "display(Markdown(\"## Log\\nEvery decision with its reason, every order and \"\n"
        "                 \"incident.\"))\n"
        "print(log.getvalue())\n"
        "result.raise_for_status()  # a failed or refused tick fails the run; the report stays"
    ),
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
