"""A real browser: JupyterLab serves the architecture-browser notebook, headless Chromium (Playwright) runs it
and clicks; the displayed MAdds must change. A screenshot is kept as a test artifact.

Needs Debian's Chromium at /usr/bin/chromium (``make browser``); never downloads a browser.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from scarlet_lib import reproduce
from scarlet_lib.models import PUBLISHED
from scarlet_lib.costs import paper_millions  # noqa: F401  (package importable before the server starts)

CHROMIUM = "/usr/bin/chromium"
pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]
ARTIFACT_DIR = reproduce.REPO_ROOT / "outputs" / "test_artifacts"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, proc, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"jupyter lab did not answer at {url} within {timeout}s")


@pytest.fixture
def lab(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM}: install Debian's chromium (`make browser`) to run this test")
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    root = tmp_path / "lab"
    root.mkdir()
    nb = load_notebook_node(str(reproduce.NOTEBOOK_DIR / "07_architecture_browser.ipynb"))
    # quick settings: no supernet (the widget and its costs are what is tested), a short table
    nb = parameterize_notebook(nb, {"one_shot": "off", "table_rows": 5, "output_dir": str(tmp_path / "figures"),
                                    "threads": 1})
    nbformat.write(nb, root / "browser.ipynb")
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    port, token = _free_port(), "scarlet-test-token"
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"), JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"))
    jupyter = Path(sys.executable).with_name("jupyter")
    proc = subprocess.Popen([str(jupyter), "lab", "--no-browser", "--ip", "127.0.0.1", "--port", str(port),
                             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--allow-root"],
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "lab.log", "w"), env=env)
    try:
        _wait_for_server(f"http://127.0.0.1:{port}/api/status?token={token}", proc)
        yield f"http://127.0.0.1:{port}/lab/tree/browser.ipynb?token={token}", tmp_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _madds(page) -> float:
    text = page.locator(".scarlet-madds").first.inner_text()
    m = re.search(r"MAdds:\s*([\d.]+)\s*M", text)
    assert m, f"no MAdds in {text!r}"
    return float(m.group(1))


def _run_all(page, tries: int = 3) -> None:
    """Run > Run All Cells once the kernel is idle; retried if no cell starts (a click during start-up is lost)."""
    page.get_by_text(re.compile(r"\| Idle")).first.wait_for(timeout=120_000)  # status bar: kernel connected
    for _ in range(tries):
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        try:  # some prompt shows [*] or an execution count
            page.wait_for_function("() => [...document.querySelectorAll('.jp-InputPrompt')]"
                                   ".some(p => /\\[(\\*|\\d+)\\]/.test(p.innerText))", timeout=20_000)
            return
        except Exception:  # noqa: BLE001 - retry the menu
            page.keyboard.press("Escape")
    raise AssertionError("Run All Cells did not start any cell")


def test_browser_notebook_runs_in_jupyterlab_and_widgets_change_the_madds(lab):
    from playwright.sync_api import sync_playwright

    url, tmp = lab
    costs = None
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-background-networking",
                                          "--disable-component-update"])
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        try:
            page.goto(url)
            page.wait_for_selector(".jp-Notebook", timeout=90_000)
            _run_all(page)
            page.wait_for_selector(".scarlet-madds", timeout=float(os.environ.get("SCARLET_BROWSER_TIMEOUT", 300)) * 1000)
            page.wait_for_function("() => /MAdds:/.test(document.querySelector('.scarlet-madds').innerText)",
                                   timeout=60_000)
            first = _madds(page)
            page.locator(".scarlet-madds").first.scroll_into_view_if_needed()
            page.get_by_role("button", name="SCARLET-C").click()
            page.wait_for_function(f"() => !document.querySelector('.scarlet-madds').innerText.includes('{first:.2f}')",
                                   timeout=60_000)
            after_c = _madds(page)
            # a single layer's dropdown: layer 1 becomes identity
            page.locator(".widget-dropdown select").first.select_option(label="12: identity")
            page.wait_for_function(f"() => !document.querySelector('.scarlet-madds').innerText.includes('{after_c:.2f}')",
                                   timeout=60_000)
            after_layer = _madds(page)
            page.locator(".scarlet-madds").first.scroll_into_view_if_needed()
            shot = tmp / "architecture_browser.png"
            page.screenshot(path=str(shot), full_page=False)
        except Exception:
            ARTIFACT_DIR.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACT_DIR / "architecture_browser_failure.png"))
            raise
        finally:
            browser.close()
    ARTIFACT_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACT_DIR / "architecture_browser.png")
    # the values shown are the suite's counts of the released models (independently: scarlet_lib.costs)
    from scarlet_lib.cache import cost_table
    costs = cost_table()
    assert first == pytest.approx(costs.madds(PUBLISHED["Scarlet_A"]) / 1e6, abs=0.006)
    assert after_c == pytest.approx(costs.madds(PUBLISHED["Scarlet_C"]) / 1e6, abs=0.006)
    c_with_identity = list(PUBLISHED["Scarlet_C"])
    c_with_identity[0] = 12
    assert after_layer == pytest.approx(costs.madds(c_with_identity) / 1e6, abs=0.006)
    assert shot.stat().st_size > 10_000
