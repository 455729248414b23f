"""A webhook on 127.0.0.1 that records every JSON body POSTed to it; ``down`` makes it answer 503, as a webhook that is down."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """Records each POSTed JSON body and path; answers 200, or 503 while ``down`` is set."""

    def __init__(self, path: str = "/hook"):
        self.bodies: list[dict] = []
        self.paths: list[str] = []
        self.down = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.down:
                    self.send_response(503)
                    self.end_headers()
                    return
                outer.paths.append(self.path)
                outer.bodies.append(json.loads(body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}{path}"

    def events(self, kind: str) -> list[dict]:
        return [b for b in self.bodies if b.get("modelwatch", {}).get("event") == kind]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
