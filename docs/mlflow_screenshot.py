"""Take the README's screenshot of the MLflow compare view from a finished quickstart.

    python -m orchestrator.sweep quickstart --out outputs/quickstart
    python docs/mlflow_screenshot.py outputs/quickstart docs/img/mlflow-compare.png

Needs Debian's ``chromium`` and ``chromium-driver`` and ``pip install selenium`` (not a
dependency of the project: only this script uses them). It serves the store with ``mlflow ui``
on a free local port, opens the compare view of the selected final runs of one dataset and
probe (every encoder's seeds), and saves a PNG.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path


def main(out_dir: str, png: str, dataset: str = "synth_events", probe: str = "protobin") -> None:
    from mlflow.tracking import MlflowClient
    from selenium import webdriver

    db = Path(out_dir).resolve() / "mlflow.db"
    client = MlflowClient(f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("quickstart")
    runs = client.search_runs(
        [experiment.experiment_id],
        f"tags.selected = 'true' and tags.dataset = '{dataset}' and tags.probe = '{probe}'",
    )
    ids = [r.info.run_id for r in runs]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", f"sqlite:///{db}",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                time.sleep(1)
        query = urllib.parse.urlencode(
            {"runs": json.dumps(ids), "experiments": json.dumps([experiment.experiment_id])}
        )
        options = webdriver.ChromeOptions()
        for flag in ("--headless=new", "--no-sandbox", "--window-size=1600,1100"):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options)
        try:
            driver.get(f"http://127.0.0.1:{port}/#/compare-runs?{query}")
            time.sleep(12)  # the single-page app loads and draws its charts
            driver.save_screenshot(png)
        finally:
            driver.quit()
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main(*sys.argv[1:])
