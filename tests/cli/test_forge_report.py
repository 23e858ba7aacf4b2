"""``forge report``: a static HTML site, opened in headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cli.forge_support import Trained, forge, invoke, listing, trained


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
    rows = re.findall(r'<tr class="experiment">(.*?)</tr>', dom.stdout, flags=re.S)
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
