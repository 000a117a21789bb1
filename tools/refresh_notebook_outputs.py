"""Run every notebook in order and keep its outputs in the committed .ipynb, so that a reader who
browses the repository sees the plots and tables without running anything.

    python tools/refresh_notebook_outputs.py [notebooks/04_warp_training.ipynb ...]

Each notebook runs top to bottom in a fresh kernel (nbclient), from notebooks/ as JupyterLab
would, with this environment's profile and data (the tiny profile by default; set WARP_IMDB_DIR
offline). Kept: text, images and HTML tables. Dropped: widget views (sliders and progress bars
need a live kernel; a static page would show `interactive(children=...)`), the widget state and
per-cell timing metadata; consecutive prints are merged into one output (their chunking depends on
timing), so that a refresh of unchanged results rewrites the same files, up to the few printed
timings, and the repository does not grow by the images again. A cell that raises stops the tool
(exit 1) and leaves that notebook as it was. Sources are never changed: the .py pairs stay the
reviewed source (`jupytext --sync`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
KEPT_METADATA = ("jupytext", "kernelspec", "language_info")


def clean(notebook) -> None:
    """Strip what a static reader cannot use and what changes from run to run (in place)."""
    notebook.metadata = {k: v for k, v in notebook.metadata.items() if k in KEPT_METADATA}
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.outputs:
            data = output.get("data", {})
            if WIDGET_VIEW in data:
                continue  # a slider or a progress bar: nothing to see without a kernel
            if (output.output_type == "stream" and kept and kept[-1].output_type == "stream"
                    and kept[-1].name == output.name):
                kept[-1].text += output.text  # how prints are chunked depends on timing: one output per run
                continue
            kept.append(output)
        cell.outputs = kept


def refresh(path: Path, timeout: int | None = 600) -> float:  # per cell: a cell that never ends fails
    import nbformat
    from patient_client import PatientNotebookClient  # polls, so a kernel reply cannot be missed (nbclient issue 312)

    notebook = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    # store_widget_state stays on: nbclient's Output-widget handling needs it (off, a slider cell
    # fails with a KeyError on the widget's model id); clean() drops that state afterwards.
    client = PatientNotebookClient(notebook, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError on the first failing cell: the file is not written
    clean(notebook)
    nbformat.write(notebook, path)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebooks/*.ipynb, in order")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted(NOTEBOOKS.glob("*.ipynb"))
    for path in paths:
        if not path.is_file():
            print(f"error: notebook not found: {path}", file=sys.stderr)
            return 2
    for path in paths:
        try:
            seconds = refresh(path.resolve())
        except Exception as error:  # noqa: BLE001 - one line per failure; the notebook stays as it was
            print(f"error: {path.name} failed, left unchanged: {str(error).strip().splitlines()[-1]}", file=sys.stderr)
            return 1
        print(f"{path.name}: {seconds:.0f} s, {path.stat().st_size / 1024:.0f} KiB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
