"""The dashboard's sweeps in a real chromium against a real stack: a sweep started from the
form's own example (the optimizer lab at three learning rates) listed, its table filling
in best first, its plot decoded, a child's link, a sweep started from that child's job
page; a refused body (bad JSON, then a 422) shown with the field it names; a running
sweep cancelled from its page; no sideways scroll on a phone."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.stack import Stack, wait_until
from tests.support.dashboard import FLOW, sign_in

pytestmark = pytest.mark.e2e


def page_errors(page: Any) -> list[str]:
    return [m for m in page.console_messages if "pageerror" in m or "Content Security" in m]


def open_form(page: Any) -> None:
    page.wait_for_selector("#new-sweep")
    if not page.eval_on_selector("#new-sweep", "d => d.open"):
        page.click("#new-sweep summary")
    page.wait_for_selector("#sweep-body", state="visible")


def test_a_sweep_from_the_example_fills_its_table_and_plot(page: Any, stack: Stack) -> None:
    sign_in(page, stack, "/#/sweeps")
    page.click("nav a:text('Sweeps')")
    open_form(page)
    body = json.loads(page.input_value("#sweep-body"))
    assert body["spec"]["model"] == "optim" and body["grid"] == {"optimizer.lr": [0.01, 0.03, 0.1]}
    page.click("#new-sweep button[type=submit]")
    page.wait_for_url("**/#/sweeps/swp_*")
    sweep_id = page.url.rsplit("/", 1)[1]
    page.wait_for_selector(".sub [data-status='finished']", timeout=90_000)
    assert page.locator("#cancel-sweep").count() == 0

    sweep = stack.client.get(f"/v1/sweeps/{sweep_id}").json()
    assert sweep["status"] == "finished" and sweep["counts"] == {"succeeded": 3}
    rows = page.locator("table.children tbody tr")
    assert rows.count() == 3
    assert page.locator("table.children thead th").all_inner_texts() == [
        "#", "Job", "Status", "optimizer.lr", "loss",
    ]  # fmt: skip
    # best first, as the API ranks them: each row its child's job, lr and final loss
    for i, child in enumerate(sweep["children"]):
        cells = rows.nth(i).locator("td").all_inner_texts()
        assert cells[0] == str(child["number"]) and cells[1] == child["job_id"]
        assert cells[2].split() == (["succeeded", "best"] if i == 0 else ["succeeded"])
        assert float(cells[3]) == child["values"]["optimizer.lr"]
        assert float(cells[4]) == pytest.approx(child["metric"], rel=1e-3)
    assert "best" in rows.nth(0).get_attribute("class")
    assert sweep["children"][0]["values"] == {"optimizer.lr": 0.1}  # 300 steps part them
    assert "3 / 3 trials done" in page.locator(".sub").inner_text()
    img = page.wait_for_selector(".plot img[src^='blob:']")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img)
    assert '"rosenbrock"' in page.locator("pre.spec:not(.grid)").inner_text()

    # the list: newest first, with its status, trials and best value
    page.click("nav a:text('Sweeps')")
    row = page.wait_for_selector(f"tr[data-sweep='{sweep_id}']")
    assert page.locator("tr[data-sweep]").first.get_attribute("data-sweep") == sweep_id
    text = row.inner_text()
    assert "finished" in text and "grid" in text and "loss (min)" in text and "3 / 3" in text
    best = float(row.query_selector("td.best").inner_text())
    assert best == pytest.approx(sweep["best"]["metric"], rel=1e-3)

    # a child's link opens its job page; from there a sweep around that job
    row.query_selector("a").click()
    page.wait_for_selector("table.children")
    child = sweep["children"][0]
    page.click(f"table.children a:text('{child['job_id']}')")
    page.wait_for_url(f"**/#/jobs/{child['job_id']}")
    page.wait_for_selector("pre.spec")
    page.click(".actions a:text('Sweep from this job')")
    page.wait_for_url("**/#/sweeps?from=*")
    page.wait_for_selector("#new-sweep[open] #sweep-body")
    assert page.get_attribute("#sweep-from a", "href") == f"#/jobs/{child['job_id']}"
    body = json.loads(page.input_value("#sweep-body"))
    job = stack.job(child["job_id"])
    lr = job["spec"]["optimizer"]["lr"]
    assert body["spec"] == {k: v for k, v in job["spec"].items() if k != "name"}
    assert body["grid"]["optimizer.lr"] == pytest.approx([lr / 3, lr, lr * 3], rel=1e-2)
    assert (body["metric"], body["goal"]) == ("loss", "min")
    page.click("#new-sweep button[type=submit]")
    page.wait_for_url(lambda url: "/#/sweeps/swp_" in url and sweep_id not in url)
    second = page.url.rsplit("/", 1)[1]
    made = stack.client.get(f"/v1/sweeps/{second}").json()
    assert made["trials"] == 3 and made["spec"]["optimizer"]["lr"] == lr
    stack.client.post(f"/v1/sweeps/{second}/cancel")  # the worker is wanted elsewhere
    page.wait_for_selector(".sub [data-status='cancelled']", timeout=30_000)

    # a phone: nothing scrolls sideways
    page.set_viewport_size({"width": 390, "height": 844})
    for path in ("#/sweeps", f"#/sweeps/{sweep_id}"):
        page.goto(f"{stack.url}/{path}")
        page.wait_for_selector("main h1")
        page.wait_for_timeout(300)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
    assert not page_errors(page)


def test_a_refused_body_shows_the_problem_and_its_fields(page: Any, stack: Stack) -> None:
    before = stack.client.get("/v1/sweeps").json()["items"]
    posts: list[str] = []

    def sent(request: Any) -> None:
        if request.method == "POST":
            posts.append(request.url)

    page.on("request", sent)
    sign_in(page, stack, "/#/sweeps")
    open_form(page)
    page.fill("#sweep-body", '{"spec": {"model": "optim",')
    page.click("#new-sweep button[type=submit]")
    error = page.wait_for_selector("#sweep-status .alert")
    assert "not valid JSON" in error.inner_text()
    assert page.get_attribute("#sweep-body", "aria-invalid") == "true"
    assert not [u for u in posts if "/v1/sweeps" in u]  # nothing sent

    bad = {
        "spec": {"model": "optim", "dataset": "rosenbrock", "train": {"steps": 10}},
        "grid": {"optimizer.lr": [0.1, -1.0]},
        "metric": "loss",
    }
    page.fill("#sweep-body", json.dumps(bad))
    page.click("#new-sweep button[type=submit]")
    page.wait_for_selector("#sweep-status .errors li")
    assert "The sweep was refused" in page.locator("#sweep-status .alert").inner_text()
    fields = page.locator("#sweep-status .errors li .mono").all_inner_texts()
    assert "grid.optimizer.lr" in fields
    assert page.get_attribute("#sweep-body", "aria-invalid") == "true"
    assert "/#/sweeps" in page.url and "swp_" not in page.url
    page.click("#new-sweep button:text('Reset to the example')")
    assert json.loads(page.input_value("#sweep-body"))["spec"]["model"] == "optim"
    assert page.locator("#sweep-status .alert").count() == 0
    assert stack.client.get("/v1/sweeps").json()["items"] == before
    assert not page_errors(page)


def test_cancel_a_running_sweep_from_its_page(page: Any, stack: Stack) -> None:
    long = {**FLOW, "train": {**FLOW["train"], "epochs": 5000}}
    body = {"spec": long, "grid": {"train.seed": [0, 1, 2]}, "parallel": 1, "name": "long"}
    r = stack.client.post("/v1/sweeps", json=body)
    assert r.status_code == 201, r.text
    sweep = r.json()
    first = sweep["children"][0]["job_id"]
    stack.wait_status(first, {"running"}, timeout=60)
    url = f"{stack.url}/v1/sweeps/{sweep['id']}"

    def polls() -> int:
        return int(page.requested.count(url))

    sign_in(page, stack, f"/#/sweeps/{sweep['id']}")
    page.wait_for_selector("tr[data-child='0'] [data-status='running']", timeout=10_000)
    assert "0 / 3 trials done" in page.locator(".sub").inner_text()
    with page.expect_request(url, timeout=10_000):  # polled while it runs; not once it is left
        pass
    page.click("nav a:text('Jobs')")
    page.wait_for_selector("h1:text('Jobs')")
    left = polls()
    page.wait_for_timeout(3_500)
    assert polls() == left
    page.go_back()
    page.click("#cancel-sweep")
    page.wait_for_selector(".sub [data-status='cancelled']")
    assert page.locator("#cancel-sweep").count() == 0
    # the page goes on polling while the running child stops
    page.wait_for_selector("tr[data-child='0'] [data-status='cancelled']", timeout=30_000)
    stopped = polls()  # and not once every child is over
    page.wait_for_timeout(3_500)
    assert polls() == stopped

    def over() -> dict[str, Any] | None:
        table = dict(stack.client.get(f"/v1/sweeps/{sweep['id']}").json())
        return table if table["counts"] == {"cancelled": 1} else None

    after = wait_until(over, 10, "the child to be cancelled")
    assert after["status"] == "cancelled" and len(after["children"]) == 1
    assert stack.job(first)["status"] == "cancelled"
    assert not page_errors(page)
