"""JupyterLab + headless Chromium for tests/test_browser.py: what a learner sees, tested in a browser.

nbval runs the notebooks' code but cannot tell a working slider from the plain-text fallback
`interactive(children=...` that JupyterLab shows when the widgets extension is missing. These
helpers serve a scratch copy of a notebook with JupyterLab on 127.0.0.1 and drive Debian's
Chromium with Playwright (`playwright install` cannot download browsers on the CI machine).

Outside CI a missing browser skips the tests with the reason; under `.ci/run` (WARP_CI=1) it
is a failure. Screenshots and the server log of a failing test go to SCREENSHOTS.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from warp_utils.config import data_root

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
CHROMIUM = os.environ.get("WARP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
SCREENSHOTS = data_root() / "browser-screenshots"

# JupyterLab user settings of the scratch server: no news pop-up over the page (it needs the
# internet anyway), no autosave (the copy is thrown away), every cell attached to the DOM.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}


def in_ci() -> bool:
    return os.environ.get("WARP_CI", "").strip() not in ("", "0")


def require_browser() -> None:
    """Skip (fail under WARP_CI) unless playwright, jupyterlab and Chromium are all present."""
    missing = [f"{name} (pip install -e '.[browser]')" for name in ("playwright", "jupyterlab")
               if importlib.util.find_spec(name) is None]
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        missing.append(f"Chromium at {CHROMIUM} (apt-get install chromium, or set WARP_CHROMIUM)")
    if missing:
        reason = "browser tests need " + ", ".join(missing)
        if in_ci():
            pytest.fail(reason + "; WARP_CI is set, so a missing browser is a failure", pytrace=False)
        pytest.skip(reason)


def after_notebooks(test):
    """Mark a test to run after the nbval items: it reuses the artifacts the notebooks build."""
    test.after_notebooks = True
    return test


def pytest_collection_modifyitems(session, config, items):
    """Move the tests marked with @after_notebooks to the end of the session (imported by conftest)."""
    late = [item for item in items if getattr(getattr(item, "function", None), "after_notebooks", False)]
    if late:
        items[:] = [item for item in items if item not in late] + late


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scratch_copy(notebook: Path, folder: Path) -> Path:
    """The notebook without outputs or execution counts (so "every cell ran" is observable)."""
    content = json.loads(notebook.read_text())
    for cell in content["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    copy = folder / notebook.name
    copy.write_text(json.dumps(content))
    return copy


class LabServer:
    """`jupyter lab` on 127.0.0.1 (free port, token) serving `root`, with scratch settings."""

    def __init__(self, root: Path, scratch: Path):
        self.root, self.scratch = root, scratch
        self.port, self.token = _free_port(), secrets.token_hex(16)
        self.log_path = scratch / "jupyterlab.log"
        settings = scratch / "settings"
        for plugin, values in LAB_SETTINGS.items():
            path = settings / f"{plugin}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        self.command = [
            sys.executable, "-m", "jupyterlab", "--no-browser",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={root}",
            f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={scratch / 'workspaces'}",
            "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: run commands by id
        ] + (["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])
        self.process = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}?token={self.token}"

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self):
        env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(self.scratch / "runtime"))
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(self.command, cwd=self.root, env=env, stdout=self._log,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(self.url("api/status"), timeout=2) as answer:
                if answer.status == 200:
                    return self
            time.sleep(0.5)
        self.__exit__(None, None, None)
        raise RuntimeError(f"jupyter lab did not answer on port {self.port} within 90 s:\n{self.log_tail()}")

    def __exit__(self, *exc):
        if self.process and self.process.poll() is None:
            self.process.terminate()  # jupyter server shuts its kernels down on SIGTERM
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


# JavaScript run in the page. PANEL finds the notebook's panel by path (not "the current widget").
PANEL = """(path) => {
  if (!window.jupyterapp || !window.jupyterapp.shell) return null;  // the page is still loading
  for (const w of window.jupyterapp.shell.widgets('main')) {
    if (w.context && w.context.path === path) return w;
  }
  return null;
}"""
STATE = f"""(path) => {{
  const panel = ({PANEL})(path);
  if (!panel || !panel.content.model) return null;
  const session = panel.sessionContext.session;
  const text = (s) => Array.isArray(s) ? s.join('') : s;
  const cells = panel.content.model.toJSON().cells.filter(
    (c) => c.cell_type === 'code' && text(c.source).trim());
  const errors = [];
  cells.forEach((c, i) => c.outputs.filter((o) => o.output_type === 'error').forEach(
    (o) => errors.push(`code cell ${{i}}: ${{o.ename}}: ${{o.evalue}}`)));
  return {{status: session && session.kernel ? session.kernel.status : 'no kernel',
           cells: cells.length, pending: cells.filter((c) => c.execution_count === null).length,
           errors: errors}};
}}"""
RUN_ALL = f"""async (path) => {{
  const app = window.jupyterapp, panel = ({PANEL})(path);
  app.shell.activateById(panel.id);
  await app.commands.execute('runmenu:run-all');  // not the "Restart Kernel and Run All" entry
}}"""


class Notebook:
    """A notebook opened in JupyterLab in a Playwright page."""

    def __init__(self, page, server: LabServer, name: str):
        self.page, self.server, self.name = page, server, name
        self.focus = None  # a locator the test looks at: scrolled into view for a failure screenshot

    def state(self) -> dict | None:
        return self.page.evaluate(STATE, self.name)

    def open(self, timeout: float = 120):
        self.page.goto(self.server.url(f"lab/tree/{self.name}"))
        self.wait_for(lambda s: s and s["status"] == "idle", timeout, "the kernel to start")

    def run_all(self, timeout: float) -> dict:
        """Run All Cells; return the final state (stops waiting at the first error output)."""
        started = time.monotonic()
        self.page.evaluate(RUN_ALL, self.name)
        state = self.wait_for(
            lambda s: s and s["status"] == "idle" and (s["errors"] or s["pending"] == 0),
            timeout, "every code cell to run")
        print(f"{self.name}: Run All took {time.monotonic() - started:.0f} s")
        return state

    def wait_for(self, done, timeout: float, what: str, poll: float = 0.25):
        deadline = time.monotonic() + timeout
        while True:
            state = self.state()
            if done(state):
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: waited {timeout:.0f} s for {what}; last state {state}")
            self.page.wait_for_timeout(poll * 1000)


def _launch():
    from playwright.sync_api import sync_playwright

    return sync_playwright()


def _scroll_to_trouble(nb: Notebook) -> None:
    """Bring the likeliest culprit into view: what the test was looking at (nb.focus), else a
    widget shown as text, an error (or warning) output, the slider panels."""
    candidates = [nb.focus] if nb.focus is not None else []
    candidates += [nb.page.locator(selector) for selector in (
        "text=interactive(children=", '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]',
        ".widget-interact")]
    for found in candidates:
        if found.count():
            found.first.scroll_into_view_if_needed(timeout=5000)
            return


@contextlib.contextmanager
def notebook_in_browser(notebook: str | Path, test_name: str):
    """Serve a scratch copy of notebooks/`notebook`, open it in headless Chromium, yield a Notebook.

    On any failure a full-page screenshot and the server log are written to SCREENSHOTS.
    """
    require_browser()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="warp-browser-") as scratch:
        scratch = Path(scratch)
        (scratch / "root").mkdir()
        copy = scratch_copy(NOTEBOOKS / notebook, scratch / "root")
        with LabServer(scratch / "root", scratch) as server, _launch() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            nb = Notebook(page, server, copy.name)
            try:
                nb.open()
                print(f"{notebook}: JupyterLab up and kernel idle after {time.monotonic() - started:.0f} s")
                yield nb
                print(f"{notebook}: browser test done in {time.monotonic() - started:.0f} s")
            except BaseException:
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                stem = SCREENSHOTS / f"{test_name}-{time.strftime('%Y%m%d-%H%M%S')}"
                with contextlib.suppress(Exception):
                    _scroll_to_trouble(nb)
                    page.screenshot(path=f"{stem}.png", full_page=True)
                server.__exit__(None, None, None)  # flush the log before copying it
                shutil.copy(server.log_path, f"{stem}-jupyterlab.log")
                print(f"browser test failed: screenshot and server log in {stem}.*", file=sys.stderr)
                raise
            finally:
                browser.close()


class Slider:
    """An ipywidgets slider of an `interactive` panel, found by its description label."""

    def __init__(self, panel, label: str):
        page = panel.page
        self.label = label
        self.box = panel.locator(".widget-slider").filter(
            has=page.locator(".widget-label", has_text=re.compile(rf"^\s*{re.escape(label)}\s*$")))

    def readout(self) -> str:
        """The value as displayed (aria-valuenow is rounded; the readout is what the learner reads)."""
        return self.box.locator(".widget-readout").inner_text().strip()

    def press(self, key: str) -> None:
        """One keyboard step on the handle: fires noUiSlider's `change`, as a mouse release does."""
        self.box.locator(".noUi-handle").press(key)


def interact_panel(page, slider_label: str):
    """The `widgets.interactive` panel holding a slider labelled `slider_label` (found by its
    widget class, not by cell index: cells move when the notebook is edited)."""
    return page.locator(".widget-interact").filter(
        has=page.locator(".widget-slider .widget-label", has_text=re.compile(rf"^\s*{re.escape(slider_label)}\s*$")))


def figure_bytes(panel) -> bytes | None:
    """The PNG bytes of the panel's single figure, None while it is being redrawn."""
    from playwright.sync_api import Error as PlaywrightError

    images = panel.locator(".widget-output img")
    try:
        if images.count() != 1:
            return None
        src = images.first.get_attribute("src", timeout=1000) or ""
    except PlaywrightError:  # the <img> was replaced between count() and get_attribute()
        return None
    prefix = "data:image/png;base64,"
    return base64.b64decode(src[len(prefix):]) if src.startswith(prefix) else None


def wait_for_redraw(nb: Notebook, panel, previous: bytes, timeout: float = 120) -> bytes:
    """The panel's figure once it differs from `previous` and the kernel is idle again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = figure_bytes(panel)
        if current is not None and current != previous and nb.state()["status"] == "idle":
            return current
        nb.page.wait_for_timeout(250)
    raise TimeoutError(f"{nb.name}: the figure did not change within {timeout:.0f} s")
