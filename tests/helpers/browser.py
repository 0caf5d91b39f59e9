"""A headless Chromium driven through its DevTools protocol over ``--remote-debugging-pipe`` (test helper).

No websocket and no dependency: Chromium reads JSON commands from its file descriptor 3
and writes replies and events to its descriptor 4, each message ended by a NUL byte.
Every wait has a deadline, so a browser that stops answering fails the test, it never hangs it.

    with Browser.launch(tmp_path) as browser:
        browser.open(path.as_uri(), width=1280, height=800)
        browser.evaluate("document.title")
        browser.click("#next"); browser.press("ArrowRight")
        assert browser.errors() == []
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
import sys
import time
from pathlib import Path
from typing import Any

#: Debian's package names the launcher ``chromium``; other systems have one of the others.
CANDIDATES = ("chromium", "chromium-headless-shell", "chromium-browser", "google-chrome", "google-chrome-stable")
MISSING = "chromium not found: `apt-get install -y chromium` (Debian) or set CHROMIUM=/path/to/chromium"

#: Key names of the protocol's Input.dispatchKeyEvent, with their Windows virtual key codes.
KEY_CODES = {"ArrowLeft": 37, "ArrowUp": 38, "ArrowRight": 39, "ArrowDown": 40, "Home": 36, "End": 35, " ": 32}

_TRAMPOLINE = (
    "import os, sys; r, w = int(sys.argv[1]), int(sys.argv[2]); os.dup2(r, 3); os.dup2(w, 4);"
    " os.close(r); os.close(w); os.execv(sys.argv[3], sys.argv[3:])"
)


def find_chromium() -> str | None:
    """The Chromium executable: ``$CHROMIUM`` if set, else the first candidate on the path (``None``: none)."""
    if os.environ.get("CHROMIUM"):
        return shutil.which(os.environ["CHROMIUM"])
    return next((path for name in CANDIDATES if (path := shutil.which(name))), None)


class BrowserError(RuntimeError):
    """The browser died, did not answer in time, or answered a command with an error."""


class Browser:
    """One headless Chromium with one page attached (a flat session), driven synchronously."""

    def __init__(self, process: subprocess.Popen, to_browser: int, from_browser: int, timeout: float) -> None:
        self.process, self._out, self._in, self.timeout = process, to_browser, from_browser, timeout
        self._buffer = b""
        self._next_id = 0
        self._session: str | None = None
        self.events: list[dict[str, Any]] = []

    @classmethod
    def launch(cls, profile: Path, executable: str | None = None, timeout: float = 60.0) -> Browser:
        """Start Chromium headless with its profile in ``profile`` (a fresh folder)."""
        executable = executable or find_chromium()
        if executable is None:
            raise BrowserError(MISSING)
        commands_r, commands_w = os.pipe()
        replies_r, replies_w = os.pipe()
        # the child's ends at 10 and above, so that moving them to 3 and 4 cannot clobber one another
        child_r, child_w = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (commands_r, replies_w))
        os.close(commands_r)
        os.close(replies_w)
        args = [
            executable,
            "--headless",
            "--remote-debugging-pipe",
            "--no-sandbox",  # root in a container has no user namespace for the sandbox
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--mute-audio",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "about:blank",
        ]
        # a trampoline puts the pipe ends at 3 and 4 and becomes Chromium (a shell's redirections take
        # one-digit descriptors only, and preexec_fn is unsafe beside threads)
        process = subprocess.Popen(
            [sys.executable, "-c", _TRAMPOLINE, str(child_r), str(child_w), *args],
            pass_fds=(child_r, child_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        os.close(child_r)
        os.close(child_w)
        browser = cls(process, commands_w, replies_r, timeout)
        try:
            browser._attach()
        except BaseException:
            browser.close()
            raise
        return browser

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the browser (politely, then by force) and close the pipes."""
        if self.process.poll() is None:
            try:
                self._send("Browser.close", session=False)
                self.process.wait(timeout=10)
            except (BrowserError, OSError, subprocess.TimeoutExpired):
                pass
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        for fd in (self._out, self._in):
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- the protocol ------------------------------------------------------------------------------

    def _send(self, method: str, params: dict[str, Any] | None = None, session: bool = True) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self._session is not None:
            message["sessionId"] = self._session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._out, data) :]
        return self._next_id

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"Chromium did not answer within {self.timeout:.0f} s")
            ready, _, _ = select.select([self._in], [], [], min(left, 1.0))
            if not ready:
                if self.process.poll() is not None:
                    raise BrowserError(f"Chromium exited with status {self.process.returncode}")
                continue
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                raise BrowserError(f"Chromium closed its pipe (exit status {self.process.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict[str, Any] | None = None, session: bool = True) -> dict[str, Any]:
        """Send a command and return its result; the events that arrive meanwhile go to :attr:`events`."""
        wanted = self._send(method, params, session)
        deadline = time.monotonic() + self.timeout
        while True:
            message = self._receive(deadline)
            if message.get("id") == wanted:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def wait_for(self, method: str) -> dict[str, Any]:
        """The parameters of the next event ``method`` (events already received count)."""
        deadline = time.monotonic() + self.timeout
        while True:
            for k, event in enumerate(self.events):
                if event["method"] == method:
                    return self.events.pop(k).get("params", {})
            message = self._receive(deadline)
            if "method" in message:
                self.events.append(message)

    def _attach(self) -> None:
        target = self.call("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        attached = self.call("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)
        self._session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")

    # -- what a test does --------------------------------------------------------------------------

    def open(self, url: str, width: int = 1280, height: int = 800) -> None:
        """Show ``url`` in a ``width`` x ``height`` window and wait until it has loaded."""
        self.resize(width, height)
        # by way of a blank page: a new address that differs from the page's only after "#" loads nothing
        for address in ("about:blank", url):
            self.events = [e for e in self.events if e["method"] != "Page.loadEventFired"]
            result = self.call("Page.navigate", {"url": address})
            if result.get("errorText"):
                raise BrowserError(f"cannot open {address}: {result['errorText']}")
            self.wait_for("Page.loadEventFired")

    def resize(self, width: int, height: int) -> None:
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (an exception in it raises :class:`BrowserError`)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(f"{expression!r} raised {details.get('exception', {}).get('description', details)}")
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click (press and release) at the centre of the element ``selector``."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
        )
        if box is None:
            raise BrowserError(f"no element {selector!r} to click")
        x, y = box
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            params = {"type": kind, "x": x, "y": y, "button": "left" if kind != "mouseMoved" else "none"}
            if kind != "mouseMoved":
                params["clickCount"] = 1
            self.call("Input.dispatchMouseEvent", params)

    def press(self, key: str) -> None:
        """A real key press (down and up) of ``key``, a name of :data:`KEY_CODES`, to the focused element."""
        code = KEY_CODES[key]
        params = {"key": key, "code": "Space" if key == " " else key, "windowsVirtualKeyCode": code}
        self.call("Input.dispatchKeyEvent", {"type": "keyDown", **params})
        self.call("Input.dispatchKeyEvent", {"type": "keyUp", **params})

    def screenshot(self, path: str | Path) -> Path:
        """The whole page (beyond the window too) as a PNG file."""
        data = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path

    def errors(self) -> list[str]:
        """The page's uncaught exceptions, ``console.error`` / ``console.assert`` calls and error log entries."""
        found = []
        for event in self.events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                found.append(f"exception: {details.get('exception', {}).get('description') or details.get('text')}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                texts = [str(arg.get("value", arg.get("description", ""))) for arg in params.get("args", [])]
                found.append(f"console.{params['type']}: {' '.join(texts)}")
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                entry = params["entry"]
                found.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".strip())
        return found
