"""Take the README's screenshot of the MLflow compare view (docs/img/mlflow-compare.png).

Not part of the package or of CI: it needs Chromium and its driver (Debian: ``apt-get install
chromium chromium-driver``) and ``pip install selenium``. It serves a sweep's sqlite store with
``mlflow ui`` on a free local port, opens the compare view of the selected final runs in
headless Chromium and saves a small PNG::

    python docs/mlflow_screenshot.py outputs/quickstart/mlflow.db docs/img/mlflow-compare.png
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(url: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"mlflow ui did not answer at {url} within {seconds:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("db", type=Path, help="the sweep's mlflow.db")
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--experiment", default="quickstart")
    args = parser.parse_args(argv)
    from mlflow.tracking import MlflowClient
    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options

    uri = f"sqlite:///{args.db.resolve()}"
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(args.experiment)
    if experiment is None:
        print(f"error: no experiment {args.experiment!r} in {args.db}", file=sys.stderr)
        return 2
    runs = client.search_runs([experiment.experiment_id], "tags.selected = 'true'")
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(
        ["mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1"]
        + ["--port", str(port), "--workers", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    options = Options()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1600,1000")
    try:
        _wait(f"http://127.0.0.1:{port}/health")
        driver = webdriver.Chrome(options=options)
        try:
            query = urllib.parse.urlencode(
                {
                    "runs": json.dumps([r.info.run_id for r in runs]),
                    "experiments": json.dumps([experiment.experiment_id]),
                }
            )
            driver.get(f"http://127.0.0.1:{port}/#/compare-runs?{query}")
            time.sleep(12)  # the charts render after the page loads
            raw = args.out.with_suffix(".raw.png")
            driver.save_screenshot(str(raw))
        finally:
            driver.quit()
    finally:
        server.terminate()
        server.wait(timeout=30)
    with Image.open(raw) as image:
        small = image.convert("RGB").resize((1200, round(image.height * 1200 / image.width)))
        small.quantize(colors=256).save(args.out, optimize=True)
    raw.unlink()
    print(f"wrote {args.out} ({len(runs)} selected runs compared)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
