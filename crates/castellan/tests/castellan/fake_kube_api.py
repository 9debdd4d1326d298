"""A stand-in for the Kubernetes API server's Secret endpoint, for running the chart's init Job script.

usage: fake_kube_api.py PORT RECORD_FILE [STATUS]
Answers every PATCH with STATUS (default 200) and appends one JSON line per request to RECORD_FILE:
{"path", "query", "content_type", "authorization", "body"}.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import urlsplit

port, record = int(sys.argv[1]), sys.argv[2]
status = int(sys.argv[3]) if len(sys.argv) > 3 else 200


class Handler(BaseHTTPRequestHandler):
    def do_PATCH(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        u = urlsplit(self.path)
        with open(record, "a") as f:
            f.write(json.dumps({"path": u.path, "query": u.query,
                                "content_type": self.headers.get("Content-Type"),
                                "authorization": self.headers.get("Authorization"), "body": body}) + "\n")
        answer = json.dumps({"kind": "Status" if status >= 400 else "Secret"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", port), Handler).serve_forever()
