"""The report in a real headless browser (Debian's chromium, the `chromium` asset that scripts/setup.sh
fetches): every <img> loads and nothing overflows the window's width; a screenshot is taken.

Skips with one line where no chromium is available (no cached asset, none on PATH, and apt cannot fetch it).
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
from _report_fixtures import make_records

from aft.assets.chromium import Chromium, find_chromium
from aft.report import build_report

WIDTH = 1000  # a laptop window: the 13-column headline table overflowed at 1400 px before the scroll box
PROBE = """<script>
window.addEventListener('load', () => {
  const out = {scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
               imgs: [...document.images].map(i => ({src: i.getAttribute('src'), w: i.naturalWidth}))};
  const pre = document.createElement('pre'); pre.id = 'aft-probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


pytestmark = pytest.mark.assets


@pytest.fixture(scope="module")
def chromium(real_asset) -> Chromium:
    """The cached `chromium` asset, else a chromium on PATH, else the asset fetched now (once, ~10 s with
    apt); where none can be had the tests skip with one line saying why."""
    found = find_chromium()
    if found is None:
        real_asset("chromium")  # skips with the fetch's one-line reason when apt cannot provide it
        found = find_chromium()
    if found is None:
        pytest.skip("chromium absent: run scripts/setup.sh or `aft assets fetch chromium` for the browser test")
    return found


def probe(browser: Chromium, page: Path, width: int = WIDTH) -> dict:
    """Load a copy of `page` with the probe script; its measurements after load."""
    probed = page.with_name(f"_probe_{page.name}")
    probed.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    try:
        dom = browser.dump_dom(probed.as_uri(), width=width)
    finally:
        probed.unlink()
    m = re.search(r'<pre id="aft-probe">(.*?)</pre>', dom, flags=re.S)
    assert m, "the probe script did not run (no #aft-probe in the DOM)"
    return json.loads(html.unescape(m.group(1)))


def problems(result: dict) -> list[str]:
    """What is wrong with a page: images that did not load, a page wider than the window."""
    out = [f"image {i['src']} did not load" for i in result["imgs"] if not i["w"]]
    if result["scrollWidth"] > result["innerWidth"]:
        out.append(f"page is {result['scrollWidth']} px wide in a {result['innerWidth']} px window")
    return out


def test_probe_catches_a_broken_image_and_an_overflow(chromium: Chromium, tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    page.write_text('<html><body><img src="missing.png"><div style="width:3000px">x</div></body></html>')
    found = problems(probe(chromium, page))
    assert any("missing.png did not load" in p for p in found) and any("px wide" in p for p in found)


def test_report_renders_in_chromium(chromium: Chromium, tmp_path: Path) -> None:
    records = [r for r in make_records() if r.suite == "vis" and r.train_size == 100]  # small: every figure kind
    paths = build_report(records, tmp_path / "report", command="aft compare --suite vis")
    result = probe(chromium, paths.index_html)
    assert len(result["imgs"]) == len(paths.plots) > 0
    assert problems(result) == []
    shot = chromium.screenshot(paths.index_html.as_uri(), tmp_path / "report.png", width=WIDTH, height=1600)
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (WIDTH, 1600)
        colors = im.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colors is None or len(colors) > 20  # something was drawn, not a blank page
