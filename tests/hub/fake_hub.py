"""A local stand-in for the Hub's HTTP API, enough for huggingface_hub's create_repo + upload_folder.

huggingface_hub is used unchanged and talks HTTP to this server (HF_ENDPOINT points at it), so the
network is replaced only at the HTTP boundary. It keeps what a real Hub would store: repositories
(type, private flag) and committed files (regular uploads: the server answers every preupload with
"regular", so file contents arrive base64-encoded inside the commit's NDJSON). The model card's
front matter is validated as YAML, as the Hub's /api/validate-yaml does.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

TOKEN = "hf_fake_write_token"


class FakeHub:
    def __init__(self):
        self.repos: dict[str, dict] = {}  # "model:owner/name" -> {"private": bool}
        self.files: dict[str, dict[str, bytes]] = {}  # same key -> path -> content
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, status: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hub.requests.append(f"POST {self.path}")
                if self.headers.get("authorization") != f"Bearer {TOKEN}":
                    return self._send(401, {"error": "Invalid credentials in Authorization header"})
                path = self.path.split("?")[0]
                if path == "/api/repos/create":
                    req = json.loads(body)
                    repo = f"{req.get('organization')}/{req['name']}" if req.get("organization") else req["name"]
                    key = f"{req.get('type') or 'model'}:{repo}"
                    hub.repos[key] = {"private": req.get("visibility") == "private" or bool(req.get("private"))}
                    hub.files.setdefault(key, {})
                    return self._send(200, {"url": f"http://{self.headers['host']}/{repo}"})
                if path == "/api/validate-yaml":
                    content = json.loads(body)["content"]
                    try:
                        yaml.safe_load(content.split("---")[1])
                    except yaml.YAMLError as exc:
                        return self._send(400, {"errors": [{"message": str(exc)}]})
                    return self._send(200, {"errors": [], "warnings": []})
                parts = path.strip("/").split("/")  # api, <type>s, owner, name, preupload|commit, revision
                if len(parts) == 6 and parts[0] == "api" and parts[4] in ("preupload", "commit"):
                    key = f"{parts[1][:-1]}:{parts[2]}/{parts[3]}"
                    if key not in hub.repos:
                        return self._send(404, {"error": "Repository not found"})
                    if parts[4] == "preupload":
                        files = json.loads(body)["files"]
                        return self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                           "shouldIgnore": False} for f in files]})
                    for line in body.decode().splitlines():
                        item = json.loads(line)
                        if item["key"] == "file":
                            value = item["value"]
                            hub.files[key][value["path"]] = base64.b64decode(value["content"])
                    return self._send(200, {"commitUrl": f"http://{self.headers['host']}/{parts[2]}/{parts[3]}"
                                                         "/commit/0123abcd", "commitOid": "0123abcd",
                                            "pullRequestUrl": None})
                return self._send(404, {"error": f"not implemented here: {path}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
