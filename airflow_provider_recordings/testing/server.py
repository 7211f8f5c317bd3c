"""HTTP plumbing: a threaded HTTP/1.1 server that hands each request to the emulator.

Connections are tracked so ``stop()`` can close keep-alive sockets that clients pool;
otherwise a "stopped" emulator would keep answering on old connections and its
handler threads would outlive the test.
"""

from __future__ import annotations

import socket
import struct
import sys
import threading
import traceback
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

from airflow_provider_recordings.testing import errors
from airflow_provider_recordings.testing.api import Call, Response

Processor = Callable[[Call], Response]
_ABORT = struct.pack("ii", 1, 0)


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128  # load tests open many connections at once; the default is 5

    def __init__(self, host: str, port: int, process: Processor) -> None:
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), _Handler)
        self.process = process
        self._connections: set[socket.socket] = set()
        self._changed = threading.Condition()

    def track(self, connection: socket.socket) -> None:
        with self._changed:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._changed:
            self._connections.discard(connection)
            self._changed.notify_all()

    def close_connections(self, timeout: float) -> None:
        """Abort open client sockets and wait for their handler threads to finish.

        An abortive close (linger 0) leaves no TIME_WAIT behind, so the port is free
        for the next emulator as soon as ``stop()`` returns.
        """
        with self._changed:
            for connection in list(self._connections):
                try:
                    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _ABORT)
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._changed.wait_for(lambda: not self._connections, timeout)

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that hang up mid-answer are normal here (timeouts, stop()); stay quiet."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, keep-alive clients
    # would wait for a delayed ACK (~40 ms) on every request.
    disable_nagle_algorithm = True
    server: EmulatorHTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the emulator keeps its own request log."""

    def _serve(self) -> None:
        call = self._call()
        try:
            response = self.server.process(call)
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            response = Response.error(errors.server_error("emulator_error", f"emulator bug: {exc!r}"))
        if response.reset:
            self._abort()
        else:
            self._send(response)

    def _call(self) -> Call:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        target = urlsplit(self.path)
        return Call(
            method=self.command,
            path=unquote(target.path),
            query=dict(parse_qsl(target.query, keep_blank_values=True)),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
            raw_query=target.query,
        )

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.stream is None:
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if response.body:
                self.wfile.write(response.body)
            return
        self._send_stream(response.stream, response.length)

    def _send_stream(self, stream: Iterable[bytes], length: int | None) -> None:
        """Write a generated body chunk by chunk: with its Content-Length when known,
        otherwise chunked. A generator that fails midway cannot turn into an error
        answer any more, so the connection is closed and the client sees a short body."""
        chunked = length is None
        self.send_header(*(("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(length))))
        self.end_headers()
        try:
            for chunk in stream:
                if chunk:
                    self.wfile.write(b"%X\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
        except OSError:
            raise
        except Exception:
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            return
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _abort(self) -> None:
        """Close with a TCP reset: the client sees a connection error, not an answer."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _ABORT)
            self.connection.close()
        except OSError:
            pass
