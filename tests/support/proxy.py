"""A TCP proxy in front of the real API that cuts its first connections after some bytes
of the answer: a connection dropping mid-stream, for real (nothing of the service is
mocked; the bytes are the API's own)."""

from __future__ import annotations

import socket
import threading
from types import TracebackType


class CuttingProxy:
    def __init__(self, upstream_port: int, cut_after: int, cuts: int = 1) -> None:
        self.upstream_port, self.cut_after, self.cuts = upstream_port, cut_after, cuts
        self.requests: list[bytes] = []  # the first bytes each connection sent
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> CuttingProxy:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self.server.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                down, _ = self.server.accept()
            except OSError:
                return
            n = len(self.requests)
            up = socket.create_connection(("127.0.0.1", self.upstream_port))
            first = down.recv(65536)
            self.requests.append(first)
            up.sendall(first)
            limit = self.cut_after if n < self.cuts else None
            threading.Thread(target=self._pump, args=(down, up, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, down, limit), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while True:
                data = src.recv(65536 if limit is None else min(65536, limit - sent))
                if not data:
                    break
                dst.sendall(data)
                sent += len(data)
                if limit is not None and sent >= limit:
                    break
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
