"""A local notification sink for the demo: prints every notification alertd sends it."""

import json
from http.server import BaseHTTPRequestHandler, HTTPServer


class Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            msg = json.loads(body)
            print(f"=== {msg.get('title')}\n{msg.get('message')}\n", flush=True)
        except ValueError:
            print(body.decode(errors="replace"), flush=True)
        self.send_response(200)
        self.end_headers()


HTTPServer(("0.0.0.0", 8080), Sink).serve_forever()
