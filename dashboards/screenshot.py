"""Screenshots of the dashboard with headless Chromium, through the DevTools protocol.

    python dashboards/screenshot.py RESULTS_ROOT docs/screenshots      # every page, PNG < 300 KB

`chromium --screenshot` and `--dump-dom` capture the page at its load event, when Streamlit has
drawn only its skeleton (the app arrives later over a websocket), so this drives the browser over
the DevTools protocol instead: open the page, wait until the expected text is in the DOM and the
app is idle, then capture the DOM and a screenshot of the whole app. Needs `chromium` on PATH
(Debian: apt-get install chromium) and the `websockets` package (a Streamlit dependency).
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator, Optional

REPO = Path(__file__).resolve().parents[1]
PAGES = {"experiments": "Filter trials", "ablations": "Best configuration per metric", "hyperparameters": "Parallel coordinates",
         "saliency": "Insertion and deletion curves", "trial": "Learning curves", "compare": "Learning curves"}
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                  "--disable-dev-shm-usage", "--mute-audio"]


def page_path(page: str) -> str:
    """The URL path of a page ('' for the default page, Experiments)."""
    return "" if page == "experiments" else page


def find_chromium() -> Optional[str]:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


@contextlib.contextmanager
def serve(root: str, port: Optional[int] = None, timeout: float = 60.0, env: Optional[dict] = None) -> Iterator[str]:
    """`lico-tune dashboard ROOT --port PORT` in its own process group; yields its URL."""
    port = port or free_port()
    env = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "lico_tune.cli", "dashboard", root, "--port", str(port)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"lico-tune dashboard exited with {proc.returncode}:\n{proc.stdout.read()}")
            try:
                if _get(f"{url}/_stcore/health", 1.0).strip() == b"ok":
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"the dashboard did not answer on {url} within {timeout:.0f}s")
            time.sleep(0.3)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)          # lico-tune dashboard passes it on to Streamlit
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            pass
        _reap_group(proc)


def _reap_group(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """Wait for every process of `proc`'s group (its own session) to end; SIGKILL what is left."""
    deadline = time.time() + grace_s
    while time.time() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait()


class Browser:
    """Headless Chromium driven over the DevTools protocol (one tab)."""

    def __init__(self, chromium: Optional[str] = None, width: int = 1400, height: int = 1000):
        self.chromium = chromium or find_chromium()
        if not self.chromium:
            raise FileNotFoundError("chromium is not installed (Debian: apt-get install -y chromium)")
        self.width, self.height = width, height
        self.profile = tempfile.mkdtemp(prefix="lico-chromium-")
        self.proc = subprocess.Popen([self.chromium, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}",
                                      "--remote-debugging-port=0", f"--window-size={width},{height}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        active = Path(self.profile, "DevToolsActivePort")
        deadline = time.time() + 30
        while not (active.exists() and len(active.read_text().split()) >= 2):
            if self.proc.poll() is not None or time.time() > deadline:
                self.close()
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = active.read_text().split()[0]
        targets = json.loads(_get(f"http://127.0.0.1:{port}/json/list"))
        page = next(t for t in targets if t.get("type") == "page")
        from websockets.sync.client import connect
        self._connection = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10)
        self.ws = self._connection.__enter__()
        self._id = 0
        self.call("Page.enable")
        self.call("Runtime.enable")

    def call(self, method: str, **params) -> dict:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def eval(self, expression: str):
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return res.get("result", {}).get("value")

    def open(self, url: str, wait_text: str, timeout: float = 60.0, settle_s: float = 1.5) -> None:
        """Load url and wait until wait_text is on the page and Streamlit has stopped running."""
        self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height, deviceScaleFactor=1,
                  mobile=False)
        self.call("Page.navigate", url=url)
        deadline = time.time() + timeout
        probe = ("(() => { const t = document.body ? document.body.innerText : '';"
                 " const busy = document.querySelector('[data-testid=\"stStatusWidget\"]') !== null"
                 " || document.querySelector('[data-testid=\"stSkeleton\"]') !== null;"
                 f" return t.includes({json.dumps(wait_text)}) && !busy; }})()")
        while not self.eval(probe):
            if time.time() > deadline:
                raise TimeoutError(f"'{wait_text}' did not appear on {url} within {timeout:.0f}s; the page shows:\n"
                                   f"{(self.eval('document.body.innerText') or '')[:2000]}")
            time.sleep(0.3)
        time.sleep(settle_s)   # charts and images finish drawing

    def dom(self) -> str:
        return self.eval("document.documentElement.outerHTML") or ""

    def content_height(self) -> int:
        return int(self.eval("(() => { const m = document.querySelector('[data-testid=\"stMain\"]');"
                             " const b = document.querySelector('[data-testid=\"stMainBlockContainer\"]');"
                             " return Math.ceil(Math.max(m ? m.scrollHeight : 0, b ? b.scrollHeight + 80 : 0,"
                             " document.body.scrollHeight)); })()") or self.height)

    def screenshot(self, full: bool = True) -> bytes:
        """PNG of the viewport; with full, the viewport is first stretched to the app's height
        (Streamlit scrolls inside its main container, not the document) once that height has
        stopped changing (charts and images still being laid out)."""
        if full:
            height, stable = 0, 0
            deadline = time.time() + 20
            while stable < 3 and time.time() < deadline:
                h = self.content_height()
                stable = stable + 1 if h == height else 0
                height = h
                self.call("Emulation.setDeviceMetricsOverride", width=self.width,
                          height=int(min(max(h, self.height), 8000)), deviceScaleFactor=1, mobile=False)
                time.sleep(0.5)
        data = self.call("Page.captureScreenshot", format="png")["data"]
        return base64.b64decode(data)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._connection.__exit__(None, None, None)
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        _reap_group(self.proc)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def compact_png(png: bytes, max_bytes: int = 300_000) -> bytes:
    """Re-encode a screenshot as a palette PNG (and scale it down if still too big)."""
    from PIL import Image
    img = Image.open(io.BytesIO(png)).convert("RGB")
    scale = 1.0
    while True:
        im = img if scale == 1.0 else img.resize((int(img.width * scale), int(img.height * scale)), Image.LANCZOS)
        buf = io.BytesIO()
        im.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            buf, format="PNG", optimize=True)
        if buf.tell() <= max_bytes or scale < 0.4:
            return buf.getvalue()
        scale *= 0.85


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", help="results root")
    p.add_argument("out", help="directory for <page>.png")
    p.add_argument("--pages", nargs="*", default=list(PAGES), choices=list(PAGES))
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--query", default="", help="query string added to every page URL, e.g. experiment=NAME")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with serve(args.root) as url, Browser(width=args.width) as b:
        b.open(url, "Experiments")        # warm-up: the first load compiles and caches
        for page in args.pages:
            q = f"?{args.query}" if args.query else ""
            b.open(f"{url}/{page_path(page)}{q}", PAGES[page])
            png = compact_png(b.screenshot())
            (out / f"{page}.png").write_bytes(png)
            print(f"{out / f'{page}.png'}: {len(png) / 1000:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
