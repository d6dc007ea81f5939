"""The dashboard in a real chromium against a real stack: sign in (by keyboard), the jobs
list following a job live to succeeded, the form generated from the catalog's schema (a
default shown, a 422 shown on its field), a job's curve and picture, an RBM's filters and
chain, a graph's embedding, comparing two jobs, cancelling, escaping user-supplied names,
and a phone's width."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.stack import ADMIN_KEY, Stack
from tests.support.dashboard import FLOW, sign_in

pytestmark = pytest.mark.e2e

XSS = '<img src=x onerror="window.pwned=1"><script>window.pwned=1</script>'


@pytest.fixture(scope="module")
def done_jobs(stack: Stack) -> list[dict[str, Any]]:
    """Two finished flow jobs (different seeds), for the job page and the comparison."""
    jobs = [stack.post_job({**FLOW, "train": {**FLOW["train"], "seed": s}}) for s in (0, 1)]
    out = [stack.wait_status(j["id"], {"succeeded", "failed"}, timeout=120) for j in jobs]
    assert [j["status"] for j in out] == ["succeeded"] * 2, [j["error"] for j in out]
    return out


def test_keyboard_sign_in_and_a_wrong_key(page: Any, stack: Stack) -> None:
    page.goto(stack.url + "/")
    # Tab reaches the key field and then the submit button, both focus-visible controls
    for _ in range(6):
        if page.evaluate("document.activeElement.id") == "key":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "key"
    page.keyboard.type("dz_not_a_key")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Sign in"
    page.keyboard.press("Enter")
    error = page.wait_for_selector("#signin-status .alert")
    assert "Sign-in failed" in error.inner_text()
    page.fill("#key", ADMIN_KEY)
    page.keyboard.press("Enter")
    page.wait_for_selector("h1:text('Jobs')")
    assert page.evaluate("sessionStorage.getItem('deepzoo.key')") == ADMIN_KEY
    page.click("#signout")
    page.wait_for_selector("#key")
    assert page.evaluate("sessionStorage.getItem('deepzoo.key')") is None


def test_jobs_list_follows_a_job_live_and_escapes_its_name(page: Any, stack: Stack) -> None:
    sign_in(page, stack)
    job = stack.post_job({**FLOW, "name": XSS, "train": {**FLOW["train"], "epochs": 6}})
    row = page.wait_for_selector(f"tr[data-job='{job['id']}']")
    assert XSS in row.inner_text()  # shown as text, never parsed as markup
    page.wait_for_selector(f"tr[data-job='{job['id']}'] [data-status='succeeded']", timeout=90_000)
    assert "100 %" in row.inner_text()
    assert page.locator("#more").is_hidden(), "no further page: no Show more"
    assert page.evaluate("window.pwned") is None
    assert page.query_selector("tr img, tr script") is None


def test_submit_form_from_the_schema(page: Any, stack: Stack) -> None:
    sign_in(page, stack, "/#/submit")
    page.select_option("#model", "flow")
    layers = stack.client.get("/v1/models/flow").json()["params_schema"]["properties"]["layers"]
    field = page.locator("[data-path='params.layers'] input")
    assert field.input_value() == str(layers["default"])
    assert field.get_attribute("max") == str(layers["maximum"])
    assert page.locator("[data-path='optimizer.name'] select").input_value() == '"adam"'
    page.select_option("[data-path='dataset'] select", '"moons"')
    page.fill("[data-path='train.epochs'] input", "0")
    page.click("form.submit button[type=submit]")
    error = page.wait_for_selector("[data-path='train.epochs'] .error:not([hidden])")
    assert "greater than or equal to 1" in error.inner_text()
    assert page.get_attribute("[data-path='train.epochs'] input", "aria-invalid") == "true"
    page.fill("[data-path='train.epochs'] input", "1")
    page.fill("[data-path='params.layers'] input", "2")
    page.fill("[data-path='params.hidden'] input", "16")
    page.fill("[data-path='name'] input", "from the form")
    page.click("form.submit button[type=submit]")
    page.wait_for_url("**/#/jobs/job_*")
    job_id = page.url.rsplit("/", 1)[1]
    spec = stack.job(job_id)["spec"]
    assert spec["params"]["layers"] == 2 and spec["params"]["hidden"] == [16]
    assert spec["train"]["epochs"] == 1 and spec["dataset"] == "moons"


def test_an_untouched_form_sends_only_the_model_and_dataset(page: Any, stack: Stack) -> None:
    """Every family's form starts at its schema's defaults: left alone, it sends nothing
    but the model and its first dataset (the server fills in the rest)."""
    sent: list[Any] = []

    def capture(route: Any) -> None:
        if route.request.method != "POST":
            route.continue_()
            return
        sent.append(route.request.post_data_json)
        route.abort()

    page.route("**/v1/jobs", capture)
    sign_in(page, stack, "/#/submit")
    catalog = stack.client.get("/v1/models").json()
    for model in catalog:
        page.select_option("#model", model["name"])
        page.click("form.submit button[type=submit]")
        page.wait_for_selector("#form-status .alert")
        assert sent[-1] == {"model": model["name"], "dataset": model["datasets"][0]}, model["name"]
    assert len(sent) == len(catalog)
    assert not [m for m in page.console_messages if "pageerror" in m]


def test_job_page_spec_curve_and_picture(
    page: Any, stack: Stack, done_jobs: list[dict[str, Any]]
) -> None:
    job = done_jobs[0]
    sign_in(page, stack, f"/#/jobs/{job['id']}")
    assert '"moons"' in page.locator("pre.spec").inner_text()
    # a curve: an <svg> path through every logged epoch (3 here)
    page.wait_for_function(
        "() => [...document.querySelectorAll('svg.chart path.line')]"
        ".some(p => Number(p.dataset.points) >= 3 && p.getAttribute('d').includes('L'))"
    )
    img = page.wait_for_selector(".picture img[src^='blob:']")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img)
    captions = page.locator(".picture figcaption").all_inner_texts()
    assert {"Samples", "Learned density"} <= set(captions)
    assert page.locator("#s-checkpoints ~ * table tr").count() >= 2
    assert not [
        m for m in page.console_messages if "Content Security Policy" in m or "pageerror" in m
    ]
    # every request went to this server (the key with it), pictures came as blobs
    assert not [u for u in page.requested if not u.startswith((stack.url, "blob:"))]
    refused = page.evaluate(
        """async () => {
            const api = await import('/dashboard/js/api.js');
            try { await api.api('//elsewhere.example/v1/jobs'); return 'sent'; }
            catch (e) { return e.message; }
        }"""
    )
    assert "not a path of this origin" in refused
    page.click(".actions button:text('Clone')")
    page.wait_for_url(lambda url: "/#/jobs/job_" in url and job["id"] not in url)
    copy = stack.job(page.url.rsplit("/", 1)[1])
    assert copy["provenance"]["cloned_from"] == job["id"] and copy["spec"] == job["spec"]


def captions_of_a_finished_job(page: Any, stack: Stack, spec: dict[str, Any], n: int) -> set[str]:
    """Train ``spec`` to the end, open its page and wait for ``n`` pictures: their captions."""
    job = stack.wait_status(stack.post_job(spec)["id"], {"succeeded", "failed"}, timeout=120)
    assert job["status"] == "succeeded", job["error"]
    sign_in(page, stack, f"/#/jobs/{job['id']}")
    page.wait_for_function(
        f"() => document.querySelectorAll(\".picture img[src^='blob:']\").length >= {n}"
    )
    return set(page.locator(".picture figcaption").all_inner_texts())


def test_an_energy_based_job_shows_its_filters_and_a_chain(page: Any, stack: Stack) -> None:
    spec = {
        "model": "rbm",
        "dataset": "bars_stripes",
        "params": {"hidden": 8, "gibbs_steps": 10},
        "train": {"epochs": 2, "seed": 0},
    }
    captions = captions_of_a_finished_job(page, stack, spec, 3)
    assert {"Samples", "Filters (each unit's weights)", "One Gibbs chain"} <= captions


def test_a_graph_job_shows_its_embedding(page: Any, stack: Stack) -> None:
    spec = {
        "model": "deepwalk",
        "dataset": "karate",
        "params": {"walks_per_node": 2, "walk_length": 8, "window": 2, "dim": 8},
        "train": {"epochs": 1, "seed": 0},
    }
    assert "Embedding (2-D PCA)" in captions_of_a_finished_job(page, stack, spec, 1)


def test_compare_two_jobs(page: Any, stack: Stack, done_jobs: list[dict[str, Any]]) -> None:
    sign_in(page, stack)
    for job in done_jobs:
        page.check(f"tr[data-job='{job['id']}'] input[type=checkbox]")
    page.click("#compare")
    page.wait_for_selector("#metric")
    assert page.locator("svg.chart path.line").count() == 2
    page.select_option("#metric", "train_loss")
    assert page.locator("svg.chart path.line").count() == 2
    points = page.eval_on_selector_all("svg.chart path.line", "ps => ps.map(p => p.dataset.points)")
    assert points == ["3", "3"]
    assert not [m for m in page.console_messages if "Content Security Policy" in m]


def event_ids(page: Any) -> list[int]:
    texts = page.locator(".events li .mono").all_inner_texts()
    return sorted(int(t.split()[0].lstrip("#")) for t in texts)


def test_cancel_resume_and_a_stream_that_reconnects(page: Any, stack: Stack) -> None:
    job = stack.post_job({**FLOW, "train": {**FLOW["train"], "epochs": 5000}})
    stack.wait_status(job["id"], {"running"}, timeout=60)
    sign_in(page, stack, f"/#/jobs/{job['id']}")
    page.wait_for_function("() => document.querySelectorAll('.events li').length >= 4")
    # the API goes away mid-stream: the page reopens it with Last-Event-ID and goes on
    # with the next event, none missed, none twice
    stack.restart_api()
    seen = len(event_ids(page))
    page.wait_for_function(
        f"() => document.querySelectorAll('.events li').length >= {seen + 4}", timeout=30_000
    )
    ids = event_ids(page)
    assert ids == list(range(1, len(ids) + 1))
    page.click(".actions button:text('Cancel')")
    page.wait_for_selector(".sub [data-status='cancelled']", timeout=30_000)
    assert stack.job(job["id"])["status"] == "cancelled"
    page.click(".actions button:text('Resume')")
    page.wait_for_selector(".sub [data-status='running']", timeout=30_000)
    page.click(".actions button:text('Cancel')")
    page.wait_for_selector(".sub [data-status='cancelled']", timeout=30_000)
    page.on("dialog", lambda d: d.accept())
    page.click(".actions button:text('Delete')")
    page.wait_for_selector("h1:text('Jobs')")
    assert stack.client.get(f"/v1/jobs/{job['id']}").status_code == 404


def test_another_owners_jobs_are_not_shown(
    page: Any, stack: Stack, done_jobs: list[dict[str, Any]]
) -> None:
    created = stack.client.post("/v1/keys", json={"name": "someone else"})
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    theirs = httpx.post(
        f"{stack.url}/v1/jobs",
        json={**FLOW, "train": {**FLOW["train"], "epochs": 1}},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert theirs.status_code == 201, theirs.text
    sign_in(page, stack, key=key)
    page.wait_for_selector(f"tr[data-job='{theirs.json()['id']}']")
    assert page.locator("tr[data-job]").count() == 1
    page.goto(f"{stack.url}/#/jobs/{done_jobs[0]['id']}")
    assert "Not Found" in page.wait_for_selector("main .alert").inner_text()


def test_a_phone_has_no_horizontal_scroll(
    page: Any, stack: Stack, done_jobs: list[dict[str, Any]]
) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, stack)
    for path in [
        "#/jobs",
        f"#/jobs/{done_jobs[0]['id']}",
        "#/submit",
        f"#/compare?jobs={done_jobs[0]['id']},{done_jobs[1]['id']}",
    ]:
        page.goto(f"{stack.url}/{path}")
        page.wait_for_selector("main h1")
        page.wait_for_timeout(300)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, (path, width)
