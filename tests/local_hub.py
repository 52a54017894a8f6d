"""A small stand-in for the Hugging Face Hub HTTP API on 127.0.0.1, for offline tests of push and pull.

It keeps model repos in memory as a list of commits (each a full ``{path: bytes}`` snapshot) and serves the routes
``huggingface_hub`` uses: repo info (``/api/models/{repo}[/revision/{rev}]``), file resolution (HEAD/GET
``/{repo}/resolve/{rev}/{path}``), the file tree, ``/api/repos/create``, ``/api/validate-yaml``,
``/api/models/{repo}/preupload/{rev}`` (every file "regular", so contents travel base64 in the commit) and
``/api/models/{repo}/commit/{rev}`` (NDJSON).
Every request is logged (method, path, Authorization header) so tests can check exactly what went over the wire.
With ``tokens=`` it answers 401 to any request whose bearer token is not one of them (``/api/whoami-v2`` reports the
user), and with ``refuse_commits=True`` it answers 403 to every commit; ``point_hub_at`` aims ``huggingface_hub`` at
an endpoint (this stand-in, or one where nothing listens).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


class LocalHub:
    """In-memory repos served on ``http://127.0.0.1:<port>``; use as a context manager."""

    def __init__(self, tokens: set[str] | None = None, refuse_commits: bool = False):
        self.tokens, self.refuse_commits = tokens, refuse_commits
        self.created: dict[str, dict] = {}  # repo -> the JSON payload that created it (private, type, ...)
        self.repos: dict[str, list[tuple[str, dict[str, bytes]]]] = {}  # repo -> [(sha, files)], oldest first
        self.requests: list[tuple[str, str, str | None]] = []
        self.commits: list[tuple[str, list[str]]] = []  # (repo, paths added) per commit
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> LocalHub:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add_folder(self, repo: str, folder: str) -> str:
        """Commit every file under ``folder`` to ``repo`` (creating it); returns the commit sha."""
        import os

        files = {}
        for root, _, names in os.walk(folder):
            for name in names:
                full = os.path.join(root, name)
                with open(full, "rb") as f:
                    files[os.path.relpath(full, folder).replace(os.sep, "/")] = f.read()
        return self.commit(repo, files)

    def commit(self, repo: str, added: dict[str, bytes]) -> str:
        history = self.repos.setdefault(repo, [])
        files = {**(history[-1][1] if history else {}), **added}
        sha = hashlib.sha1(f"{repo}{len(history)}{sorted(files)}".encode()).hexdigest()
        history.append((sha, files))
        self.commits.append((repo, sorted(added)))
        return sha

    def snapshot(self, repo: str, revision: str = "main") -> tuple[str, dict[str, bytes]] | None:
        for sha, files in reversed(self.repos.get(repo, [])):
            if revision in ("main", sha):
                return sha, files
        return None


def _handler_for(hub: LocalHub):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def _send(self, code: int, body: bytes = b"", headers: dict | None = None, head: bool = False):
            self.send_response(code)
            for k, v in {"Content-Length": str(len(body)), **(headers or {})}.items():
                self.send_header(k, v)
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _json(self, code: int, obj, head: bool = False):
            self._send(code, json.dumps(obj).encode(), {"Content-Type": "application/json"}, head)

        def _refused(self, head: bool = False) -> bool:
            auth = self.headers.get("Authorization") or ""
            if hub.tokens is None or auth.removeprefix("Bearer ") in hub.tokens:
                return False
            self._json(401, {"error": "Invalid credentials in Authorization header"}, head)
            return True

        def _route(self, head: bool = False):
            path = unquote(urlsplit(self.path).path)
            hub.requests.append((self.command, path, self.headers.get("Authorization")))
            if self._refused(head):
                return
            parts = path.strip("/").split("/")
            if path == "/api/whoami-v2":
                return self._json(200, {"type": "user", "name": "alice", "orgs": []}, head)
            if parts[:2] == ["api", "models"]:
                return self._repo_info(parts[2:], head)
            if len(parts) >= 5 and parts[2] == "resolve":
                return self._resolve("/".join(parts[:2]), parts[3], "/".join(parts[4:]), head)
            self._json(404, {"error": f"no route {path}"}, head)

        def _repo_info(self, rest, head):
            if len(rest) >= 4 and rest[2] == "tree":
                return self._tree("/".join(rest[:2]), rest[3], "/".join(rest[4:]), head)
            repo, revision = "/".join(rest[:2]), rest[3] if len(rest) >= 4 and rest[2] == "revision" else "main"
            found = hub.snapshot(repo, revision)
            if found is None:
                return self._json(404, {"error": "Repository not found"}, head)
            sha, files = found
            self._json(200, {"id": repo, "modelId": repo, "sha": sha, "private": False,
                             "siblings": [{"rfilename": p} for p in sorted(files)]}, head)

        def _tree(self, repo, revision, prefix, head):
            found = hub.snapshot(repo, revision)
            if found is None:
                return self._json(404, {"error": "Repository not found"}, head)
            items = [{"type": "file", "path": p, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                     for p, b in sorted(found[1].items()) if p.startswith(prefix)]
            self._json(200, items, head)

        def _resolve(self, repo, revision, filename, head):
            found = hub.snapshot(repo, revision)
            if found is None or filename not in found[1]:
                code = "RepoNotFound" if found is None else "EntryNotFound"
                return self._send(404, b"", {"X-Error-Code": code}, head)
            sha, files = found
            body = files[filename]
            etag = hashlib.sha256(body).hexdigest()
            self._send(200, body, {"X-Repo-Commit": sha, "ETag": f'"{etag}"'}, head)

        def do_HEAD(self):
            self._route(head=True)

        def do_GET(self):
            self._route()

        def do_POST(self):
            path = unquote(urlsplit(self.path).path)
            hub.requests.append(("POST", path, self.headers.get("Authorization")))
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            parts = path.strip("/").split("/")
            if self._refused():
                return
            if path == "/api/repos/create":
                payload = json.loads(body)
                repo = f"{payload['organization']}/{payload['name']}"
                if repo in hub.repos:
                    return self._json(409, {"error": "You already created this model repo",
                                            "url": f"{hub.endpoint}/{repo}"})
                hub.repos[repo] = []
                hub.created[repo] = payload
                return self._json(200, {"url": f"{hub.endpoint}/{repo}"})
            if path == "/api/validate-yaml":
                return self._json(200, {"errors": [], "warnings": []})
            if parts[:2] == ["api", "models"] and parts[4] == "preupload":
                files = json.loads(body)["files"]
                return self._json(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                  for f in files]})
            if parts[:2] == ["api", "models"] and parts[4] == "commit":
                repo = "/".join(parts[2:4])
                if hub.refuse_commits:
                    return self._json(403, {"error": "You don't have the rights to commit to this repo"})
                added = {}
                for line in body.splitlines():
                    item = json.loads(line)
                    if item["key"] == "file":
                        added[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                sha = hub.commit(repo, added)
                return self._json(200, {"commitUrl": f"{hub.endpoint}/{repo}/commit/{sha}", "commitOid": sha})
            self._json(404, {"error": f"no route {path}"})

    return Handler


def point_hub_at(monkeypatch, endpoint: str, cache: str) -> None:
    """Aim ``huggingface_hub`` (module constants, its default ``HfApi``, ``HF_ENDPOINT`` for subprocesses) at
    ``endpoint``, with a private cache and online mode."""
    from huggingface_hub import constants, hf_api

    monkeypatch.setattr(hf_api.api, "endpoint", endpoint)  # the module-level HfApi behind model_info(...)
    monkeypatch.setattr(constants, "HF_URL_HOSTS", constants.HF_URL_HOSTS | {"127.0.0.1"})
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", cache)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def unreachable_endpoint() -> str:
    """A URL on 127.0.0.1 where nothing listens (a port just bound and released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"
