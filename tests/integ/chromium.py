"""chromium: headless Chromium (Debian's chromium package) driven over the Chrome DevTools
Protocol on a pipe (--remote-debugging-pipe: JSON messages ending in a NUL byte, read by
Chromium from fd 3 and written to fd 4), so that a test loads a page of komd's in a real
browser, reads what it shows through JavaScript, and takes screenshots, with no WebSocket
library. Every call is bounded; close() ends Chromium's whole process group (it runs in a
session of its own) and removes its private profile directory.

    with Chromium() as c:
        c.navigate("http://127.0.0.1:9464/")
        c.until("document.querySelectorAll('.line').length > 0", 10, "the lines")
        c.screenshot("/tmp/page.png")

As a program, a screenshot of a running komd's page (README's docs/status-page.png):
    /usr/bin/python3 tests/integ/chromium.py http://127.0.0.1:9464/ docs/status-page.png
"""
import base64
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from komdtest import records  # noqa: E402

CHROMIUM = os.environ.get("KOMD_CHROMIUM", "/usr/bin/chromium")


class ChromiumError(AssertionError):
    pass


class Chromium:
    def __init__(self, width=1280, height=900):
        self.width, self.height = width, height
        self.dir = tempfile.mkdtemp(prefix="komdchromium-")
        self.lock = threading.Condition()
        self.replies, self.events, self.next_id = {}, [], 0
        self.proc = self.session = self.log = None
        self.to_chrome = self.from_chrome = None
        self.closed = False  # Chromium's end of the pipe closed

    def start(self):
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()
        # out of the way of 3 and 4, so that the child's dup2 cannot overwrite one with the other
        hi_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD_CLOEXEC, 10)
        hi_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_chrome_r)
        os.close(from_chrome_w)

        def fds():
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)
        args = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--remote-debugging-pipe", "--user-data-dir=" + self.dir, "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-default-apps", "--mute-audio",
                "--hide-scrollbars", "--password-store=basic", "--use-mock-keychain",
                "--window-size=%d,%d" % (self.width, self.height), "about:blank"]
        env = dict(os.environ, HOME=self.dir, XDG_CONFIG_HOME=self.dir, XDG_CACHE_HOME=self.dir)
        self.log = open(os.path.join(self.dir, "chromium.log"), "w+")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                     close_fds=False, preexec_fn=fds, start_new_session=True, env=env)
        os.close(hi_r)
        os.close(hi_w)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        targets = self.call("Target.getTargets", timeout=30)["targetInfos"]
        pages = [t for t in targets if t["type"] == "page"]
        tid = pages[0]["targetId"] if pages else self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": tid, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(domain + ".enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride", {"width": self.width, "height": self.height,
                                                          "deviceScaleFactor": 1, "mobile": False}, session=True)
        return self

    def _read(self):
        for msg in records(lambda n: os.read(self.from_chrome, n), b"\0", 1 << 20):
            m = json.loads(msg)
            with self.lock:
                if "id" in m:
                    self.replies[m["id"]] = m
                else:
                    self.events.append(m)
                self.lock.notify_all()
        with self.lock:
            self.closed = True
            self.lock.notify_all()

    def call(self, method, params=None, session=False, timeout=15):
        """The result of one DevTools command (on the page's session when session is true)."""
        with self.lock:
            self.next_id += 1
            mid = self.next_id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            data = data[os.write(self.to_chrome, data):]
        deadline = time.monotonic() + timeout
        with self.lock:
            while mid not in self.replies:
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    raise ChromiumError("chromium: no answer to %s within %.0f s%s" % (
                        method, timeout, "; its log:\n" + self.chromium_log() if left > 0 else ""))
                self.lock.wait(min(left, 0.5))
            r = self.replies.pop(mid)
        if "error" in r:
            raise ChromiumError("chromium: %s: %s" % (method, r["error"]))
        return r.get("result", {})

    def chromium_log(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-4000:]

    def navigate(self, url, timeout=15):
        """Load url and wait for its load event."""
        with self.lock:
            start = len(self.events)
        r = self.call("Page.navigate", {"url": url}, session=True)
        if r.get("errorText"):
            raise ChromiumError("chromium: %s: %s" % (url, r["errorText"]))
        deadline = time.monotonic() + timeout
        with self.lock:
            while not any(e["method"] == "Page.loadEventFired" for e in self.events[start:]):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ChromiumError("chromium: %s did not load within %.0f s" % (url, timeout))
                self.lock.wait(min(left, 0.5))

    def eval(self, expr):
        """The value of a JavaScript expression in the page (JSON-serialisable)."""
        r = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True},
                      session=True)
        if "exceptionDetails" in r:
            raise ChromiumError("chromium: %s: %s" % (expr, r["exceptionDetails"]))
        return r["result"].get("value")

    def until(self, expr, timeout, what):
        """expr's value once it is truthy, checked every 0.1 s for at most timeout s."""
        deadline = time.monotonic() + timeout
        while True:
            v = self.eval(expr)
            if v:
                return v
            if time.monotonic() > deadline:
                raise ChromiumError("timed out after %.0f s waiting in the page for %s (last value %r)" % (
                    timeout, what, v))
            with self.lock:
                self.lock.wait(0.1)  # woken early by any event of the page

    def messages(self):
        """The page's console messages and uncaught exceptions so far, as text."""
        out = []
        with self.lock:
            for e in self.events:
                if e["method"] == "Log.entryAdded":
                    en = e["params"]["entry"]
                    out.append("%s %s: %s" % (en["level"], en["source"], en["text"]))
                elif e["method"] == "Runtime.exceptionThrown":
                    out.append("exception: %s" % json.dumps(e["params"]["exceptionDetails"])[:500])
                elif e["method"] == "Runtime.consoleAPICalled":
                    out.append("console.%s: %s" % (e["params"]["type"], [a.get("value") for a in e["params"]["args"]]))
        return out

    def screenshot(self, path, full=True):
        """A PNG of the page (the whole page when full, else the viewport); its size in bytes."""
        params = {"format": "png"}
        if full:
            m = self.call("Page.getLayoutMetrics", session=True)
            size = m.get("cssContentSize") or m["contentSize"]
            params.update(captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": self.width,
                                                             "height": min(size["height"], 8000), "scale": 1})
        data = base64.b64decode(self.call("Page.captureScreenshot", params, session=True, timeout=30)["data"])
        with open(path, "wb") as f:
            f.write(data)
        return len(data)

    def close(self):
        if self.proc and self.proc.poll() is None:
            try:
                self.call("Browser.close", timeout=5)
            except (ChromiumError, OSError):
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        if self.proc:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its zygote and renderers too
            except ProcessLookupError:
                pass
            self.proc.wait()
        if self.proc:
            self.reader.join(5)  # Chromium gone: its end of the pipe is closed, the reader sees EOF
        for fd in (self.to_chrome, self.from_chrome if not self.proc or not self.reader.is_alive() else None):
            if fd is not None:
                os.close(fd)
        if self.log:
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: chromium.py URL OUT.png")
    with Chromium(width=1280, height=800) as c:
        c.navigate(sys.argv[1])
        c.until("/refresh/.test(document.getElementById('refreshes').textContent)", 15, "a refresh")
        print("%s: %d bytes" % (sys.argv[2], c.screenshot(sys.argv[2])))
