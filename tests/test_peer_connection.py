"""The peer benchmark's HTTP connection (benchmarks/peer.py:PeerConnection) against a real HTTP server that
closes every kept-alive connection after one answer, as uvicorn does after 5 idle seconds."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from benchmarks.peer import PeerConnection

pytestmark = pytest.mark.unit


class OneAnswerPerConnection(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive announced; the server then drops the connection anyway
    answered = 0

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).answered += 1
        data = json.dumps({"item_ids": [body["k"], type(self).answered]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def closing_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), OneAnswerPerConnection)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_a_request_that_finds_its_connection_closed_is_sent_once_more_on_a_new_one(closing_server):
    conn = PeerConnection(closing_server)
    answers = [conn.request("POST", "/search", {"k": k}) for k in (10, 20, 30)]
    assert answers == [[10, 1], [20, 2], [30, 3]]  # each sent once: none lost, none answered twice
    assert OneAnswerPerConnection.answered == 3
