"""The committed notebooks carry the outputs of the last full run (tools/refresh_notebook_outputs.py),
so that a reader browsing the repository sees the plots, and carry nothing a static page cannot
show or that would make every refresh grow the repository."""

import importlib.util
import json
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
MAX_TOTAL_BYTES = 4 * 2**20  # all notebooks together, outputs included

spec = importlib.util.spec_from_file_location("refresh_notebook_outputs", REPO / "tools" / "refresh_notebook_outputs.py")
refresh_tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(refresh_tool)


def _plots(cell) -> bool:
    return any(word in cell.source for word in ("plt.", "plot_", ".plot(", "show_figure"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_shows_its_outputs_and_plots(path):
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code), f"{path.name}: not every cell ran"
    outputs = [output for cell in code for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"], f"{path.name}: an error output is committed"
    if any(_plots(cell) for cell in code):
        assert any("image/png" in o.get("data", {}) for o in outputs), f"{path.name}: no plot in the outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_has_no_widget_views_or_timing(path):
    notebook = json.loads(path.read_text())
    assert set(notebook["metadata"]) <= set(refresh_tool.KEPT_METADATA)
    for cell in notebook["cells"]:
        assert "execution" not in cell["metadata"]
        for output in cell.get("outputs", []):
            assert refresh_tool.WIDGET_VIEW not in output.get("data", {})


def test_notebooks_stay_small():
    total = sum(path.stat().st_size for path in NOTEBOOKS)
    assert total < MAX_TOTAL_BYTES, f"notebooks hold {total / 2**20:.1f} MiB with outputs"


def test_clean_drops_widget_views_and_timing_and_keeps_text_and_images():
    cell = nbformat.v4.new_code_cell("interact(f)", execution_count=3)
    cell.metadata["execution"] = {"iopub.status.busy": "2026-11-26T20:00:00Z"}
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={refresh_tool.WIDGET_VIEW: {"model_id": "x"},
                                                    "text/plain": "interactive(children=...)"}),
        nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}),
        nbformat.v4.new_output("stream", name="stdout", text="reward 0.5\n"),
        nbformat.v4.new_output("stream", name="stdout", text="kl 1.0\n"),  # merged into the previous one
        nbformat.v4.new_output("stream", name="stderr", text="note\n"),
    ]
    notebook = nbformat.v4.new_notebook(cells=[cell, nbformat.v4.new_markdown_cell("# title")])
    notebook.metadata.update(widgets={"state": {}}, kernelspec={"name": "python3"})
    refresh_tool.clean(notebook)
    (cleaned, _) = notebook.cells
    assert [o.output_type for o in cleaned.outputs] == ["display_data", "stream", "stream"]
    assert [o.text for o in cleaned.outputs[1:]] == ["reward 0.5\nkl 1.0\n", "note\n"]
    assert "image/png" in cleaned.outputs[0].data
    assert "execution" not in cleaned.metadata and cleaned.execution_count == 3
    assert set(notebook.metadata) == {"kernelspec"}


def test_refresh_tool_names_a_missing_notebook_and_exits_2(capsys):
    assert refresh_tool.main(["notebooks/99_nope.ipynb"]) == 2
    assert "99_nope.ipynb" in capsys.readouterr().err


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_and_its_py_percent_pair_hold_the_same_cells(path):
    jupytext = pytest.importorskip("jupytext")
    notebook, script = jupytext.read(path), jupytext.read(path.with_suffix(".py"))
    assert [(c.cell_type, c.source.strip()) for c in notebook.cells] == \
        [(c.cell_type, c.source.strip()) for c in script.cells], f"run: jupytext --sync {path}"


spec = importlib.util.spec_from_file_location("patient_client", REPO / "tools" / "patient_client.py")
patient_client = importlib.util.module_from_spec(spec)
spec.loader.exec_module(patient_client)


class MissesAWakeUp:
    """A channel as zmq.asyncio behaves in nbclient issue 312: the message has arrived, yet the first
    poll sleeps its whole timeout; any later poll sees the message at once."""

    def __init__(self, message=None):
        self.message, self.polls = message, []

    async def get_msg(self, timeout=None):
        import asyncio
        from queue import Empty

        self.polls.append(timeout)
        if len(self.polls) == 1 or self.message is None:
            await asyncio.sleep(timeout)
            raise Empty
        return self.message

    def is_alive(self):
        return True


def test_a_polling_channel_sees_a_message_whose_wake_up_was_missed_and_keeps_the_deadline(monkeypatch):
    import asyncio
    import time
    from queue import Empty

    monkeypatch.setattr(patient_client, "STEP", 0.05)
    missed = MissesAWakeUp({"msg_type": "execute_reply"})
    started = time.monotonic()
    assert asyncio.run(patient_client.PollingChannel(missed).get_msg(timeout=600)) == missed.message
    assert time.monotonic() - started < 5 and missed.polls == [0.05, 0.05]  # not the 600 s a single poll waits
    silent = patient_client.PollingChannel(MissesAWakeUp())
    started = time.monotonic()
    with pytest.raises(Empty):
        asyncio.run(silent.get_msg(timeout=0.2))
    assert 0.2 <= time.monotonic() - started < 2  # no message: Empty at the caller's deadline
    assert silent.is_alive() and len(silent.channel.polls) >= 4
