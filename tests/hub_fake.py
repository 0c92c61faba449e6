"""A local fake of the Hugging Face Hub: what huggingface_hub 2.x calls to look up, size,
download and upload a model repository, served by http.server on a free localhost port.

Point ``HF_ENDPOINT`` at :attr:`FakeHub.endpoint`. Served:

* ``GET /api/models/ORG/NAME[/revision/REV][?blobs=true]`` -- model info (sha, siblings, LFS sha256)
* ``GET /api/models/ORG/NAME/tree/REV?recursive=...`` -- the file tree (oid, size, lfs)
* ``HEAD|GET /ORG/NAME/resolve/REV/PATH`` -- small files: 200 with ETag (git blob sha1);
  LFS files: 302 to ``/lfs/SHA256`` on another host name (``localhost`` vs ``127.0.0.1``, as
  a CDN is) with ``X-Linked-Etag`` / ``X-Linked-Size``; both carry ``X-Repo-Commit``
* ``GET /lfs/SHA256`` -- the LFS object, with ``Range`` (206) for resumed downloads
* ``POST /api/repos/create``, ``/api/validate-yaml``, ``/api/models/ORG/NAME/preupload/REV``,
  ``/api/models/ORG/NAME/commit/REV`` -- enough for ``upload_folder`` (all files "regular")

Never advertised: Xet (no ``X-Xet-Hash`` header, no ``xetHash`` in trees), so downloads go
through plain HTTP. ``drop_once`` makes the first GET of a file close the connection half
way, to exercise resumption.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pkl")


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def is_lfs(path: str, data: bytes) -> bool:
    return path.endswith(LFS_SUFFIXES) or len(data) > 10_000


class FakeHub:
    def __init__(self):
        self.repos: dict[str, dict] = {}          # repo -> {"refs": {branch: commit}, "commits": {c: {path: bytes}}}
        self.lfs: dict[str, bytes] = {}           # sha256 -> content
        self.lfs_names: dict[str, str] = {}       # sha256 -> a path it was committed under
        self.drop_once: set[str] = set()          # repo paths whose first GET is cut short
        self.log: list[tuple[str, str, str | None]] = []    # (method, path, Range header)
        self.tokens_seen: list[str] = []
        self._lock = threading.Lock()
        self._server = None

    # -- content -------------------------------------------------------------------------------
    def commit(self, repo: str, files: dict[str, bytes], branch: str = "main") -> str:
        r = self.repos.setdefault(repo, {"refs": {}, "commits": {}})
        parent = r["refs"].get(branch, "")
        tree = dict(r["commits"].get(parent, {})) if parent else {}
        tree.update(files)
        h = hashlib.sha1(parent.encode())
        for p in sorted(tree):
            h.update(p.encode() + b"\0" + hashlib.sha256(tree[p]).digest())
        c = h.hexdigest()
        r["commits"][c] = tree
        r["refs"][branch] = c
        for p, data in tree.items():
            if is_lfs(p, data):
                self.lfs[hashlib.sha256(data).hexdigest()] = data
                self.lfs_names[hashlib.sha256(data).hexdigest()] = p
        return c

    def _tree(self, repo: str, rev: str) -> tuple[str, dict] | None:
        r = self.repos.get(repo)
        if r is None:
            return None
        c = r["refs"].get(rev, rev)
        return (c, r["commits"][c]) if c in r["commits"] else ("", {})

    # -- server --------------------------------------------------------------------------------
    def start(self) -> "FakeHub":
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_HEAD(self):
                hub._serve(self, "HEAD")

            def do_GET(self):
                hub._serve(self, "GET")

            def do_POST(self):
                hub._post(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self, method: str | None = None, contains: str = "") -> list[tuple[str, str, str | None]]:
        with self._lock:
            return [e for e in self.log if (method is None or e[0] == method) and contains in e[1]]

    # -- handlers ------------------------------------------------------------------------------
    @staticmethod
    def _send(h, code: int, body: bytes = b"", headers: dict | None = None, head: bool = False,
              ctype: str = "application/json"):
        h.send_response(code)
        h.send_header("Content-Type", ctype)
        headers = dict(headers or {})
        h.send_header("Content-Length", headers.pop("Content-Length", str(len(body))))
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        if not head:
            h.wfile.write(body)

    def _error(self, h, code: int, err: str, head: bool = False, extra: dict | None = None):
        self._send(h, code, json.dumps({"error": err}).encode(), {"X-Error-Code": err, **(extra or {})}, head)

    def _serve(self, h, method: str):
        u = urlsplit(h.path)
        path = unquote(u.path)
        with self._lock:
            self.log.append((method, h.path, h.headers.get("Range")))
        auth = h.headers.get("Authorization")
        if auth:
            with self._lock:
                self.tokens_seen.append(auth)
        parts = [unquote(p) for p in u.path.strip("/").split("/")]
        head = method == "HEAD"
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo = f"{parts[2]}/{parts[3]}"
            rest = parts[4:]
            if rest and rest[0] == "tree":
                return self._tree_listing(h, repo, rest[1] if len(rest) > 1 else "main")
            rev = rest[1] if rest[:1] == ["revision"] and len(rest) > 1 else "main"
            return self._model_info(h, repo, rev, "blobs" in parse_qs(u.query))
        if parts[:1] == ["lfs"] and len(parts) == 2:
            data = self.lfs.get(parts[1])
            if data is None:
                return self._send(h, 404, b"", head=head)
            return self._body(h, data, head, key=self.lfs_names.get(parts[1], ""))
        if len(parts) >= 5 and parts[2] == "resolve":
            repo, rev, fpath = f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:])
            got = self._tree(repo, rev)
            if got is None:
                return self._error(h, 401 if head else 404, "RepoNotFound", head)
            commit, tree = got
            if not commit:
                return self._error(h, 404, "RevisionNotFound", head)
            if fpath not in tree:
                return self._error(h, 404, "EntryNotFound", head, {"X-Repo-Commit": commit})
            data = tree[fpath]
            base = {"X-Repo-Commit": commit}
            if is_lfs(fpath, data):
                sha = hashlib.sha256(data).hexdigest()
                loc = f"http://localhost:{self.port}/lfs/{sha}"
                return self._send(h, 302, b"", {**base, "Location": loc, "ETag": f'"{git_sha1(data)}"',
                                                "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data))},
                                  head=True)
            return self._body(h, data, head, {**base, "ETag": f'"{git_sha1(data)}"'}, key=f"{repo}/{fpath}")
        return self._send(h, 404, b"{}", head=head)

    def _body(self, h, data: bytes, head: bool, headers: dict | None = None, key: str = ""):
        headers = dict(headers or {})
        rng = h.headers.get("Range")
        start = 0
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
        if head:
            return self._send(h, 200, b"", {**headers, "Content-Length": str(len(data))}, head=True,
                              ctype="application/octet-stream")
        body = data[start:]
        h.send_response(206 if start else 200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Accept-Ranges", "bytes")
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        drop = False
        with self._lock:
            for name in list(self.drop_once):
                if key == name or key.endswith("/" + name):
                    self.drop_once.discard(name)
                    drop = True
        if drop:
            # Half the body, then the connection goes away: the client sees a truncated response.
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            h.close_connection = True
            import socket
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        h.wfile.write(body)

    def _siblings(self, tree: dict, blobs: bool) -> list[dict]:
        out = []
        for p in sorted(tree):
            d = tree[p]
            s = {"rfilename": p}
            if blobs:
                s.update(size=len(d), blobId=git_sha1(d))
                if is_lfs(p, d):
                    s["lfs"] = {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d), "pointerSize": 134}
            out.append(s)
        return out

    def _model_info(self, h, repo: str, rev: str, blobs: bool):
        got = self._tree(repo, rev)
        if got is None:
            return self._error(h, 401, "RepoNotFound")
        commit, tree = got
        if not commit:
            return self._error(h, 404, "RevisionNotFound")
        body = {"id": repo, "modelId": repo, "sha": commit, "private": False, "tags": [],
                "siblings": self._siblings(tree, blobs), "lastModified": "2026-12-01T00:00:00.000Z"}
        self._send(h, 200, json.dumps(body).encode())

    def _tree_listing(self, h, repo: str, rev: str):
        got = self._tree(repo, rev)
        if got is None:
            return self._error(h, 401, "RepoNotFound")
        commit, tree = got
        if not commit:
            return self._error(h, 404, "RevisionNotFound")
        items, dirs = [], set()
        for p in sorted(tree):
            d = tree[p]
            parts = p.split("/")
            for i in range(1, len(parts)):
                dirs.add("/".join(parts[:i]))
            e = {"type": "file", "path": p, "size": len(d), "oid": git_sha1(d)}
            if is_lfs(p, d):
                e["lfs"] = {"oid": hashlib.sha256(d).hexdigest(), "size": len(d), "pointerSize": 134}
            items.append(e)
        items += [{"type": "directory", "path": d, "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0}
                  for d in sorted(dirs)]
        self._send(h, 200, json.dumps(items).encode())

    def _post(self, h):
        u = urlsplit(h.path)
        parts = [unquote(p) for p in u.path.strip("/").split("/")]
        n = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(n) if n else b""
        with self._lock:
            self.log.append(("POST", h.path, None))
        auth = h.headers.get("Authorization")
        if auth:
            with self._lock:
                self.tokens_seen.append(auth)
        if not auth:
            return self._send(h, 401, json.dumps({"error": "Invalid username or password."}).encode())
        if parts[:3] == ["api", "repos", "create"]:
            body = json.loads(raw or b"{}")
            repo = f"{body.get('organization') or 'user'}/{body['name']}" if "/" not in body["name"] else body["name"]
            exists = repo in self.repos
            self.repos.setdefault(repo, {"refs": {}, "commits": {}})
            if exists:
                return self._send(h, 409, json.dumps({"error": "You already created this model repo",
                                                      "url": f"{self.endpoint}/{repo}"}).encode())
            return self._send(h, 200, json.dumps({"url": f"{self.endpoint}/{repo}", "name": repo}).encode())
        if parts[:2] == ["api", "validate-yaml"]:
            return self._send(h, 200, json.dumps({"errors": [], "warnings": []}).encode())
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] in ("preupload", "commit"):
            repo = f"{parts[2]}/{parts[3]}"
            if repo not in self.repos:
                return self._error(h, 404, "RepoNotFound")
            if parts[4] == "preupload":
                files = json.loads(raw)["files"]
                return self._send(h, 200, json.dumps({"files": [
                    {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                    for f in files]}).encode())
            files = {}
            for line in raw.splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            c = self.commit(repo, files, parts[5])
            return self._send(h, 200, json.dumps({"commitUrl": f"{self.endpoint}/{repo}/commit/{c}",
                                                  "commitOid": c, "pullRequestUrl": None}).encode())
        return self._send(h, 404, b"{}")


# -- helpers for the test_hub_* modules ----------------------------------------------------------

import os as _os
import subprocess as _sp
import sys as _sys
from pathlib import Path as _Path

DEFAULT_MODEL = _Path(__file__).resolve().parent.parent / "engine" / "default_model"


def native_files(readme: bytes = b"# netdiff test model\n") -> dict[str, bytes]:
    """The shipped default checkpoint as the files of a Hub repository."""
    return {"config.json": (DEFAULT_MODEL / "config.json").read_bytes(),
            "model.safetensors": (DEFAULT_MODEL / "model.safetensors").read_bytes(), "README.md": readme}


def hub_env(home: _Path, endpoint: str | None, **extra) -> dict:
    """Environment of a netdiff subprocess: its own HF_HOME (the cache), netdiff's data and config dirs
    under ``home``, the fake Hub as HF_ENDPOINT; no token unless given."""
    env = {k: v for k, v in _os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(HF_HOME=str(home / "hf"), XDG_DATA_HOME=str(home / "data"), XDG_CONFIG_HOME=str(home / "config"),
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_UPDATE_CHECK="1", NO_COLOR="1")
    env["HF_ENDPOINT"] = endpoint or "http://127.0.0.1:9"      # port 9 (discard): nothing listens
    env.update({k: str(v) for k, v in extra.items()})
    return env


def netdiff(*args, env: dict, cwd=None, timeout: float = 120) -> _sp.CompletedProcess:
    """Run the real ``netdiff`` command line (huggingface_hub reads HF_* at import: a fresh process)."""
    return _sp.run([_sys.executable, "-m", "netdiff_tui", *map(str, args)], env=env, cwd=cwd, capture_output=True,
                   text=True, timeout=timeout)


def one_line_error(r: _sp.CompletedProcess, code: int = 2) -> str:
    """The command failed with ``code`` and said so in exactly one line, with no traceback."""
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    errs = [ln for ln in lines if ln.startswith("netdiff: error:")]
    assert len(errs) == 1, r.stderr
    return errs[0]
