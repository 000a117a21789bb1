"""The notebooks as a learner meets them: JupyterLab in headless Chromium, sliders moved by hand.

nbval (the notebooks' own tests) passes even when JupyterLab shows `interactive(children=...`
instead of sliders; these tests look at the rendered page. See tests/browser_support.py for the
server and browser set-up; they skip without Chromium/playwright, except under WARP_CI=1.
"""

import re

from browser_support import (
    Slider,
    after_notebooks,
    figure_bytes,
    interact_panel,
    notebook_in_browser,
    wait_for_redraw,
)

FALLBACK = "interactive(children="  # what JupyterLab prints when the widgets extension is missing


def run_all_cleanly(nb, timeout):
    state = nb.run_all(timeout=timeout)
    assert not state["errors"], f"{nb.name}: error outputs after Run All: {state['errors']}"
    assert state["pending"] == 0, f"{nb.name}: {state['pending']} of {state['cells']} code cells did not run"
    assert nb.page.get_by_text(FALLBACK).count() == 0, "a widget rendered as plain text: is jupyterlab_widgets installed?"


def rendered_panel(nb, slider_label):
    panel = nb.focus = interact_panel(nb.page, slider_label)
    assert panel.count() == 1, f"{nb.name}: expected one slider panel with a {slider_label!r} slider, found {panel.count()}"
    panel.scroll_into_view_if_needed()
    assert panel.locator(".noUi-handle").count() >= 1 and panel.locator(".noUi-handle").first.is_visible()
    figure = figure_bytes(panel)
    assert figure is not None and figure.startswith(b"\x89PNG"), f"{nb.name}: the slider panel shows no figure"
    return panel, figure


def step_and_back(nb, panel, slider, figure, moved_readout):
    """Move `slider` one step right (figure must change), then back (figure must be restored)."""
    start = slider.readout()
    slider.press("ArrowRight")
    moved = wait_for_redraw(nb, panel, figure)
    assert slider.readout() == moved_readout, f"{slider.label}: readout {slider.readout()!r} after one step from {start!r}"
    slider.press("ArrowLeft")
    restored = wait_for_redraw(nb, panel, moved)
    assert slider.readout() == start
    assert restored == figure, f"{slider.label} back to {start}: the figure differs from the one first drawn"
    return moved


def test_notebook_03a_runs_and_its_sliders_redraw():
    with notebook_in_browser("03a_weight_space.ipynb", "test_notebook_03a") as nb:
        run_all_cleanly(nb, timeout=600)
        panel, figure = rendered_panel(nb, "eta")
        eta = Slider(panel, "eta")
        assert eta.readout() == "0.50"
        step_and_back(nb, panel, eta, figure, moved_readout="0.55")


@after_notebooks  # reuses the runs notebooks 04-06 trained under nbval; alone, it trains them itself
def test_notebook_06_mu_and_eta_sliders_redraw():
    with notebook_in_browser("06_hyperparameters.ipynb", "test_notebook_06") as nb:
        run_all_cleanly(nb, timeout=1800)
        panel, figure = rendered_panel(nb, "mu")
        mu, eta = Slider(panel, "mu"), Slider(panel, "eta")
        assert (mu.readout(), eta.readout()) == ("0.01", "0.50")
        moved = step_and_back(nb, panel, mu, figure, moved_readout="0.05")
        step_and_back(nb, panel, eta, figure, moved_readout="0.55")
        # the redraw is of the selected run: the panel's printed line names it
        mu.press("ArrowRight")
        assert wait_for_redraw(nb, panel, figure) == moved
        printed = panel.locator(".widget-output").inner_text()
        assert re.search(r"mu=0\.05 at eta = 0\.50", printed), printed
