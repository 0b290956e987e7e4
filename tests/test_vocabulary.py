"""One vocabulary: README's "Options: one vocabulary" table against the real commands.

Every option of every command is in the table, under the name, short form, second names and
form (list, single, switch, path) the table gives it; every option has help text; switches show
no `<bool>` in --help; and a concept has one primary name on every command (the old spellings,
such as --results-dir, are only ever second names)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.core import TyperArgument, TyperOption
from typer.testing import CliRunner

from alexbench.cli import app
from alexbench.cli.common import click  # typer's vendored Click, or Click under an older typer

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Options: one vocabulary"
ROOT = "alexbench"  # the table's name for the options given before the command
FORMS = {"list", "single", "switch", "path"}
# Spellings the vocabulary replaced: still accepted, never the name a command shows first.
OLD_NAMES = {"--results-dir", "--report", "--batch-size", "--overwrite", "--data"}


@dataclass
class Row:
    name: str  # the primary long name
    negative: str | None  # the --no-x of a --x/--no-x switch
    short: str | None
    also: dict[str, set[str] | None] = field(default_factory=dict)  # name -> commands (None: all)
    forms: dict[str, str] = field(default_factory=dict)  # command -> form
    commands: set[str] = field(default_factory=set)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _names(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def parse_table(text: str, all_commands: set[str]) -> dict[str, Row]:
    """The table of README's vocabulary section, one Row per option, keyed by primary name."""
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    lines = [ln for ln in text[start:end].splitlines() if ln.startswith("|")]
    header = [h.lower() for h in _cells(lines[0])]
    assert header[:5] == ["option", "short", "also", "form", "commands"], header
    rows: dict[str, Row] = {}
    for line in lines[2:]:
        option, short, also, form, commands = _cells(line)[:5]
        (name,) = _names(option)
        primary, _, negative = name.partition("/")
        row = Row(primary, negative or None, (_names(short) or [None])[0])
        words = {w.strip() for w in commands.split(",")}
        row.commands = set(all_commands) | {ROOT} if words == {"every"} else words
        for part in re.finditer(r"`([^`]+)`(?:\s*\(([^)]*)\))?", also):
            only = part.group(2)
            row.also[part.group(1)] = {w.strip() for w in only.split(",")} if only else None
        if form in FORMS:
            row.forms = dict.fromkeys(row.commands, form)
        else:  # "list: bench; single: verify, train"
            for piece in form.split(";"):
                kind, _, names = piece.partition(":")
                assert kind.strip() in FORMS, f"{primary}: unknown form {kind!r}"
                row.forms |= dict.fromkeys((w.strip() for w in names.split(",")), kind.strip())
        assert set(row.forms) == row.commands, f"{primary}: form not given for every command"
        assert primary not in rows, f"{primary}: two rows"
        rows[primary] = row
    return rows


GROUP = typer.main.get_command(app)
ROOT_CTX = click.Context(GROUP, info_name=ROOT, **GROUP.context_settings)
# Every command, each loaded as it is to run (the group imports a command's module on demand).
SUBCOMMANDS: dict[str, Any] = {
    n: GROUP.get_command(ROOT_CTX, n)  # type: ignore[attr-defined]
    for n in GROUP.list_commands(ROOT_CTX)  # type: ignore[attr-defined]
}
COMMANDS: dict[str, Any] = {ROOT: GROUP, **SUBCOMMANDS}
ROWS = parse_table(README.read_text(encoding="utf-8"), set(SUBCOMMANDS))


def options_of(name: str) -> list[TyperOption]:
    """Every option `alexbench NAME --help` lists, --help itself included."""
    command = COMMANDS[name]
    ctx = ROOT_CTX if name == ROOT else click.Context(command, ROOT_CTX, name)
    return [p for p in command.get_params(ctx) if isinstance(p, TyperOption)]


def primary_of(p: TyperOption) -> str:
    """The name a command shows first: its first long name (-h comes before --help)."""
    return next(o for o in p.opts if o.startswith("--"))


def form_of(p: TyperOption) -> str:
    """The form an option has, as the table spells it: switches are flags; paths are typed as
    paths; a list option takes one string, its help says "Comma list" and --help shows <list>."""
    if p.is_flag:
        return "switch"
    if p.type_descriptor.is_path:
        return "path"
    if (p.help or "").startswith("Comma list"):
        assert p.type_descriptor.annotation in (str, str | None), p.opts
        assert p.metavar == "<list>", p.opts  # --help shows the form
        return "list"
    return "single"


CASES = [(c, p) for c in COMMANDS for p in options_of(c)]
IDS = [f"{c}:{primary_of(p)}" for c, p in CASES]


@pytest.mark.parametrize(("command", "param"), CASES, ids=IDS)
def test_every_option_is_in_the_table_as_documented(command: str, param: TyperOption) -> None:
    primary = primary_of(param)
    assert primary in ROWS, f"{command} {primary}: not in README's vocabulary table"
    row = ROWS[primary]
    assert command in row.commands, f"{primary}: the table does not list `{command}`"
    shorts = [o for o in param.opts if re.fullmatch(r"-[A-Za-z]", o)]
    assert shorts == ([row.short] if row.short else []), f"{command} {primary}: short form"
    longs = [o for o in param.opts if o.startswith("--") and o != primary]
    documented = [a for a, only in row.also.items() if only is None or command in only]
    assert sorted(longs) == sorted(documented), f"{command} {primary}: second names"
    assert param.secondary_opts == ([row.negative] if row.negative else []), primary
    assert form_of(param) == row.forms[command], f"{command} {primary}: form"


@pytest.mark.parametrize("primary", sorted(ROWS))
def test_every_row_exists_on_the_commands_it_names(primary: str) -> None:
    for command in ROWS[primary].commands:
        assert command in COMMANDS, f"{primary}: no command `{command}`"
        names = [primary_of(p) for p in options_of(command)]
        assert primary in names, f"the table lists {primary} on `{command}`, which lacks it"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_and_argument_has_help(command: str) -> None:
    cmd = COMMANDS[command]
    for p in [*options_of(command), *(a for a in cmd.params if isinstance(a, TyperArgument))]:
        assert (p.help or "").strip(), f"{command} {p.name}: no help text"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_ranges_are_stated_once(command: str) -> None:
    """An option with a Click range shows it ("[x>=1]"); its help must not say it again."""
    for p in options_of(command):
        if getattr(p, "min", None) is not None or getattr(p, "max", None) is not None:
            assert not re.search(r"at least|at most|>=|<=|\bin [\[(]", p.help or ""), (
                f"{command} {primary_of(p)}: range in both the help and [x...]"
            )


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_switches_render_as_plain_flags(command: str) -> None:
    args = ["--help"] if command == ROOT else [command, "--help"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    for p in options_of(command):
        if p.is_flag:  # still listed, and still a flag
            assert primary_of(p) in result.output


def test_one_name_per_concept() -> None:
    """The old spellings and every second name are never the name a command shows first, and
    no second name belongs to two concepts."""
    primaries = {primary_of(p) for c in COMMANDS for p in options_of(c)}
    assert not primaries & OLD_NAMES
    seconds = [a for row in ROWS.values() for a in row.also]
    assert not set(seconds) & primaries
    assert len(seconds) == len(set(seconds))
    assert set(seconds) >= OLD_NAMES  # still accepted


def test_old_spellings_still_work(tmp_path: Path) -> None:
    """`--results-dir` and `--batch-size` are second names of `--out` and `--batch`: one option."""
    bench = COMMANDS["bench"]
    ctx = bench.make_context("bench", ["--results-dir", str(tmp_path), "--batch-size", "2,4"])
    assert ctx.params["out"] == tmp_path and ctx.params["batch"] == "2,4"
    for flag in ("--force", "--overwrite"):
        ctx = COMMANDS["train"].make_context("train", [flag])
        assert ctx.params["force"] is True


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["train", "--precision", "int8"], "'int8' is not one of 'fp32', 'tf32', 'fp16', 'bf16'"),
        (["export", "--force", "true"], "unexpected extra argument(s) (true)"),
        (["bench", "--results"], "No such option: --results"),
        (["evaluate", "--batch", "0"], "'--batch' / '--batch-size'"),
        (["nocmd"], "No such command 'nocmd'"),
    ],
)
def test_click_usage_errors_are_one_line(args: list[str], words: str) -> None:
    """What Click rejects itself (choices, ranges, unknown names) is answered like an
    InputError: one line on stderr naming the option, exit 2."""
    result = CliRunner().invoke(app, args)
    err = result.stderr.strip()
    assert result.exit_code == 2, result.output
    assert err.startswith("error: ") and "\n" not in err and words in err, err
