"""Shared CLI plumbing: the --debug state, one-line errors, comma-separated list parsing, and
the --json and --wide switches."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import errno
import functools
import json
import os
import re
import signal
import sys
import tempfile
import traceback
import typing
from collections.abc import Callable, Iterable, Iterator
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO, TypeVar

import typer
from rich.console import Console
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from alexbench.errors import AlexbenchError, InputError, Interrupted, shown
from alexbench.exit_codes import ExitCode
from alexbench.fileio import NO_SPACE, jsonable, nearest_existing

if TYPE_CHECKING:
    from alexbench.runtimes import Backend

try:  # typer >= 0.26 vendors Click as typer._click (the release pinned in pyproject)
    from typer import _click as click
except ImportError:  # an older typer on Click itself: the GPU machine's image is run as it is
    import click  # type: ignore[no-redef]

# Click >= 8.2 answers a bare group with this error, whose message is the help rich has drawn.
_NO_ARGS_IS_HELP: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())

E = TypeVar("E", bound=Enum)
F = TypeVar("F", bound=Callable[..., Any])


class OutputClosed(BrokenPipeError):
    """The reader of stdout or stderr has gone (`alexbench bench 2>&1 | head`). Only this ends
    a command with 141: a broken pipe elsewhere (a worker's) is an internal error."""


def _silence(stream: TextIO) -> None:
    """Point a stream whose reader has gone at /dev/null: later prints, and Python's own flush
    at exit, go nowhere instead of failing again ("Exception ignored")."""
    with contextlib.suppress(OSError, ValueError):  # no descriptor (CliRunner's streams)
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


class _Console(Console):
    """Rich ends the process with exit 1 ("parity failed") when its stream's reader has gone;
    here that is an exception, so a sweep still saves its finished cells and `handle_errors`
    ends with 141, as SIGPIPE would."""

    def on_broken_pipe(self) -> None:
        _silence(self.file)
        raise OutputClosed(errno.EPIPE, "the output's reader has gone")


# Piped or captured output gets a fixed, wide layout so tables are not squeezed to 80 columns,
# unless COLUMNS says how wide the reader is (rich reads it when width is None).
console = _Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 150)
err_console = _Console(stderr=True, highlight=False, soft_wrap=True)


def _plain_flags(params: list[Any]) -> list[Any]:
    """This Typer's rich help prints a type after every option, `<bool>` for switches too, which
    reads as if `--force true` were expected. An empty metavar leaves switches bare (a --x/--no-x
    pair included); parsing is unchanged."""
    for p in params:
        if isinstance(p, TyperOption) and p.is_flag and p.metavar is None:
            p.metavar = ""
    return params


def _one_line_usage_errors(make_context: Callable[[], Any]) -> Any:
    """Click's own answer to a bad option (an unknown name, a value outside its choices or
    range, a missing value) is a usage box over several lines; alexbench answers every bad input
    in one line on stderr, like an InputError, and exits 2 (--debug: the traceback first, as
    for every other error)."""
    try:
        return make_context()
    except click.ClickException as e:
        if isinstance(e, _NO_ARGS_IS_HELP):  # `alexbench` alone: the help (rich drew it already)
            if e.format_message().strip():
                typer.echo(e.format_message())
            raise typer.Exit(ExitCode.BAD_INPUT) from None
        message = " ".join(e.format_message().replace("Value error, ", "").split())
        hint = f" (see '{e.ctx.command_path} --help')" if getattr(e, "ctx", None) else ""
        _fail(f"error: {message}{hint}", ExitCode.BAD_INPUT)


def _is_path(param: Any) -> bool:
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if annotation is not None:
        return annotation is Path or Path in typing.get_args(annotation)
    # An older Typer on Click itself (the GPU machine's image): the param holds a click.Path.
    return type(getattr(param, "type", None)).__name__ == "Path"


def _argument_at(arguments: list[Any], position: int) -> Any:
    """The positional parameter that the `position`-th positional token fills (None: an extra
    token, which Click refuses itself). A variadic one (nargs -1) takes every token after it."""
    for a in arguments:
        if a.nargs == -1 or position < a.nargs:
            return a
        position -= a.nargs
    return None


def _empty_path(params: list[Any], args: list[str]) -> str | None:
    """The name of the first path option or argument given as '' (None when there is none).
    Typer reads '' as Path('.'), so `--out ''` (an unset shell variable) would write into the
    current folder and `--data-dir ''` would read it: refuse it before Click converts it. Tokens
    are read as Click reads them: an option's value is the next token whatever it looks like,
    `--name=value` only for long names, '-' is a positional, everything after '--' is too."""
    options = {
        o: p
        for p in params
        if isinstance(p, TyperOption) and not p.is_flag
        for o in (*p.opts, *p.secondary_opts)
    }
    arguments = [p for p in params if isinstance(p, TyperArgument)]
    position, i, only_positionals = 0, 0, False
    while i < len(args):
        token = args[i]
        name, _, attached = token.partition("=")
        if only_positionals or token == "-" or not token.startswith("-"):
            slot = _argument_at(arguments, position)
            if token == "" and slot is not None and _is_path(slot):
                return slot.name.upper()
            position += 1
        elif token == "--":
            only_positionals = True
        elif token.startswith("--") and name in options and "=" in token:
            if attached == "" and _is_path(options[name]):
                return name
        elif token in options:
            i += 1  # the next token is this option's value, whatever it looks like
            if i < len(args) and args[i] == "" and _is_path(options[token]):
                return token
        i += 1
    return None


class Command(TyperCommand):
    """Every alexbench command: switches shown as plain flags in --help, Click's usage errors
    in one line, and an empty path refused."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_flags(super().get_params(ctx))

    def make_context(self, info_name: str | None, args: list[str], **extra: Any) -> Any:
        args = _take_debug(args)

        def make() -> Any:
            name = _empty_path(self.params, args)
            options = set(args[: _options_end(args)])
            if name is not None and not {"-h", "--help"} & options:  # help comes first
                raise click.exceptions.UsageError(
                    # not "use '.'": that is no advice for a file (--plot '')
                    f"{name}: an empty path (an unset shell variable?)"
                )
            return super(Command, self).make_context(info_name, args, **extra)

        return _one_line_usage_errors(make)


def _take_debug(args: list[str]) -> list[str]:
    """`--debug` belongs to `alexbench` itself, but error lines say "rerun with --debug" and
    users add it at the end: after a command it means the same (before any `--`)."""
    end = _options_end(args)
    if "--debug" not in args[:end]:
        return args
    state.debug = True
    return [a for a in args[:end] if a != "--debug"] + args[end:]


def _options_end(args: list[str]) -> int:
    """Where the options end: at `--` (what follows is values), else the end."""
    return args.index("--") if "--" in args else len(args)


class Group(TyperGroup):
    """The `alexbench` group (its --debug, --version and --help), likewise."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_flags(super().get_params(ctx))

    def make_context(self, info_name: str | None, args: list[str], **extra: Any) -> Any:
        # Set (or cleared) first, for each invocation: an error parsing these very arguments
        # (an unknown command) is traced too, and one run's --debug does not outlive it.
        state.debug = "--debug" in args[: _options_end(args)]
        return _one_line_usage_errors(
            lambda: super(Group, self).make_context(info_name, args, **extra)
        )

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        def resolve() -> Any:
            try:
                return super(Group, self).resolve_command(ctx, args)
            except click.exceptions.UsageError as e:
                # Typer suggests near names from self.commands, which holds only the commands
                # loaded so far (they load when run): suggest from every command's name.
                near = difflib.get_close_matches(args[0], self.list_commands(ctx)) if args else []
                if near and e.message.startswith("No such command") and "Did you" not in e.message:
                    names = ", ".join(repr(n) for n in near)
                    e.message = f"{e.message.rstrip('.')}. Did you mean {names}?"
                raise

        return _one_line_usage_errors(resolve)


class State:
    debug: bool = False


state = State()


def _out_of_memory(e: BaseException) -> bool:
    """Python's MemoryError, or torch's allocators failing: CUDA's torch.OutOfMemoryError, the
    CPU allocator's RuntimeError naming itself."""
    import torch

    text = str(e)
    return isinstance(e, MemoryError | torch.OutOfMemoryError) or (
        isinstance(e, RuntimeError)
        and ("can't allocate memory" in text or "DefaultCPUAllocator" in text)
    )


def _fail(line: str, code: int) -> NoReturn:
    """Inside an `except`: one line on stderr and `code`; with --debug the traceback before it
    and the same code (a script or CI gate reads the same status with or without --debug)."""
    if state.debug:
        traceback.print_exc()
    err_console.print(one_line(line), markup=False)
    raise typer.Exit(code) from None


def one_line(text: str) -> str:
    """`text` with its line breaks written out: a message quoting a name that holds one (a
    folder called "bi\\nrd") is still one line, as a script reading stderr expects."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def handle_errors(fn: F) -> F:
    """Turn expected failures into one line on stderr and a non-zero exit (traceback: --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            # SIGTERM (docker stop, CI timeouts) as SIGINT: unwound, so temporaries are removed.
            with signals_as_interrupts():
                result = fn(*args, **kwargs)
                # Output to a pipe waits in a buffer: a reader gone (`| head`) shows here,
                # inside this handler, not in Click's, which exits 1 ("parity failed").
                try:
                    sys.stdout.flush()
                except BrokenPipeError:
                    raise OutputClosed(errno.EPIPE, "stdout's reader has gone") from None
                return result
        except (typer.Exit, typer.Abort):
            raise
        except (AlexbenchError, Interrupted) as e:
            _fail(f"error: {e}", e.exit_code)
        except KeyboardInterrupt:
            _fail("error: interrupted", ExitCode.INTERRUPTED)
        except OutputClosed:
            output_closed()
        except OSError as e:  # NO_SPACE: the machine's state, not a bug (exit 2)
            if e.errno not in NO_SPACE:
                raise_unexpected(e)
            where = f" {e.filename}" if e.filename else " the output"
            _fail(f"error: cannot write{where}: {e.strerror}", ExitCode.BAD_INPUT)
        except Exception as e:
            if _out_of_memory(e):  # sizes the machine cannot hold: the input, not a bug
                _fail(
                    f"error: out of memory ({type(e).__name__}): reduce the sizes asked for "
                    "(--batch, --image-size, --threads)",
                    ExitCode.BAD_INPUT,
                )
            raise_unexpected(e)

    return wrapper  # type: ignore[return-value]


def raise_unexpected(e: BaseException) -> NoReturn:
    """Inside an `except`: the one line of an internal error (exit 3)."""
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    _fail(
        f"error: unexpected {type(e).__name__}: {first} (rerun with --debug for the traceback)",
        ExitCode.UNEXPECTED,
    )


def output_closed() -> NoReturn:
    """The output's reader has gone (`alexbench results | head -1`): stop quietly with 141, as
    a program SIGPIPE ended."""
    _silence(sys.stdout)
    raise typer.Exit(ExitCode.OUTPUT_CLOSED) from None


_SIGNAL_EXIT = {signal.SIGINT: ExitCode.INTERRUPTED, signal.SIGTERM: ExitCode.TERMINATED}


def _interrupted(signum: int) -> Interrupted:
    sig = signal.Signals(signum)
    return Interrupted(sig.name, int(_SIGNAL_EXIT[sig]))


@contextlib.contextmanager
def _signal_handler(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """Inside: SIGINT and SIGTERM go to `handler`; the previous handlers come back after."""
    previous = {s: signal.signal(s, handler) for s in _SIGNAL_EXIT}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """Inside: SIGINT and SIGTERM raise `Interrupted`, so a long command can save its finished
    work before exiting 130 or 143 (SIGTERM would otherwise kill the process on the spot)."""

    def raise_interrupted(signum: int, _frame: Any) -> None:
        raise _interrupted(signum)

    with _signal_handler(raise_interrupted):
        yield


def _check_parent_writable(path: Path, option: str) -> None:
    """The nearest existing folder at or above `path` must be a writable directory."""
    existing = nearest_existing(path)
    if not existing.is_dir():
        raise InputError(f"{option} {path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{option} {path}: {existing} is not writable")
    try:  # access() says yes to root everywhere (/proc, some mounts): a real write decides
        with tempfile.TemporaryFile(dir=existing):
            pass  # unnamed (O_TMPFILE) or unlinked at once: leaves nothing behind
    except OSError as e:
        raise InputError(
            f"{option} {path}: cannot write in {existing}: {e.strerror or e}"
        ) from None


def check_output_dir(path: Path, option: str) -> None:
    """Fail in one line, before any work, when `path` cannot become (or be) a writable folder.
    Creates nothing: the folder is made when the first file is written."""
    if path.exists() and not path.is_dir():
        raise InputError(f"{option} {path}: is a file, expected a folder")
    _check_parent_writable(path, option)


def same_file(a: Path, b: Path) -> bool:
    try:  # hard links and symlinks to one file too
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return a.resolve() == b.resolve()


def check_not_an_input(out: Path, option: str, inputs: Iterable[tuple[str, Path | None]]) -> None:
    """Refuse an output file that is a file this command reads (`inputs`: its option and path):
    `evaluate --out best.pt` replaced the checkpoint with the JSON report and exited 0."""
    for input_option, path in inputs:
        if path is not None and same_file(out, path):
            raise InputError(
                f"{option} {out}: is the {input_option} file this command reads; writing there "
                "would destroy it (give another path)"
            )


def check_not_inside(out: Path, option: str, folder: Path | None, folder_option: str) -> None:
    """Refuse an output inside (or at) a folder this command reads as a whole."""
    if folder is not None and out.resolve().is_relative_to(folder.resolve()):
        raise InputError(
            f"{option} {out}: is inside {folder_option} {folder}, which this command reads: "
            "its files would be read as input next time (give a folder elsewhere)"
        )


def check_output_file(path: Path, option: str) -> None:
    """Fail in one line, before any work, when `path` cannot become a file: it is a directory, or
    its nearest existing parent is not a writable directory. Creates nothing."""
    if path.is_dir():
        raise InputError(f"{option} {path}: is a directory (give a file name)")
    _check_parent_writable(path.absolute().parent, option)


# Options that change what is printed, not what is measured: left out of a recorded command.
_OUTPUT_ONLY = {"as_json", "wide"}


def invoked_command(ctx: typer.Context) -> str:
    """The command that repeats this one: each option whose value differs from its default,
    under its primary name (recorded in results files; the report shows it)."""
    import shlex

    parts = [ctx.command_path]
    for param in ctx.command.params:
        name = param.name or ""
        if param.param_type_name != "option" or name in _OUTPUT_ONLY:
            continue
        value = ctx.params.get(name)
        if value is None or value == param.default:
            continue
        opts = list(param.opts)
        if isinstance(value, bool):
            secondary = list(getattr(param, "secondary_opts", []))
            flag = opts[0] if value else (secondary[0] if secondary else None)
            if flag:
                parts.append(flag)
            continue
        shown_value = value.value if isinstance(value, Enum) else value
        parts += [opts[0], shlex.quote(str(shown_value))]
    return " ".join(parts)


def unmeasured_asked(
    ctx: typer.Context, asked: dict[str, Iterable[Enum]], measured: Iterable[object]
) -> list[str]:
    """Values of the options in `asked` (parameter name -> values; each cell has an attribute
    of that name) given on the command line that no measured cell has, as "--precision int8".

    `verify --precision fp32,int8` where no int8 cell could run exited 0: a CI gate passed on
    an int8 model it never checked. A value left at its default asks for nothing in particular.
    """
    cells = list(measured)
    gaps = []
    for name, values in asked.items():
        if ctx.get_parameter_source(name) is not click.core.ParameterSource.COMMANDLINE:
            continue
        seen = {getattr(c, name) for c in cells}
        if missing := [v.value for v in values if v not in seen]:
            gaps.append(f"--{name} {','.join(missing)}")
    return gaps


def report_unmeasured(gaps: list[str], verb: str) -> None:
    """The one error line for `unmeasured_asked`'s answer (exit 4 follows)."""
    if gaps:
        err_console.print(
            f"error: nothing was {verb} at {' or '.join(gaps)}, though asked for: every such cell "
            "is unsupported here (see the table)",
            markup=False,
        )


def split_list(value: str, option: str) -> list[str]:
    items = [v.strip() for v in value.split(",")]
    if not value.strip() or any(not v for v in items):
        raise InputError(f"{option}: expected a comma-separated list, got '{shown(value)}'")
    return items


# The parsed values are de-duplicated, not the strings: "1,01", "fp32,FP32" and "ort,onnxruntime"
# each name one cell, and a cell measured twice would be merged as if it were two repeats.


def parse_enum_list(value: str, enum: type[E], option: str) -> list[E]:
    out: list[E] = []
    for item in split_list(value, option):
        try:
            out.append(enum(item.lower()))
        except ValueError:
            choices = ", ".join(str(m.value) for m in enum)  # type: ignore[attr-defined]
            raise InputError(
                f"{option}: unknown value '{shown(item)}' (choose from {choices})"
            ) from None
    return list(dict.fromkeys(out))


def parse_int_list(value: str, option: str, minimum: int = 1) -> list[int]:
    out: list[int] = []
    for item in split_list(value, option):
        # Digits only: int() also reads "1_0" as 10 and other scripts' digits, which a typo
        # would turn into a batch nobody asked for.
        if not re.fullmatch(r"\s*[+-]?[0-9]+\s*", item):
            raise InputError(f"{option}: '{shown(item)}' is not an integer")
        n = int(item)
        if n < minimum:
            raise InputError(f"{option}: {n} is below the minimum of {minimum}")
        out.append(n)
    return list(dict.fromkeys(out))


def parse_backend_list(value: str, option: str = "--backend") -> list[Backend]:
    from alexbench.runtimes import parse_backend  # torch: only for the commands that run models

    return list(dict.fromkeys(parse_backend(b) for b in split_list(value, option)))


# ------------------------------------------------------------------ --json and --wide

JSON_OPTION = typer.Option(
    False,
    "--json",
    help="Print one JSON document on stdout and nothing else (tables and progress go to stderr).",
)
WIDE_OPTION = typer.Option(False, "--wide", help="Show every column, even past the terminal width.")


def dumps_json(doc: Any) -> str:
    return json.dumps(jsonable(doc), indent=2, allow_nan=False)


@dataclasses.dataclass
class JsonDocument:
    """What a command run with --json prints on stdout when it ends (nothing while None)."""

    value: Any = None


_documents: list[JsonDocument] = []  # the innermost command under --json is last


def emit_json(value: Any) -> None:
    """Hand the command's document to --json: printed on stdout when the command ends (exit code
    unchanged). Without --json, nothing happens, so commands call it unconditionally."""
    if _documents:
        _documents[-1].value = value


@contextlib.contextmanager
def json_stdout(enabled: bool) -> Iterator[None]:
    """With `enabled` (--json): inside, everything written to stdout (the shared `console`, which
    follows sys.stdout, print(), and, on a real stdout, native libraries) goes to stderr instead;
    on the way out, even when the command exits non-zero, the document given to `emit_json` is
    printed on stdout as the only thing there. Without it: a no-op."""
    if not enabled:
        yield
        return
    stdout, document = sys.stdout, JsonDocument()
    _documents.append(document)
    # The console now draws on stderr: size it for stderr (`bench --json > run.json` in a
    # terminal), not for the piped stdout it was sized for. Rich has no public "unset width".
    width = console._width
    if sys.stderr.isatty() and not os.environ.get("COLUMNS"):
        console._width = None
    ended: BaseException | None = None
    try:
        with _stdout_fd_to_stderr(stdout), contextlib.redirect_stdout(sys.stderr):
            yield
    except BaseException as e:
        ended = e
        raise
    finally:
        console._width = width
        _documents.remove(document)
        if document.value is not None:
            try:
                stdout.write(dumps_json(document.value) + "\n")
                stdout.flush()
            except BrokenPipeError:
                # A reader gone (`| true`, a cancelled CI job's jq) ended every --json command
                # with 3, "unexpected BrokenPipeError", over its own 1, 4, 130 or 143 (an
                # audit): a command that failed or was stopped keeps its code; one that
                # succeeded ends with 141, as in table mode.
                _silence(stdout)
                if ended is None or (isinstance(ended, typer.Exit) and ended.exit_code == 0):
                    raise OutputClosed(errno.EPIPE, "stdout's reader has gone") from None


def json_output(fn: F) -> F:
    """Decorate a command that has an `as_json` parameter (JSON_OPTION): runs it under
    `json_stdout(as_json)`. Put it below `handle_errors`, so error lines come after the switch."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with json_stdout(bool(kwargs.get("as_json", False))):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def _stdout_fd_to_stderr(stdout: TextIO) -> Iterator[None]:
    """When stdout is a real file descriptor (a pipe to `jq`), point it at stderr's for the
    duration, so output from below Python (native libraries, child processes) cannot land in the
    JSON either. Captured stdout (typer's CliRunner) has no descriptor: nothing to do."""
    try:
        fd, err_fd = stdout.fileno(), sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        yield
        return
    stdout.flush()
    saved = os.dup(fd)
    os.dup2(err_fd, fd)
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            stdout.flush()
        os.dup2(saved, fd)
        os.close(saved)
