"""The HTML report in a real browser: headless Chromium (tests/browser.py, DevTools over a pipe)
opens `alexbench report --out`'s report.html and checks that every plot decoded, every benchmark
cell of the inputs has its row, nothing failed or went to the network, and a full-page screenshot
is a valid, non-blank PNG. The test_driver_* tests check the driver itself on a hand-made page.

Without a Chromium executable these tests skip, unless ALEXBENCH_REQUIRE_BROWSER=1 (CI sets it),
where they fail instead."""

from __future__ import annotations

import base64
import io
import os
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from alexbench.errors import InputError
from alexbench.results import load_results
from tests.browser import Browser, BrowserError, Page, find_chromium

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results" / "xeon-2c"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chromium_or_skip() -> str:
    """The Chromium executable; without one, skip, or fail where ALEXBENCH_REQUIRE_BROWSER=1."""
    exe = find_chromium()
    if exe is None:
        reason = "no Chromium executable ($CHROMIUM, chromium, chromium-browser, google-chrome)"
        if os.environ.get("ALEXBENCH_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason}, and ALEXBENCH_REQUIRE_BROWSER=1")
        pytest.skip(reason)
    return exe


@pytest.fixture(scope="module")
def chromium() -> str:
    return chromium_or_skip()


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    with Browser(chromium) as b:
        yield b


# -- checks shared by the driver tests and the real report ---------------------------------------


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; AssertionError if it is not a PNG."""
    assert data[:8] == PNG_SIGNATURE, f"not a PNG (starts {data[:8]!r})"
    assert data[12:16] == b"IHDR", "PNG without an IHDR chunk first"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 0 and height > 0, f"empty PNG ({width}x{height})"
    return width, height


def png_colours(browser: Browser, data: bytes, limit: int = 64) -> dict[str, int]:
    """Decode a PNG in the browser (a canvas on a blank tab): its size, and the number of
    distinct RGBA colours, counted up to `limit`."""
    page = browser.open("about:blank")
    src = "data:image/png;base64," + base64.b64encode(data).decode()
    try:
        return page.evaluate(
            f"""(async () => {{
            const img = new Image();
            img.src = "{src}";
            await img.decode();
            const canvas = document.createElement("canvas");
            canvas.width = img.naturalWidth;
            canvas.height = img.naturalHeight;
            const ctx = canvas.getContext("2d", {{willReadFrequently: true}});
            ctx.drawImage(img, 0, 0);
            const pixels = new Uint32Array(
                ctx.getImageData(0, 0, canvas.width, canvas.height).data.buffer);
            const seen = new Set();
            for (let i = 0; i < pixels.length && seen.size < {limit}; i++) seen.add(pixels[i]);
            return {{width: canvas.width, height: canvas.height, colours: seen.size}};
        }})()"""
        )
    finally:
        page.close()


PAGE_STATE = """(() => {
    const plots = [...document.querySelectorAll("img.plot")];
    const rows = [...document.querySelectorAll("tr.cell")];
    const external = [...document.querySelectorAll("img[src], script[src], link[href], iframe")]
        .map(e => e.getAttribute("src") || e.getAttribute("href") || "")
        .filter(u => !u.startsWith("data:") && !u.startsWith("#"));
    return {
        plots: plots.map(img => ({
            complete: img.complete,
            naturalWidth: img.naturalWidth,
            naturalHeight: img.naturalHeight,
            shown: img.getBoundingClientRect().width > 0,
            dataPng: (img.getAttribute("src") || "").startsWith("data:image/png;base64,"),
        })),
        cells: rows.map(r => r.dataset.cell),
        external: external,
        scrollHeight: document.documentElement.scrollHeight,
    };
})()"""


def check_report_page(
    browser: Browser, page: Page, expected_cells: list[str], n_png: int, shot: Path
) -> dict[str, object]:
    """Every plot decoded (and as many as `n_png`), one row per expected cell and no other,
    no console errors, no request other than file:/data:, a valid non-blank screenshot."""
    state = page.evaluate(PAGE_STATE)
    plots = state["plots"]
    assert len(plots) == n_png, f"{len(plots)} img.plot on the page, {n_png} PNG files written"
    bad = [i for i, p in enumerate(plots) if not (p["complete"] and p["naturalWidth"] > 0)]
    assert not bad, f"plots not decoded: {bad} of {len(plots)}"
    assert all(p["dataPng"] for p in plots), "a plot is not an embedded data:image/png URI"
    assert all(p["shown"] for p in plots), "a plot has no width on the page"
    assert not state["external"], f"references outside the page: {state['external']}"

    cells = state["cells"]
    missing = sorted(set(expected_cells) - set(cells))
    unexpected = sorted(set(cells) - set(expected_cells))
    doubled = sorted({c for c in cells if cells.count(c) > 1})
    assert not missing, f"{len(missing)} cells without a row, e.g. {missing[:5]}"
    assert not unexpected, f"rows for cells not in the inputs: {unexpected[:5]}"
    assert not doubled, f"cells with more than one row: {doubled[:5]}"

    assert not page.console_errors(), page.console_errors()
    off_page = [u for u in page.requests() if not u.startswith(("file:", "data:"))]
    assert not off_page, f"network requests: {off_page}"
    assert not page.failed_loads(), page.failed_loads()

    data = page.screenshot(shot)
    assert shot.read_bytes() == data
    width, height = png_size(data)
    assert width >= 320 and height >= min(state["scrollHeight"], 16384) - 1, (width, height)
    decoded = png_colours(browser, data)
    assert (decoded["width"], decoded["height"]) == (width, height)
    assert decoded["colours"] > 1, "the screenshot is one colour (a blank page)"
    return {"state": state, "colours": decoded["colours"], "size": (width, height)}


# -- the driver, on a hand-made page --------------------------------------------------------------


def _plot_png(seed: int) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2), dpi=60)
    ax.plot([1, 2, 4, 8], [seed, seed + 3, seed + 1, seed + 5], marker="o")
    ax.set_title(f"plot {seed}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _fake_report(out: Path, cells: list[str], pngs: list[bytes], extra: str = "") -> Path:
    imgs = "".join(
        f'<img class="plot" alt="plot {i}" src="data:image/png;base64,'
        f'{base64.b64encode(p).decode()}">'
        for i, p in enumerate(pngs)
    )
    rows = "".join(f'<tr class="cell" data-cell="{c}"><td>{c}</td><td>1.0</td></tr>' for c in cells)
    html = (
        '<!doctype html><html><head><meta charset="utf-8"><title>fake report</title></head>'
        f"<body><h1>Fake report</h1>{imgs}<table><tr><th>cell</th><th>p50</th></tr>{rows}"
        f"</table>{extra}</body></html>"
    )
    path = out / "report.html"
    path.write_text(html)
    return path


FAKE_CELLS = ["run-a/cpu/eager/fp32/1", "run-a/cpu/eager/fp32/16", "run-b/cpu/onnxruntime/int8/1"]


def test_driver_fake_report_passes_the_checks(browser: Browser, tmp_path: Path) -> None:
    pngs = [_plot_png(1), _plot_png(2)]
    html = _fake_report(tmp_path, FAKE_CELLS, pngs)
    page = browser.open(html.as_uri())
    assert page.evaluate("document.title") == "fake report"
    assert page.evaluate("new Promise(r => setTimeout(() => r(6 * 7), 20))") == 42
    out = check_report_page(browser, page, FAKE_CELLS, len(pngs), tmp_path / "shot.png")
    assert out["colours"] > 8  # text and two coloured plots


def test_driver_checks_catch_a_broken_page(browser: Browser, tmp_path: Path) -> None:
    """A broken image, a missing and a doubled row, a script error and a network request
    are each caught by check_report_page."""
    pngs = [_plot_png(1), b"\x89PNG\r\n\x1a\nnot really"]
    page = browser.open(_fake_report(tmp_path, FAKE_CELLS, pngs).as_uri())
    with pytest.raises(AssertionError, match="plots not decoded: \\[1\\]"):
        check_report_page(browser, page, FAKE_CELLS, 2, tmp_path / "s.png")

    cells = [*FAKE_CELLS[:2], FAKE_CELLS[0]]
    page = browser.open(_fake_report(tmp_path, cells, pngs[:1]).as_uri())
    with pytest.raises(AssertionError, match="1 cells without a row"):
        check_report_page(browser, page, FAKE_CELLS, 1, tmp_path / "s.png")
    with pytest.raises(AssertionError, match="more than one row"):
        check_report_page(browser, page, cells[:2], 1, tmp_path / "s.png")

    page = browser.open(
        _fake_report(tmp_path, FAKE_CELLS, pngs[:1], "<script>null.x</script>").as_uri()
    )
    with pytest.raises(AssertionError, match="exception: TypeError"):
        check_report_page(browser, page, FAKE_CELLS, 1, tmp_path / "s.png")

    # The network is closed here: the request is still made (and fails), which is what counts.
    fetch = "<script>fetch('http://192.0.2.1/x').catch(() => {})</script>"
    page = browser.open(_fake_report(tmp_path, FAKE_CELLS, pngs[:1], fetch).as_uri())
    assert "http://192.0.2.1/x" in page.requests()


def test_driver_blank_screenshot_is_one_colour(browser: Browser, tmp_path: Path) -> None:
    (tmp_path / "blank.html").write_text("<!doctype html><html><body></body></html>")
    page = browser.open((tmp_path / "blank.html").as_uri())
    data = page.screenshot(tmp_path / "blank.png")
    assert png_size(data) == (1280, 900)
    assert png_colours(browser, data)["colours"] == 1


def test_driver_full_page_screenshot(browser: Browser, tmp_path: Path) -> None:
    html = "<body style='margin:0'><div style='height:3000px;background:linear-gradient(red,blue)'>"
    (tmp_path / "tall.html").write_text(html)
    page = browser.open((tmp_path / "tall.html").as_uri())
    width, height = png_size(page.screenshot(tmp_path / "tall.png"))
    assert (width, height) == (1280, 3000)
    assert page.evaluate("window.innerHeight") == 900  # the viewport is left as it was


def test_driver_script_errors_and_timeouts_raise(chromium: str, tmp_path: Path) -> None:
    with Browser(chromium, timeout=10) as b:
        profile = b._profile
        assert profile is not None and profile.is_dir()
        page = b.open("about:blank")
        with pytest.raises(BrowserError, match="script failed: Error: nope"):
            page.evaluate("(async () => { throw new Error('nope') })()")
        start = time.monotonic()
        with pytest.raises(BrowserError, match="timed out"):
            page.evaluate("while (true) {}", timeout=1.0)  # a hung renderer
        assert time.monotonic() - start < 5
        proc = b._proc
    assert proc is not None and proc.poll() is not None, "the browser outlived its `with`"
    assert not profile.exists(), "the temporary profile was left behind"


def test_driver_dead_browser_fails_fast(tmp_path: Path) -> None:
    fake = tmp_path / "fake-chromium"
    fake.write_text("#!/bin/sh\necho 'cannot start' >&2\nexit 3\n")
    fake.chmod(0o755)
    start = time.monotonic()
    with pytest.raises(BrowserError, match="(exited|closed).*\n.*cannot start"):
        Browser(str(fake), timeout=10).start()
    assert time.monotonic() - start < 5


def test_driver_skip_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """$CHROMIUM names the executable; without one the tests skip, or fail under
    ALEXBENCH_REQUIRE_BROWSER=1 (as in CI)."""
    monkeypatch.setenv("CHROMIUM", sys.executable)
    assert chromium_or_skip() == sys.executable
    monkeypatch.setenv("CHROMIUM", "/nonexistent/chromium")
    monkeypatch.delenv("ALEXBENCH_REQUIRE_BROWSER", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no Chromium executable"):
        chromium_or_skip()
    monkeypatch.setenv("ALEXBENCH_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="ALEXBENCH_REQUIRE_BROWSER=1"):
        chromium_or_skip()


# -- the real report ------------------------------------------------------------------------------


def _expected_cells(folder: Path) -> list[str]:
    """RUN/DEVICE/BACKEND/PRECISION/BATCH of every cell of every results file in `folder`."""
    cells = []
    for path in sorted(folder.glob("*.json")):
        try:
            data = load_results(path)
        except InputError:  # not a results file (harness-check_*.json)
            continue
        for c in data["cells"]:
            cells.append(f"{path.stem}/{c['device']}/{c['backend']}/{c['precision']}/{c['batch']}")
    return cells


def test_report_html_in_browser(browser: Browser, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    cmd = [sys.executable, "-m", "alexbench", "report", str(RESULTS), "--out", str(out)]
    env = {**os.environ, "COLUMNS": "120", "NO_COLOR": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=REPO, env=env)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    html = out / "report.html"
    assert html.is_file() and (out / "report.md").is_file()
    pngs = sorted(out.rglob("*.png"))
    assert pngs, "the report wrote no PNG"
    for p in pngs:
        png_size(p.read_bytes())

    expected = _expected_cells(RESULTS)
    assert expected, f"no results files in {RESULTS}"
    page = browser.open(html.as_uri(), timeout=60)
    shot = tmp_path / "report-screenshot.png"
    out_info = check_report_page(browser, page, expected, len(pngs), shot)
    assert out_info["colours"] > 8
