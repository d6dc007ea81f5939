"""Bodies over the limit, over a real socket: every common client reads the 413 (the rest
of the body is drained first), and draining is bounded in bytes and in time."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import httpx
import pytest
import requests
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.main import DRAIN_MAX_BYTES, BodyLimitMiddleware
from tests.stack import ADMIN_KEY, Stack, free_port, wait_until
from tests.support.services import redis_url

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
LIMIT_MB = 1
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"}


def big_json(mb: int = 40) -> bytes:
    """A syntactically valid JobSpec-shaped JSON document of about ``mb`` MiB."""
    return json.dumps({"model": "mlp", "dataset": "moons", "name": "x" * (mb * MIB)}).encode()


def chunks(body: bytes, size: int = 256 * 1024) -> Iterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i : i + size]


def assert_413(status: int, content_type: str, body: bytes) -> None:
    assert status == 413, body[:200]
    assert content_type.startswith("application/problem+json")
    problem = json.loads(body)
    assert problem["status"] == 413 and f"{LIMIT_MB} MiB" in problem["detail"]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app on uvicorn in a subprocess (no worker), with a 1 MiB body limit."""
    tmp = tmp_path_factory.mktemp("body-limit")
    stack = Stack(
        tmp,
        f"sqlite:///{tmp / 'deepzoo.db'}",
        redis_url(13),
        extra_env={"DEEPZOO_MAX_BODY_MB": str(LIMIT_MB)},
    )
    try:
        stack.start_api_only()
        yield stack.url
    finally:
        stack.stop()


def test_urllib_reads_the_413(api: str) -> None:
    # urllib sends the whole body without waiting for 100 Continue
    req = urllib.request.Request(f"{api}/v1/jobs", data=big_json(), headers=AUTH, method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(req, timeout=60)
    err = caught.value
    assert_413(err.code, err.headers["content-type"], err.read())


def test_requests_reads_the_413(api: str) -> None:
    r = requests.post(f"{api}/v1/jobs", data=big_json(), headers=AUTH, timeout=60)
    assert_413(r.status_code, r.headers["content-type"], r.content)


def test_requests_chunked_reads_the_413(api: str) -> None:
    # no Content-Length: counted as it streams, 413 once past the limit
    r = requests.post(f"{api}/v1/jobs", data=chunks(big_json()), headers=AUTH, timeout=60)
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert_413(r.status_code, r.headers["content-type"], r.content)


def test_httpx_reads_the_413(api: str) -> None:
    r = httpx.post(f"{api}/v1/jobs", content=big_json(), headers=AUTH, timeout=60)
    assert_413(r.status_code, r.headers["content-type"], r.content)
    r = httpx.post(f"{api}/v1/jobs", content=chunks(big_json()), headers=AUTH, timeout=60)
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert_413(r.status_code, r.headers["content-type"], r.content)


def test_upload_over_its_limit_reads_the_413(api: str) -> None:
    # POST /v1/datasets has its own, larger limit (DEEPZOO_MAX_UPLOAD_MB, 50 MiB here)
    files = {"file": ("big.csv", b"a,b\n" + b"1,2\n" * (14 * MIB), "text/csv")}
    r = requests.post(
        f"{api}/v1/datasets",
        files=files,
        data={"name": "big"},
        headers={"Authorization": AUTH["Authorization"]},
        timeout=60,
    )
    assert r.status_code == 413 and r.json()["status"] == 413


def raw_request(url: str, head: str, send: bytes = b"") -> tuple[socket.socket, float]:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(head.encode() + send)
    return sock, time.monotonic()


def read_status(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(65536)
        if not part:
            break
        data += part
    return data.split(b"\r\n", 1)[0]


def test_announced_beyond_the_drain_cap_is_answered_at_once(api: str) -> None:
    # nothing is read of a body larger than the drain cap: 413 straight away
    head = (
        f"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {DRAIN_MAX_BYTES + 1}\r\n\r\n"
    )
    sock, t0 = raw_request(api, head)
    with sock:
        assert read_status(sock).startswith(b"HTTP/1.1 413 ")
    assert time.monotonic() - t0 < 5


def test_expect_100_continue_is_answered_without_reading(api: str) -> None:
    head = (
        f"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {40 * MIB}\r\nExpect: 100-continue\r\n\r\n"
    )
    sock, _ = raw_request(api, head)
    with sock:
        assert read_status(sock).startswith(b"HTTP/1.1 413 ")  # no 100 Continue first


# --- the time bound, on a small app with a short drain time --------------------------------


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"bytes": len(await request.body())})


@pytest.fixture
def short_drain() -> Iterator[str]:
    inner = Starlette(routes=[Route("/echo", echo, methods=["POST"])])
    app = BodyLimitMiddleware(inner, max_bytes=MIB, upload_max_bytes=MIB, drain_seconds=0.5)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 30, "uvicorn to listen", 0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.parametrize("announced", [True, False])
def test_a_stalled_client_is_answered_after_the_drain_time(
    short_drain: str, announced: bool
) -> None:
    # 2 MiB sent of a body announced (or streamed) as 100 MiB, then nothing: the server
    # answers once the drain time is up and closes, rather than waiting for the rest
    framing = f"Content-Length: {100 * MIB}" if announced else "Transfer-Encoding: chunked"
    body = b"x" * (2 * MIB)
    if not announced:
        body = f"{len(body):x}\r\n".encode() + body + b"\r\n"
    sock, t0 = raw_request(
        short_drain, f"POST /echo HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n", body
    )
    with sock:
        assert read_status(sock).startswith(b"HTTP/1.1 413 ")
        answered = time.monotonic() - t0
        while sock.recv(65536):  # then the server closes the connection
            pass
        closed = time.monotonic() - t0
    assert 0.4 < answered < 3, answered
    assert closed < 3, closed


def test_within_the_limit_still_passes(short_drain: str) -> None:
    r = httpx.post(f"{short_drain}/echo", content=b"x" * 1000)
    assert r.json() == {"bytes": 1000}


def test_the_rest_of_the_body_is_drained_then_the_connection_reused(short_drain: str) -> None:
    with httpx.Client(base_url=short_drain) as client:
        assert client.post("/echo", content=b"x" * (3 * MIB)).status_code == 413
        assert client.post("/echo", content=b"ok").json() == {"bytes": 2}
