"""A small, dependency-free driver for headless Chromium over the DevTools protocol (CDP).

Chromium is started with `--remote-debugging-pipe`: it reads CDP messages (JSON, each terminated
by a NUL byte) from fd 3 and writes its replies and events to fd 4. No port is opened and nothing
is fetched from the network. Every wait has a deadline, so a hung browser fails the caller instead
of hanging it; the process is always killed and its temporary profile removed.

    with Browser() as browser:
        page = browser.open(Path("report.html").as_uri())
        page.evaluate("document.title")
        page.screenshot(Path("shot.png"))
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

EXECUTABLE_NAMES = ("chromium", "chromium-browser", "google-chrome")
# The largest full-page screenshot taken (CSS pixels): Chromium's textures stop at 16384.
MAX_SHOT_HEIGHT = 16384

Message = dict[str, Any]


class BrowserError(RuntimeError):
    """The browser failed, timed out, or a CDP command or page script returned an error."""


def find_chromium() -> str | None:
    """$CHROMIUM if set (it must exist), else the first of chromium / chromium-browser /
    google-chrome on PATH; None when there is none."""
    env = os.environ.get("CHROMIUM")
    if env:
        return shutil.which(env) or (env if os.access(env, os.X_OK) else None)
    return next((p for n in EXECUTABLE_NAMES if (p := shutil.which(n))), None)


def launch_flags(user_data_dir: Path, width: int, height: int) -> list[str]:
    """Flags for a root, offline CI machine: no sandbox, no GPU, no background network."""
    return [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--mute-audio",
        f"--window-size={width},{height}",
        f"--user-data-dir={user_data_dir}",
        "--remote-debugging-pipe",
        "about:blank",
    ]


def _child_fds(to_browser: int, from_browser: int) -> Callable[[], None]:
    """A preexec_fn putting the browser's ends of the pipes on fds 3 (commands) and 4 (replies).
    Both are first moved above 10, so that neither dup2 can overwrite the other's source."""

    def remap() -> None:
        high_in = fcntl.fcntl(to_browser, fcntl.F_DUPFD, 10)
        high_out = fcntl.fcntl(from_browser, fcntl.F_DUPFD, 10)
        os.dup2(high_in, 3)  # dup2 makes the copies inheritable
        os.dup2(high_out, 4)
        os.close(high_in)
        os.close(high_out)

    return remap


class Browser:
    """One headless Chromium process, driven over a CDP pipe. Use as a context manager."""

    def __init__(
        self,
        executable: str | None = None,
        timeout: float = 20.0,
        width: int = 1280,
        height: int = 900,
    ) -> None:
        exe = executable or find_chromium()
        if exe is None:
            raise BrowserError("no Chromium found ($CHROMIUM, chromium, chromium-browser)")
        self.executable = exe
        self.timeout = timeout
        self.width, self.height = width, height
        self._proc: subprocess.Popen[bytes] | None = None
        self._profile: Path | None = None
        self._log: Any = None
        self._write_fd = -1
        self._read_fd = -1
        self._buffer = b""
        self._next_id = 0
        self._events: list[Message] = []

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> Browser:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        self._profile = Path(tempfile.mkdtemp(prefix="alexbench-chromium-"))
        try:
            cmd_r, cmd_w = os.pipe()  # we write commands to cmd_w; the browser reads fd 3
            rep_r, rep_w = os.pipe()  # the browser writes fd 4; we read rep_r
            self._write_fd, self._read_fd = cmd_w, rep_r
            self._log = open(self._profile / "stderr.log", "wb")  # noqa: SIM115 (closed in close)
            flags = launch_flags(self._profile / "profile", self.width, self.height)
            try:
                self._proc = subprocess.Popen(
                    [self.executable, *flags],
                    stdin=subprocess.DEVNULL,
                    stdout=self._log,
                    stderr=self._log,
                    # fds 3 and 4 are open here (os.pipe took them if they were free), so
                    # keeping them is valid; in the child they become the pipes, see _child_fds.
                    pass_fds=(3, 4),
                    preexec_fn=_child_fds(cmd_r, rep_w),
                    start_new_session=True,
                )
            finally:
                os.close(cmd_r)
                os.close(rep_w)
            self.send("Target.setDiscoverTargets", {"discover": False})  # fails fast if not up
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Ask the browser to quit, then kill it if it has not, and remove its profile."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(BrowserError, OSError):
                self.send("Browser.close", timeout=3.0)
            try:
                proc.wait(timeout=3.0)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)  # its own session: renderers and zygotes too
                proc.wait(timeout=10.0)
        if proc is not None and proc.poll() is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, 9)  # helpers outliving the browser process
        self._proc = None
        for fd in (self._write_fd, self._read_fd):
            if fd >= 0:
                os.close(fd)
        self._write_fd = self._read_fd = -1
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._profile is not None:
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None

    def stderr_tail(self, chars: int = 2000) -> str:
        if self._profile is None or not (self._profile / "stderr.log").exists():
            return ""
        return (self._profile / "stderr.log").read_bytes()[-chars:].decode(errors="replace")

    # -- protocol -------------------------------------------------------------------------------

    def send(
        self,
        method: str,
        params: Message | None = None,
        session_id: str | None = None,
        timeout: float | None = None,
    ) -> Message:
        """Send one CDP command and return its result; events read meanwhile are kept."""
        self._next_id += 1
        msg: Message = {"id": self._next_id, "method": method, "params": params or {}}
        if session_id is not None:
            msg["sessionId"] = session_id
        data = json.dumps(msg).encode() + b"\0"
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while data:
            _, ready, _ = select.select([], [self._write_fd], [], self._left(deadline, method))
            if ready:
                try:
                    data = data[os.write(self._write_fd, data) :]
                except BrokenPipeError:  # it exited between the poll in _left and the write
                    raise BrowserError(self._closed_pipe(method)) from None
        reply = self._read_until(lambda m: m.get("id") == msg["id"], deadline, method)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error'].get('message')} ({reply['error']})")
        return reply.get("result", {})

    def wait_event(
        self,
        method: str,
        session_id: str | None = None,
        predicate: Callable[[Message], bool] | None = None,
        timeout: float | None = None,
    ) -> Message:
        """The params of the first event `method` (for `session_id`) not yet waited for."""

        def match(m: Message) -> bool:
            return (
                m.get("method") == method
                and m.get("sessionId") == session_id
                and (predicate is None or predicate(m.get("params", {})))
            )

        for m in self._events:
            if match(m) and not m.get("_seen"):
                m["_seen"] = True
                return m.get("params", {})
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        found = self._read_until(match, deadline, f"event {method}")
        found["_seen"] = True
        return found.get("params", {})

    def events(self, session_id: str | None, *methods: str) -> list[Message]:
        """The params of every event received so far for this session, of these methods."""
        return [
            m.get("params", {})
            for m in self._events
            if m.get("sessionId") == session_id and m.get("method") in methods
        ]

    def drain(self, seconds: float = 0.1) -> None:
        """Read whatever events arrive within `seconds` (a quiet period), keeping them."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self._read_some(left):
                return

    def _closed_pipe(self, method: str) -> str:
        status = "unknown"
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                status = str(self._proc.wait(timeout=3.0))
        return f"Chromium closed its command pipe (status {status}) while sending {method}\n" + (
            self.stderr_tail()
        )

    def _left(self, deadline: float, what: str) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BrowserError(f"timed out waiting for {what}\n{self.stderr_tail()}")
        if self._proc is not None and self._proc.poll() is not None:
            raise BrowserError(
                f"Chromium exited (status {self._proc.returncode}) while waiting for {what}\n"
                + self.stderr_tail()
            )
        return min(left, 0.5)  # wake up now and then to notice a dead browser

    def _read_some(self, wait: float) -> bool:
        """Read what is available within `wait` seconds into the queue; False if nothing came."""
        ready, _, _ = select.select([self._read_fd], [], [], wait)
        if not ready:
            return False
        chunk = os.read(self._read_fd, 1 << 20)
        if not chunk:
            raise BrowserError(f"Chromium closed its DevTools pipe\n{self.stderr_tail()}")
        self._buffer += chunk
        *messages, self._buffer = self._buffer.split(b"\0")
        self._events.extend(json.loads(m) for m in messages)
        return True

    def _read_until(self, match: Callable[[Message], bool], deadline: float, what: str) -> Message:
        start = 0
        while True:
            for i in range(start, len(self._events)):
                m = self._events[i]
                if match(m) and not m.get("_seen"):
                    if "id" in m:  # replies are not kept, only events
                        del self._events[i]
                    return m
            start = len(self._events)
            self._read_some(self._left(deadline, what))

    # -- pages ----------------------------------------------------------------------------------

    def open(self, url: str, timeout: float | None = None) -> Page:
        """A new tab with Page, Runtime, Log and Network events on, navigated to `url`."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        page = Page(self, target, session["sessionId"])
        for domain in ("Page", "Runtime", "Log", "Network"):
            page.send(f"{domain}.enable")
        # A fixed viewport (the window's own is smaller by whatever the headless shell reserves).
        metrics = {"width": self.width, "height": self.height}
        page.send(
            "Emulation.setDeviceMetricsOverride",
            {**metrics, "deviceScaleFactor": 1, "mobile": False},
        )
        page.navigate(url, timeout=timeout)
        return page


class Page:
    """One attached tab; every command is routed by its CDP session id."""

    def __init__(self, browser: Browser, target_id: str, session_id: str) -> None:
        self.browser = browser
        self.target_id = target_id
        self.session_id = session_id

    def send(self, method: str, params: Message | None = None, **kw: Any) -> Message:
        return self.browser.send(method, params, session_id=self.session_id, **kw)

    def navigate(self, url: str, timeout: float | None = None) -> None:
        """Load `url` and wait for its load event (all images, data: URIs included, are in)."""
        for m in self.browser._events:  # an earlier load must not satisfy this one
            if m.get("sessionId") == self.session_id and m.get("method") == "Page.loadEventFired":
                m["_seen"] = True
        result = self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise BrowserError(f"navigating to {url}: {result['errorText']}")
        self.browser.wait_event("Page.loadEventFired", self.session_id, timeout=timeout)

    def evaluate(self, expression: str, timeout: float | None = None) -> Any:
        """The value of a JS expression (promises awaited), or BrowserError if it threw."""
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            timeout=timeout,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"script failed: {text}")
        return result.get("result", {}).get("value")

    def screenshot(self, path: Path | None = None, full_page: bool = True) -> bytes:
        """A PNG of the page (the whole document when full_page, up to MAX_SHOT_HEIGHT px)."""
        params: Message = {"format": "png"}
        if full_page:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            width = max(1, int(size["width"]))
            height = max(1, min(int(size["height"]), MAX_SHOT_HEIGHT))
            params["captureBeyondViewport"] = True
            params["clip"] = {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
        data = base64.b64decode(self.send("Page.captureScreenshot", params)["data"])
        if path is not None:
            Path(path).write_bytes(data)
        return data

    def close(self) -> None:
        self.browser.send("Target.closeTarget", {"targetId": self.target_id})

    def console_errors(self) -> list[str]:
        """Uncaught exceptions, console.error/assert calls and error log entries so far."""
        self.browser.drain()
        out = []
        for p in self.browser.events(self.session_id, "Runtime.exceptionThrown"):
            d = p.get("exceptionDetails", {})
            out.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')}")
        for p in self.browser.events(self.session_id, "Runtime.consoleAPICalled"):
            if p.get("type") in ("error", "assert"):
                args = " ".join(str(a.get("value", a.get("description"))) for a in p["args"])
                out.append(f"console.{p['type']}: {args}")
        for p in self.browser.events(self.session_id, "Log.entryAdded"):
            entry = p.get("entry", {})
            if entry.get("level") == "error":
                out.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url')}")
        return out

    def requests(self) -> list[str]:
        """The URL of every request the page has made so far."""
        self.browser.drain()
        events = self.browser.events(self.session_id, "Network.requestWillBeSent")
        return [p["request"]["url"] for p in events]

    def failed_loads(self) -> list[str]:
        self.browser.drain()
        events = self.browser.events(self.session_id, "Network.loadingFailed")
        return [f"{p.get('type')}: {p.get('errorText')}" for p in events]
