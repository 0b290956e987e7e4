"""`alexbench report --out`, plots and terminal tables that fit: on the committed results files
(real runs of this project) and on short real runs of the small model."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alexbench.bench.stats import compute_stats
from alexbench.cli import app
from alexbench.devices import Device
from alexbench.evaluate import evaluate_model
from alexbench.precision import Precision
from alexbench.results import collect_runs, load_results
from alexbench.runtimes import Backend
from alexbench.tables import Column, TableData
from alexbench.training.data import DatasetKind, DataSpec, Split, load_data

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "results"
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk; fails on anything that is not a PNG."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


class _Rows(HTMLParser):
    """Collects data-cell ids of table rows by class, image sources and link targets."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, list[str]] = {}
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and a.get("data-cell"):
            self.rows.setdefault(a.get("class") or "", []).append(a["data-cell"] or "")
        for key in ("src", "href"):
            if a.get(key):
                self.sources.append(a[key] or "")


@pytest.fixture(scope="module")
def evaluation(small_bundle, tmp_path_factory) -> Path:
    """A real `evaluate` report of the small model (eager fp32 and bf16 on synthetic images),
    saved as `alexbench evaluate --out` saves it."""
    data = load_data(DataSpec(kind=DatasetKind.SYNTHETIC, image_size=64, synthetic_size=200),
                     (Split.VAL,))  # fmt: skip
    rep = evaluate_model(
        small_bundle, data, [Backend.EAGER], [Precision.FP32, Precision.BF16], Device.CPU
    )
    path = tmp_path_factory.mktemp("eval") / "eval-small.json"
    loaded = small_bundle.loaded
    model = {"source": loaded.source.to_dict(), "meta": vars(loaded.meta)}
    doc = rep.to_dict() | {"schema": "alexbench-evaluate/1", "model": model}
    doc["data"] = data.description
    path.write_text(json.dumps(doc))
    return path


def test_report_out_writes_html_markdown_and_pngs_holding_every_cell(tmp_path, evaluation):
    out = tmp_path / "rep"
    r = invoke("report", COMMITTED, evaluation, "--out", out)
    assert r.exit_code == 0, r.output
    runs, _ = collect_runs([COMMITTED])
    assert len(runs) >= 2  # the compare section needs several runs
    html_text = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 1 + 2 * len(runs)  # throughput, then latency and roofline per run
    for png in pngs:
        w, h = png_size(png)
        assert w > 300 and h > 200 and png.stat().st_size > 10_000
        assert f"]({png.name})" in md
    parser = _Rows()
    parser.feed(html_text)
    # Every cell of every input has one row in the cells table and one in the parity table.
    expected = sorted(
        f"{r.name}/{c['device']}/{c['backend']}/{c['precision']}/{c['batch']}"
        for r in runs
        for c in r.data["cells"]
    )
    assert sorted(parser.rows["cell"]) == expected
    assert sorted(parser.rows["parity"]) == expected
    assert len(parser.rows["compare"]) > 0
    # The fixture's evaluation (eager fp32 and bf16) has its rows beside the committed ones.
    ours = [row for row in parser.rows["accuracy"] if row.startswith(f"{evaluation.stem}/")]
    assert {row.split("/")[-1] for row in ours} == {"fp32", "bf16"}
    # ... under the model it scored (not necessarily the benchmarked runs' model).
    assert f"{evaluation.stem}: AlexNet, seeded (seed 0), 10 classes, 64 px; data: synthetic" in md
    # Self-contained: images are data: URIs, nothing is fetched from anywhere.
    assert parser.sources and all(s.startswith("data:image/png;base64,") for s in parser.sources)
    assert html_text.count("<img class='plot'") == len(pngs)
    # The figures in the tables are those of the files.
    first = runs[0].data["cells"][0]
    assert f"{first['stats']['throughput']:,.1f}" in html_text
    assert "alexbench bench --backend" in md and "## Definitions" in md


def test_report_of_one_run_and_its_failures(tmp_path):
    run = sorted(COMMITTED.glob("xeon-2c/2026*.json"))[0]
    data = load_results(run)
    data["cells"][0]["status"] = "parity_failed"  # a failed cell's speed must not be quoted
    data["cells"][0]["parity"]["passed"] = False
    broken = tmp_path / "failed.json"
    broken.write_text(json.dumps(data))
    r = invoke("report", broken, "--out", tmp_path / "rep")
    assert r.exit_code == 0, r.output
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "~~" in md and "**FAIL**" in md
    assert "Compare" not in md  # one run: nothing to compare


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "{tmp}/file.txt"], "is a file"),
        (["--plot", "{tmp}/p.txt"], "must end in"),
        (["--threshold", "2"], "--threshold"),
    ],
)
def test_report_bad_inputs_are_one_line_errors(tmp_path, args, message):
    (tmp_path / "file.txt").write_text("x")
    r = invoke("report", COMMITTED, *[a.format(tmp=tmp_path) for a in args])
    assert r.exit_code == 2, r.output
    err = r.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err
    assert not (tmp_path / "p.txt").exists()


def test_report_of_missing_or_empty_inputs(tmp_path):
    r = invoke("report", tmp_path / "nope.json")
    assert r.exit_code == 2 and "no such file" in r.stderr
    (tmp_path / "other.json").write_text("{}")
    r = invoke("report", tmp_path, "--out", tmp_path / "rep")
    assert r.exit_code == 2 and "no alexbench results" in r.stderr
    assert not (tmp_path / "rep").exists()


def test_plot_format_follows_the_suffix(tmp_path):
    run = sorted(COMMITTED.glob("xeon-2c/2026*.json"))[0]
    r = invoke("report", run, "--plot", tmp_path / "t.pdf")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "t.pdf").read_bytes()[:4] == b"%PDF"


def test_columns_are_chosen_by_priority_and_essentials_always_stay():
    t = TableData("t", [Column("a"), Column("wide", priority=2), Column("b", priority=1),
                        Column("z")])  # fmt: skip
    t.add(["1", "x" * 30, "22", "3"])
    assert t.fitting_columns(None) == [0, 1, 2, 3]
    assert t.fitting_columns(20) == [0, 2, 3]  # "wide" does not fit; "b" does
    assert t.fitting_columns(5) == [0, 3]  # too narrow even for essentials: they stay


def _at_80_columns(*args: str, codes: tuple[int, ...] = (0, 1)) -> str:
    env = os.environ | {"COLUMNS": "80", "NO_COLOR": "1"}
    r = subprocess.run([sys.executable, "-m", "alexbench", *args], capture_output=True,
                       text=True, env=env, timeout=600)  # fmt: skip
    assert r.returncode in codes, r.stderr
    return r.stdout


def _assert_fits(out: str, essentials: list[str], rows: int) -> None:
    assert "…" not in out, out
    assert all(len(line) <= 80 for line in out.splitlines()), out
    header = next(line for line in out.splitlines() if all(e in line for e in essentials))
    assert header, out
    body = [line for line in out.splitlines() if line.startswith("│")]
    assert len(body) >= rows, out


def test_tables_fit_80_columns(small_artifacts, tmp_path):
    runs = sorted(COMMITTED.glob("xeon-2c/2026*.json"))
    out = _at_80_columns("report", str(runs[0]))
    _assert_fits(out, ["backend", "prec", "batch", "p50 ms", "images/s", "status"], 12)
    assert "--wide shows every column" in out and out.count("PASS") == 12
    out = _at_80_columns("compare", str(runs[0]), str(runs[1]))
    _assert_fits(out, ["backend", "prec", "batch", "B/A images/s", "verdict"], 12)
    assert "within noise" in out
    args = ["--artifacts", str(small_artifacts), "--device", "cpu"]
    # Every runtime but compile (its rows are as wide as the others', and it compiles twice).
    backends = "eager,torchscript,pt2,onnxruntime,openvino"
    out = _at_80_columns(
        "verify",
        *args,
        "--batch",
        "2",
        "--precision",
        "fp32,bf16,int8",
        "--backend",
        backends,
        codes=(4,),  # no int8 file here: its rows are unsupported (asked, so exit 4)
    )
    _assert_fits(out, ["runtime", "prec", "abs err", "cosine", "result"], 6)
    out = _at_80_columns(
        "bench", *args, "--results-dir", str(tmp_path), "--batch", "1", "--min-time", "0.05",
        "--min-iters", "3", "--warmup", "1", "--backend", "eager,onnxruntime",
    )  # fmt: skip
    _assert_fits(out, ["backend", "prec", "batch", "p50 ms", "images/s", "status"], 3)


def test_wide_shows_every_column(tmp_path):
    run = sorted(COMMITTED.glob("xeon-2c/2026*.json"))[0]
    r = invoke("report", run, "--wide")
    assert r.exit_code == 0
    for col in ("95% CI ms", "p90 ms", "% ceiling", "mem res/peak", "cold start"):
        assert col in r.stdout
    assert "--wide shows" not in r.stdout


def test_report_default_is_the_newest_run(tmp_path, monkeypatch):
    shutil.copytree(COMMITTED / "xeon-2c", tmp_path / "results")
    monkeypatch.chdir(tmp_path)
    r = invoke("report")
    assert r.exit_code == 0, r.output
    *older, newest = sorted((tmp_path / "results").glob("2026*.json"))
    assert newest.name in r.stdout
    assert not any(o.name in r.stdout for o in older)


def test_report_reads_old_schema_empty_and_undated_runs(tmp_path):
    """A schema /1 file (this project's own, from its history), a run interrupted before its
    first cell and files without a date (absent or null) are still reported, not crashed on."""
    old = ROOT / "tests" / "fixtures" / "results-schema1.json"  # not data/: .gitignore
    data = load_results(sorted(COMMITTED.glob("xeon-2c/2026*.json"))[0])
    empty = data | {"cells": [], "complete": False, "interrupted": "SIGINT"}
    (tmp_path / "empty.json").write_text(json.dumps(empty))
    undated = {k: v for k, v in data.items() if k != "created"}
    (tmp_path / "undated.json").write_text(json.dumps(undated))
    (tmp_path / "nulldate.json").write_text(json.dumps(data | {"created": None}))
    r = invoke("report", old, tmp_path / "empty.json", tmp_path / "undated.json",
               tmp_path / "nulldate.json", "--out", tmp_path / "rep")  # fmt: skip
    assert r.exit_code == 0, r.output
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "results-schema1" in md and "Incomplete run (interrupted: SIGINT): 0 of 48" in md
    for png in (tmp_path / "rep").glob("*.png"):
        png_size(png)


def test_a_bad_input_beside_an_evaluation_is_still_an_error(tmp_path, evaluation):
    r = invoke("report", evaluation, tmp_path / "typo.json", "--out", tmp_path / "rep")
    assert r.exit_code == 2 and "typo.json" in r.stderr
    assert not (tmp_path / "rep").exists()
    r = invoke("report", evaluation, "--out", tmp_path / "rep", "--plot", tmp_path / "p.png")
    assert r.exit_code == 2 and "--plot" in r.stderr and not (tmp_path / "rep").exists()


def _earlier_report(out: Path) -> dict[str, bytes]:
    """A folder holding an earlier report of three runs (stand-in bytes): what it holds."""
    out.mkdir()
    for name in ("report.html", "report.md", "throughput.png", "latency-3.png", "roofline-3.png"):
        (out / name).write_bytes(f"old {name}".encode())
    return {p.name: p.read_bytes() for p in out.iterdir()}


def _contents(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir()}


def test_a_failed_report_leaves_the_folder_as_it_was(tmp_path, monkeypatch):
    from alexbench import pages

    out = tmp_path / "rep"
    before = _earlier_report(out)

    def broken(*_args, **_kw):
        raise RuntimeError("disk gone")

    monkeypatch.setattr(pages, "to_markdown", broken)
    r = invoke("report", RUN, "--out", out)
    assert r.exit_code == 3
    assert _contents(out) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".rep.")]  # no staging left


RUN = sorted(COMMITTED.glob("xeon-2c/2026*.json"))[0]


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_report_out_replaces_an_earlier_report_whole(tmp_path, monkeypatch, exchange):
    # Files were replaced one by one: latency-3.png of an earlier three-run report stayed.
    from alexbench import pages

    if not exchange:  # a kernel or filesystem without RENAME_EXCHANGE
        monkeypatch.setattr(pages, "_exchange", lambda _a, _b: False)
    out = tmp_path / "rep"
    _earlier_report(out)
    out.chmod(0o750)
    r = invoke("report", RUN, "--out", out)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == [
        "latency-1.png", "report.html", "report.md", "roofline-1.png", "throughput.png"
    ]  # fmt: skip
    assert png_size(out / "latency-1.png")[0] > 0
    assert (out / "report.md").read_text().startswith("# alexbench report")
    assert (out.stat().st_mode & 0o777) == 0o750  # the folder keeps its permissions
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]  # no staging folder left


def test_report_out_refuses_the_current_folder_and_a_link_loop(tmp_path, monkeypatch):
    # Swapped out, the current folder would leave the shell in a deleted folder; a link loop
    # raised RuntimeError from Path.resolve (exit 3).
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    r = invoke("report", RUN, "--out", ".")
    assert r.exit_code == 2 and "is the current folder" in r.stderr, r.output
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    r = invoke("report", RUN, "--out", tmp_path / "loop")
    assert r.exit_code == 2 and "cannot resolve the path" in r.stderr, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["here", "loop"]


def test_a_plot_inside_the_report_folder_is_refused(tmp_path):
    # It made the folder hold a file that is not the report's: the next --out refused it.
    for plot in ("rep/p.png", "rep/sub/p.png"):
        r = invoke("report", RUN, "--out", tmp_path / "rep", "--plot", tmp_path / plot)
        assert r.exit_code == 2, r.output
        assert r.stderr.strip() == (
            f"error: --plot {tmp_path / plot} is inside --out {tmp_path / 'rep'}, which is "
            "replaced whole: write the plot elsewhere (the report's folder holds its own "
            "throughput plot)"
        )
    assert list(tmp_path.iterdir()) == []
    # A link loop on either side is one line, not a RuntimeError (exit 3).
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    for out, plot in (("loop", "p.png"), ("rep", "loop.png")):
        r = invoke("report", RUN, "--out", tmp_path / out, "--plot", tmp_path / plot)
        assert r.exit_code == 2 and "cannot resolve the path" in r.stderr, r.output
        assert len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "loop").unlink()
    (tmp_path / "loop.png").unlink()
    r = invoke("report", RUN, "--out", tmp_path / "rep", "--plot", tmp_path / "p.png")
    assert r.exit_code == 0 and (tmp_path / "p.png").is_file(), r.output
    assert invoke("report", RUN, "--out", tmp_path / "rep").exit_code == 0


def test_report_out_refuses_a_folder_with_other_files(tmp_path):
    """The report replaces its folder whole, so a folder holding anything a report does not is
    refused, never emptied: the user's files are not the report's to remove."""
    out = tmp_path / "mine"
    before = _earlier_report(out)
    (out / "notes.txt").write_text("mine")
    before["notes.txt"] = b"mine"
    r = invoke("report", RUN, "--out", out)
    assert r.exit_code == 2, r.output
    assert r.stderr.strip().splitlines() == [
        f"error: --out {out}: holds notes.txt, not part of an alexbench report: the report "
        "replaces the whole folder, so give a new or empty folder, or an earlier report's"
    ]
    assert _contents(out) == before
    r = invoke("report", RUN, "--out", tmp_path / "empty")  # new: made; empty: used
    assert r.exit_code == 0, r.output
    (tmp_path / "void").mkdir()
    assert invoke("report", RUN, "--out", tmp_path / "void").exit_code == 0


def test_an_os_error_while_swapping_is_one_line_and_keeps_the_old_report(tmp_path, monkeypatch):
    import errno

    from alexbench import pages

    out = tmp_path / "rep"
    before = _earlier_report(out)

    def denied(*_args):
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(pages, "_swap_in", denied)
    r = invoke("report", RUN, "--out", out)
    assert r.exit_code == 2, r.output
    assert r.stderr.strip() == (f"error: --out {out}: cannot write the report (Permission denied)")
    assert _contents(out) == before and [p.name for p in tmp_path.iterdir()] == ["rep"]


def test_staging_folders_of_killed_reports_are_removed_and_live_ones_kept(tmp_path):
    import fcntl

    out = tmp_path / "rep"
    dead, live, young, other = (tmp_path / f".rep.{n}" for n in (
        "alexbench-report-dead0001", "alexbench-report-live0002", "alexbench-report-new00003",
        "mine"))  # fmt: skip
    for folder in (dead, live, young, other):
        folder.mkdir()
        (folder / "report.md").write_text("left by a SIGKILL")
    for folder in (dead, live, other):
        os.utime(folder, (1e9, 1e9))  # untouched for long: the writer is gone
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a report being written there now
    try:
        r = invoke("report", RUN, "--out", out)
    finally:
        os.close(fd)
    assert r.exit_code == 0, r.output
    # Only the unlocked, old one alexbench named is removed: a fresh one may be a writer's
    # between creating and locking it, and `.rep.mine` is not alexbench's.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["rep", live.name, young.name, other.name]
    )


def test_the_latency_box_median_is_the_cells_p50(tmp_path, monkeypatch):
    """The box's line was the median of the pooled samples, while the tables (and compare)
    give each cell one p50: the geometric mean of its repeats' medians."""
    from matplotlib.axes import Axes

    from alexbench import plots
    from alexbench.results import Run

    data = load_results(RUN)
    cells = [c for c in data["cells"] if c["status"] == "ok"]
    cells[0]["stats"]["p50_ms"] *= 1.2  # well away from the pooled median
    drawn = []
    boxplot = Axes.boxplot
    monkeypatch.setattr(
        Axes, "boxplot", lambda *a, **k: drawn.append(boxplot(*a, **k)) or drawn[-1]
    )
    plots.plot_latency(Run(RUN.stem, RUN, data), tmp_path / "l.png")
    (boxes,) = drawn
    # horizontal boxes: each median line runs from (p50, y0) to (p50, y1)
    medians = sorted(line.get_xdata()[0] for line in boxes["medians"])
    assert all(line.get_xdata()[0] == line.get_xdata()[1] for line in boxes["medians"])
    assert medians == pytest.approx(sorted(c["stats"]["p50_ms"] for c in cells))


def test_python_warnings_are_one_line_each(tmp_path):
    """matplotlib's "Glyph ... missing" (a CPU name with an emoji) and numpy's RuntimeWarning
    came out as file name, line number and source line, once per glyph."""
    import io
    import warnings

    from rich.console import Console

    from alexbench.report import warnings_as_lines

    buf = io.StringIO()
    with warnings_as_lines(Console(file=buf, width=200)):
        for _ in range(3):
            warnings.warn("invalid value\n   encountered in subtract", RuntimeWarning, stacklevel=1)
    assert buf.getvalue() == "warning: invalid value encountered in subtract\n"
    data = json.loads(RUN.read_text())
    data["environment"]["cpu"]["model"] = "Ünïcødé CPU™ 💻🖥"
    (tmp_path / "emoji.json").write_text(json.dumps(data))
    r = invoke("report", tmp_path / "emoji.json", "--out", tmp_path / "rep")
    assert r.exit_code == 0, r.output
    assert r.stderr.splitlines() == [
        "warning: a character of a plot's labels is not in the font: drawn as a box"
    ]


def test_a_cell_too_short_for_a_ci_renders_and_plots_without_one(tmp_path):
    # `bench --min-iters 3` on a slow cell: 3 samples, no 95% CI of the median (stored null)
    data = load_results(sorted(COMMITTED.glob("xeon-2c/2026*.json"))[0])
    cell = next(c for c in data["cells"] if c["status"] == "ok")
    cell["latencies_ns"] = cell["latencies_ns"][:3]
    wall_ns = sum(cell["latencies_ns"])
    cell["stats"] = compute_stats(cell["latencies_ns"], cell["batch"], wall_ns).to_dict()
    cell["repeats"], cell["runs"], cell["roofline"] = [], 1, None
    assert cell["stats"]["p50_ci_low_ms"] is None and cell["stats"]["unstable"]
    short = tmp_path / "short.json"
    short.write_text(json.dumps(data))
    r = invoke("report", short, "--wide")
    assert r.exit_code == 0, r.output
    row = next(line for line in r.stdout.splitlines() if f"~{cell['stats']['p50_ms']:.2f}" in line)
    assert row.split("│")[5].strip() == "-"  # the CI column
    r = invoke("report", short, "--out", tmp_path / "rep")
    assert r.exit_code == 0, r.output
    assert png_size(tmp_path / "rep" / "throughput.png")[0] > 0


def test_several_runs_get_a_panel_each_on_one_scale(tmp_path):
    """One plot holding every run's lines could not be read (9 runs: 60 legend entries): each
    run gets its own panel, three to a row, one colour per backend x precision throughout."""
    from alexbench.plots import plot_throughput

    runs, _ = collect_runs(sorted(COMMITTED.glob("xeon-2c/2026*.json"))[:4])
    one = png_size(plot_throughput(runs[:1], tmp_path / "one.png"))
    three = png_size(plot_throughput(runs[:3], tmp_path / "three.png"))
    four = png_size(plot_throughput(runs, tmp_path / "four.png"))
    assert three[0] > 2 * one[0] and three[1] < 1.3 * one[1]  # a row of three panels
    assert four[1] > 1.6 * three[1]  # the fourth starts a second row
    # A run on another device gets a panel there only: one row, not a row per device.
    cuda = load_results(runs[1].path)
    for c in cuda["cells"]:
        c["device"] = "cuda"
    mixed = [runs[0], type(runs[1])(runs[1].name, runs[1].path, cuda)]
    two = png_size(plot_throughput(mixed, tmp_path / "mixed.png"))
    assert two[1] < 1.3 * one[1]


def _rescale(cell: dict, p50_ms: float) -> None:
    """Every time of `cell` scaled so that its p50 is `p50_ms` (a file load_results accepts:
    p50, throughput, extremes and repeats agree)."""
    f = p50_ms / cell["stats"]["p50_ms"]
    stats = cell["stats"]
    for k in [k for k in stats if k.endswith("_ms") and stats[k] is not None]:
        stats[k] *= f
    stats["throughput"] = cell["batch"] / (stats["p50_ms"] / 1e3)
    stats["wall_throughput"] /= f
    for rep in cell.get("repeats") or []:
        rep["p50_ms"] *= f
        rep["wall_s"] *= f  # wall_throughput is the repeats' images over their wall time
    cell["latencies_ns"] = [max(1, round(v * f)) for v in cell["latencies_ns"]]
    if cell.get("roofline"):  # the share of the bound follows the p50
        roof = cell["roofline"]
        roof["pct_of_ceiling"] = round(100 * roof["roofline_ms"] / stats["p50_ms"], 1)
        roof["exceeds_ceiling"] = roof["pct_of_ceiling"] > 100


def test_pages_mark_unstable_and_failed_figures_and_compare_only_like_models(tmp_path):
    """The headline table keeps the ~ and sub-ms precision of the cells table (escaped in
    Markdown, where ~~ is strikethrough); a FAIL row's wall img/s is struck through like its
    images/s; runs of different models or machines are not given verdicts against each other."""
    first, other_model = sorted(COMMITTED.glob("xeon-2c/2026*.json"))[:2], None
    data = load_results(first[0])
    ok = [c for c in data["cells"] if c["status"] == "ok"]
    _rescale(ok[0], 0.2963)  # its repeats disagree by more than 5%: unstable (~) once read
    ok[1]["status"] = "parity_failed"
    ok[1]["parity"]["passed"] = False
    (tmp_path / "a.json").write_text(json.dumps(data))
    other_model = load_results(first[1])
    other_model["model"]["meta"]["num_classes"] = 10
    (tmp_path / "b.json").write_text(json.dumps(other_model))
    other_cpu = json.loads(json.dumps(data))  # a's model, measured on another CPU
    other_cpu["environment"]["cpu"] |= {"model": "AMD EPYC", "flags": ["avx2", "avx512_bf16"]}
    (tmp_path / "c.json").write_text(json.dumps(other_cpu))
    same_name = json.loads(json.dumps(data))  # a's model, on a CPU of a's name but other flags
    same_name["environment"]["cpu"]["flags"] = ["avx2"]
    (tmp_path / "d.json").write_text(json.dumps(same_name))
    files = [tmp_path / f"{n}.json" for n in "abcd"]
    r = invoke("report", *files, "--out", tmp_path / "rep")
    assert r.exit_code == 0, r.output
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| \\~0.296 |" in md  # the fastest-cell table (it is the fastest at its batch)
    wall = f"{ok[1]['stats']['wall_throughput']:,.1f}"
    assert f"~~{wall}~~" in md
    assert "the first run of its model" in md and "compare: B=" not in md
    # c is not judged against a's CPU: its label names another CPU, so no note of what differs
    assert "on its machine (AMD EPYC, 2 cores): not compared" in md
    # d's CPU has a's name: the note says what tells them apart
    assert "on its machine (Intel(R) Xeon(R) Processor, 2 cores; against a: cpu flags: only A" in md
    assert "CI: over the repeats' medians (geometric mean, t interval)" in md  # the legend


def test_a_very_wide_interval_does_not_set_the_throughput_scale():
    # A two-repeat t interval 40,000 images/s wide on a 75 images/s cell flattened every panel.
    from alexbench.plots import scale_top

    assert scale_top([75.0, 800.0], [41_000.0, 40.0]) == 840.0
    assert scale_top([100.0], [30.0]) == 130.0  # an ordinary bar is shown whole
    assert scale_top([], []) == 0.0


def test_markdown_report_shows_names_as_text_not_markup(tmp_path):
    # A run file named `a_b*c[x](y)<i>&amp;|~#` and a host holding a line break: report.md
    # escaped only | and ~ in table cells, so a CommonMark reader drew italics, a link, raw
    # HTML and an extra heading, and the line break split a table row in two.
    from markdown_it import MarkdownIt

    data = load_results(sorted(COMMITTED.glob("xeon-2c/2026*.json"))[0])
    data["environment"]["host"] = "vm\n# not a heading"
    name = "a_b*c[x](y)<i>&amp;|~#"
    (tmp_path / f"{name}.json").write_text(json.dumps(data))
    r = invoke("report", tmp_path / f"{name}.json", "--out", tmp_path / "rep")
    assert r.exit_code == 0, r.output
    md = (tmp_path / "rep" / "report.md").read_text()
    html = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(md)
    for markup in ("<em>", "<a ", "<i>", "<h1>not a heading"):
        assert markup not in html, markup
    assert html.count("<h1>") == 1
    assert f"Run {name}".replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in html
    assert ">vm # not a heading (Linux" in html  # the host's row stays one table row


def test_wide_characters_are_measured_in_terminal_cells(tmp_path):
    # A run named in CJK took half the width it draws: the columns chosen to fit 80 cells
    # then overflowed the line (or rich cut the essentials short).
    from rich.cells import cell_len

    t = TableData("t", [Column("运行"), Column("n", priority=1)])
    t.add(["基准测试", "12"])
    assert t.column_widths() == [8, 2]
    assert t.fitting_columns(16) == [0]  # 1 + (8 + 3) + (2 + 3) = 17 cells
    run = sorted(COMMITTED.glob("xeon-2c/2026*.json"))[0]
    shutil.copy(run, tmp_path / "基准测试运行_中文名称_一个相当长的结果文件名字.json")
    for args in (["results", str(tmp_path)], ["report", str(next(tmp_path.glob("*.json")))]):
        out = _at_80_columns(*args)
        assert all(cell_len(line) <= 80 for line in out.splitlines()), out


def test_markdown_emphasis_survives_edge_spaces():
    # "**x **" and "~~x ~~" are literal asterisks and tildes to a CommonMark reader.
    from markdown_it import MarkdownIt

    from alexbench.pages import _md_table
    from alexbench.tables import Entry, Tone

    t = TableData("Cells of run ", [Column("a"), Column("b")])
    t.add([Entry(" 12.5 ", Tone.BEST), Entry("\t7\n", Tone.VOID)])
    html = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(_md_table(t))
    assert "<strong>Cells of run</strong>" in html
    assert "<strong>12.5</strong>" in html and "<s>7</s>" in html


def test_a_run_without_a_cpu_model_is_said_to_be_why_it_is_not_compared(tmp_path):
    # It was "the first run of its model on its machine", with no word of the missing CPU model.
    data = load_results(sorted(COMMITTED.glob("xeon-2c/2026*.json"))[0])
    (tmp_path / "a.json").write_text(json.dumps(data))
    data["created"] = "2026-11-28T10:00:00+00:00"
    data["environment"]["cpu"]["model"] = None
    (tmp_path / "b.json").write_text(json.dumps(data))
    r = invoke("report", tmp_path / "a.json", tmp_path / "b.json", "--out", tmp_path / "rep")
    assert r.exit_code == 0, r.output
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "it records no CPU model, so no machine can be matched to it" in md


def test_the_legend_names_the_cells_of_an_interrupted_repeat_that_ran_once():
    """`--repeat 2` stopped during the second repeat: some cells hold two repeats, others one,
    and the legend said every CI was over the repeats' medians."""
    from alexbench.report import bench_legend

    def cell(backend: str, batch: int, repeats: int) -> dict:
        return {"backend": backend, "device": "cpu", "precision": "fp32", "batch": batch,
                "stats": {"repeats": repeats}}  # fmt: skip

    mixed = bench_legend([cell("eager", 1, 2), cell("onnxruntime", 1, 1), cell("eager", 2, 2)])
    assert "over the repeats' medians (geometric mean, t interval); over the samples" in mixed
    assert "for the cells timed in one repeat only (onnxruntime/cpu/fp32/b1)" in mixed
    repeated = bench_legend([cell("eager", 1, 2), {"backend": "pt2", "stats": None}])
    assert "order statistics" not in repeated and "repeats' medians" in repeated
    once = bench_legend([cell("eager", 1, 1)])
    assert "order statistics" in once and "repeats' medians" not in once


def test_the_latency_legend_covers_no_box(tmp_path, monkeypatch):
    """The p90/p99 legend sat in the lower right, on the slowest cell's box (the audit)."""
    from alexbench import plots
    from alexbench.results import Run

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    plots.plot_latency(Run(RUN.stem, RUN, load_results(RUN)), tmp_path / "l.png")
    (fig,) = figures
    fig.canvas.draw()
    for ax in fig.axes:
        legend = ax.get_legend()
        assert legend is not None
        inside = legend.get_window_extent().overlaps(ax.get_window_extent())
        assert not inside, "the legend is drawn over the plotting area"
