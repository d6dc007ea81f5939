"""What the dashboard's browser tests share: a tiny job spec and signing in."""

from __future__ import annotations

from typing import Any

from tests.stack import ADMIN_KEY, Stack

# a tiny generative job: a two-layer MAF on the two moons (a few seconds on one core)
FLOW = {
    "model": "flow",
    "dataset": "moons",
    "params": {"transform": "maf", "layers": 2, "hidden": [16]},
    "train": {"epochs": 3, "batch_size": 256, "seed": 0},
}


def sign_in(page: Any, stack: Stack, path: str = "/", key: str = ADMIN_KEY) -> None:
    page.goto(stack.url + path)
    page.fill("#key", key)
    page.click("form.signin button[type=submit]")
    page.wait_for_selector("#nav:not([hidden])")
