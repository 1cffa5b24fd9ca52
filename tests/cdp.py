"""A minimal Chrome DevTools Protocol client over `--remote-debugging-pipe` (no packages
needed): real-time measurements in headless Chromium, where `--dump-dom` with a virtual
clock cannot time anything (the page's clock stands still while a script runs)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from typing import Any


def _onto_3_and_4(read_end: int, write_end: int) -> None:
    """In the child: its command pipe on fd 3, its reply pipe on fd 4 (via high fds, so
    neither move clobbers the other)."""
    import fcntl

    r, w = fcntl.fcntl(read_end, fcntl.F_DUPFD, 10), fcntl.fcntl(write_end, fcntl.F_DUPFD, 10)
    os.dup2(r, 3)
    os.dup2(w, 4)


class Browser:
    """Headless Chromium driven over the pipe: `evaluate` runs an expression in the page
    (DevTools' evaluation, which the page's Content-Security-Policy does not govern)."""

    def __init__(self, chromium: str, size: tuple[int, int] = (1400, 1000)) -> None:
        self.profile = tempfile.TemporaryDirectory()
        to_child_r, self._w = os.pipe()
        self._r, from_child_w = os.pipe()
        # the child reads commands on fd 3 and writes replies on fd 4
        self.proc = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--remote-debugging-pipe",
             f"--user-data-dir={self.profile.name}", f"--window-size={size[0]},{size[1]}", "about:blank"],
            pass_fds=(3, 4), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=lambda: _onto_3_and_4(to_child_r, from_child_w))
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []  # what the page said: console calls, exceptions, log entries
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session=True)

    def send(self, method: str, session: bool = False, **params: Any) -> dict:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("method") in ("Runtime.consoleAPICalled", "Runtime.exceptionThrown", "Log.entryAdded"):
                self.events.append(reply)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _read(self) -> dict:
        while b"\0" not in self._buf:
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\0", 1)
        return json.loads(line)

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", session=True, expression=expression, awaitPromise=True,
                           returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"].get("text", "an exception"))
        return result["result"].get("value")

    def open(self, url: str, until: str = "document.readyState === 'complete'", timeout: float = 60) -> float:
        """Navigate to `url`; seconds until `until` holds in the page."""
        t0 = time.perf_counter()
        self.send("Page.navigate", session=True, url=url)
        self.wait(until, timeout)
        return time.perf_counter() - t0

    def wait(self, condition: str, timeout: float = 60) -> float:
        t0 = time.perf_counter()
        while not self.evaluate(f"!!({condition})"):
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError(condition)
            time.sleep(0.02)
        return time.perf_counter() - t0

    def faults(self) -> list[str]:
        """Console messages, uncaught exceptions and failed loads the page has had so far
        (the report logs nothing: any of these is a fault)."""
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                out.append(str(p.get("exceptionDetails", {}).get("exception", {}).get("description")
                               or p.get("exceptionDetails", {}).get("text")))
            elif e["method"] == "Runtime.consoleAPICalled":
                out.append(f"console.{p.get('type')}: " + " ".join(str(a.get("value", a.get("description")))
                                                                 for a in p.get("args", [])))
            else:
                entry = p.get("entry", {})
                if entry.get("level") in ("error", "warning") or entry.get("source") == "network":
                    out.append(f"{entry.get('source')}: {entry.get('text')}")
        return out

    def screenshot(self, path: str) -> None:
        import base64

        data = self.send("Page.captureScreenshot", session=True, format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, OSError):
            pass
        self.proc.wait(timeout=30)
        os.close(self._w)
        os.close(self._r)
        self.profile.cleanup()
