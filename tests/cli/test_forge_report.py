"""``forge report``: a static HTML site, opened in headless Chromium."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cli.forge_support import Trained, copy_results, forge, invoke, listing, trained


@pytest.fixture(scope="module")
def exps(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return trained(tmp_path_factory)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed; CI must install Debian's chromium package")
    pytest.skip("chromium is not installed (apt-get install chromium)")


def _headless(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


def test_report_pages_and_images(exps: Trained, tmp_path: Path) -> None:
    out = tmp_path / "report"
    code, output = invoke("report", exps.root, "-o", out)
    assert code == 0, output
    index = (out / "index.html").read_text()
    records = listing(exps.root)
    for record in records:
        page = out / "experiments" / f"{record['id']}.html"
        assert f'href="experiments/{record["id"]}.html"' in index
        html = page.read_text()
        assert "epochs: 2" in html and "Provenance" in html
        for image in re.findall(r'src="([^"]+\.png)"', html):
            data = (page.parent / image).read_bytes()
            assert data[:4] == b"\x89PNG" and len(data) > 5_000
        assert "curves.png" in html and "confusion-" in html


def test_report_in_headless_chromium(exps: Trained, tmp_path: Path) -> None:
    chromium = _chromium()
    out = tmp_path / "report"
    proc = forge("report", exps.root, "-o", out)
    assert proc.returncode == 0, proc.stderr
    index = (out / "index.html").resolve()
    dom = _headless(chromium, tmp_path / "profile", "--dump-dom", index.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    rows = re.findall(r'<tr class="experiment"[^>]*>(.*?)</tr>', dom.stdout, flags=re.S)
    records = listing(exps.root)
    assert len(rows) == len(records)
    text = re.sub(r"<[^>]+>", " ", dom.stdout)
    for record in records:
        assert record["id"][:8] in text
        assert f"{record['metrics']['test.accuracy']:.4g}" in text
    assert "Forge experiments" in text and f"{len(records)} experiments" in text

    shot = tmp_path / "index.png"
    proc = _headless(
        chromium,
        tmp_path / "profile",
        f"--screenshot={shot}",
        "--window-size=1200,800",
        index.as_uri(),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000

    page = out / "experiments" / f"{records[0]['id']}.html"
    dom = _headless(chromium, tmp_path / "profile", "--dump-dom", page.resolve().as_uri())
    assert "Learning curves" in dom.stdout and "test" in dom.stdout


# Loads the index in a frame, clicks a header twice and types into the filter box (real
# DOM events, so the page's own listeners run), then writes what it saw into #out.
_HARNESS = """<!DOCTYPE html><html><body><pre id="out">pending</pre>
<iframe id="frame" src="index.html"></iframe>
<script>
document.getElementById("frame").addEventListener("load", function () {
  var out = document.getElementById("out"), win = this.contentWindow;
  try {
    var doc = this.contentDocument;
    function ids() {
      return Array.prototype.filter.call(doc.querySelectorAll("tr.experiment"),
        function (r) { return !r.hidden; }).map(function (r) { return r.dataset.id; });
    }
    var th = doc.querySelector('th[data-key="best"]'), result = {start: ids()};
    th.click(); result.asc = ids();
    th.click(); result.desc = ids();
    var input = doc.getElementById("filter");
    input.value = "FILTER"; input.dispatchEvent(new Event("input", {bubbles: true}));
    result.filtered = ids(); result.shown = doc.getElementById("shown").textContent;
    result.hash = decodeURIComponent(win.location.hash);
    out.textContent = JSON.stringify(result);
  } catch (e) { out.textContent = "error: " + e; }
});
</script></body></html>
"""


def _visible_ids(dom: str) -> list[str]:
    rows = re.findall(r'<tr class="experiment" data-id="([0-9a-f]+)"( hidden="")?>', dom)
    return [rid for rid, hidden in rows if not hidden]


def test_report_compares_experiments_and_shows_annotations(exps: Trained, tmp_path: Path) -> None:
    results = copy_results(exps.root, tmp_path / "results")
    records = listing(results)
    first = records[0]["id"]
    assert forge("tag", first[:8], "baseline", "-r", results).returncode == 0
    assert forge("note", first[:8], "<b>not bold</b> & kept", "-r", results).returncode == 0
    out = tmp_path / "report"
    proc = forge("report", results, "-o", out)
    assert proc.returncode == 0, proc.stderr
    index = (out / "index.html").read_text()
    images = re.findall(r'src="(compare/[^"]+\.png)"', index)
    assert "compare/curves-val_loss.png" in images and "compare/curves-loss.png" in images
    # The torch experiments differ in model.params.hidden: one scatter against it.
    assert "compare/against-model_params_hidden.png" in images
    for image in images:
        data = (out / image).read_bytes()
        assert data[:4] == b"\x89PNG" and len(data) > 5_000
    assert '<span class="tag">baseline</span>' in index
    assert "<script src" not in index and "http://" not in index and "https://" not in index
    page = (out / "experiments" / f"{first}.html").read_text()
    assert '<span class="tag">baseline</span>' in page
    assert "&lt;b&gt;not bold&lt;/b&gt; &amp; kept" in page and "<b>not bold" not in page
    assert "environment" in page and "accelerators" in page


def test_index_sorts_on_click_and_filters_as_one_types(exps: Trained, tmp_path: Path) -> None:
    chromium = _chromium()
    out = tmp_path / "report"
    assert forge("report", exps.root, "-o", out).returncode == 0
    records = listing(exps.root)
    by_best = [r["id"] for r in sorted(records, key=lambda r: r["best"]["value"])]
    torch_ids = {r["id"] for r in records if r["framework"] == "torch"}
    assert 0 < len(torch_ids) <= len(records)

    # Clicks and typing (the page's own event listeners), in a frame of a harness page.
    (out / "harness.html").write_text(_HARNESS.replace("FILTER", "torch"), encoding="utf-8")
    proc = _headless(
        chromium,
        tmp_path / "profile",
        "--allow-file-access-from-files",
        "--virtual-time-budget=5000",
        "--dump-dom",
        (out / "harness.html").resolve().as_uri(),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    match = re.search(r'<pre id="out">([^<]*)</pre>', proc.stdout)
    assert match, proc.stdout[-2000:]
    seen = json.loads(html.unescape(match.group(1)))
    assert sorted(seen["start"]) == sorted(by_best)
    assert seen["asc"] == by_best and seen["desc"] == by_best[::-1]
    assert set(seen["filtered"]) == torch_ids and seen["shown"] == str(len(torch_ids))
    assert seen["filtered"] == [i for i in by_best[::-1] if i in torch_ids]  # still sorted
    assert seen["hash"] == "#sort=-best&filter=torch"

    # The same state from the URL hash on load (a shared link), without a harness.
    url = (out / "index.html").resolve().as_uri() + "#sort=-best&filter=torch"
    proc = _headless(
        chromium, tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom", url
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _visible_ids(proc.stdout) == seen["filtered"]
    assert 'data-key="best" data-type="num" title="sort by best" aria-sort="descending"' in (
        proc.stdout
    )
    url = (out / "index.html").resolve().as_uri() + "#sort=best"
    proc = _headless(
        chromium, tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom", url
    )
    assert _visible_ids(proc.stdout) == by_best
