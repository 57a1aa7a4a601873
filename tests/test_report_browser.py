"""The report page in a real headless browser (Debian's chromium): it loads, every image renders,
no console errors, and the tables hold the run's numbers."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess

import pytest

from energybench.report import build
from energybench.results import store
from energybench.results.summary import format_value
from tests.report_runs import make_run

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PROBE = """<script>
window.__ebErrors = [];
window.addEventListener("error", e => __ebErrors.push(String(e.message || (e.target && e.target.src) || e)), true);
const __ebConsoleError = console.error;
console.error = (...args) => { __ebErrors.push(args.join(" ")); __ebConsoleError(...args); };
window.addEventListener("load", () => {
  const images = [...document.images];
  const result = {images: images.length, errors: __ebErrors,
                  broken: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt)};
  const out = document.createElement("pre");
  out.id = "eb-check";
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>"""


def browser() -> str:
    found = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    if found is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install -y chromium); the browser test needs one")
    return found


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    import matplotlib.pyplot as plt

    root = tmp_path_factory.mktemp("browser")
    run = make_run(models=("distilbert",))
    baseline = store.save_run(
        make_run("20261124T090000Z-999999", models=("distilbert",), layers=False, slow=1.2), root / "baseline"
    )
    saved = store.save_run(run, root / "reports")
    original = build.PNG_DPI
    build.PNG_DPI = 40  # the page embeds the SVGs; the PNG resolution does not matter here
    try:
        folder = build.build_report(saved, compare=baseline)
    finally:
        build.PNG_DPI = original
    assert plt.get_fignums() == []
    return run, folder


@pytest.mark.slow  # a model build, a browser or a fresh process
def test_the_page_loads_renders_every_image_without_console_errors(report, tmp_path):
    run, folder = report
    page = (folder / "index.html").read_text(encoding="utf-8")
    probed = tmp_path / "index.html"
    probed.write_text(page.replace("</head>", PROBE + "</head>", 1), encoding="utf-8")
    done = subprocess.run(
        [
            browser(),
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=10000",
            "--dump-dom",
            probed.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    dom = done.stdout
    found = re.search(r'<pre id="eb-check">(.*?)</pre>', dom, re.S)
    assert found, f"the page did not finish loading (rc {done.returncode}): {done.stderr[-2000:]}"
    check = json.loads(html.unescape(found.group(1)))
    assert check["images"] == page.count("<img ") and check["images"] >= 15
    assert check["broken"] == [] and check["errors"] == []
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line and "ERROR" in line.upper()]
    assert console == []
    summary = re.search(r'<table id="summary-table">(.*?)</table>', dom, re.S).group(1)
    cells = [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", summary, re.S)]
    for record in run.records:
        assert format_value(record) in cells, (record.model, record.precision, record.metric)
    assert 'id="comparison-table"' in dom and "better" in dom and 'id="budget-table"' in dom
    assert "bf16 not on this CPU" in dom and "abc123def456" in dom  # not-measured reasons, fingerprint
