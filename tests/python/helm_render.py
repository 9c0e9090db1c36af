"""Render and lint the Helm chart with helm-sdkpy, which has no `helm template`.

helm-sdkpy exposes lint, install and upgrade but no client-only dry run. To see
the manifests a real install would send, `render()` runs helm-sdkpy's Install
against a tiny in-process fake Kubernetes API server on 127.0.0.1 (discovery
for the handful of kinds the chart uses, every create accepted) with the
release stored in memory (HELM_DRIVER=memory), and returns the manifest helm
reports for the release. Nothing leaves the loopback interface.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

KUBE_VERSION = ("1", "30")

# (plural, kind, namespaced) per group/version the chart may use.
_CORE = [
    ("configmaps", "ConfigMap", True),
    ("secrets", "Secret", True),
    ("services", "Service", True),
    ("serviceaccounts", "ServiceAccount", True),
    ("pods", "Pod", True),
    ("namespaces", "Namespace", False),
]
_GROUPS = {
    ("apps", "v1"): [("deployments", "Deployment", True)],
    ("policy", "v1"): [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    ("autoscaling", "v2"): [("horizontalpodautoscalers", "HorizontalPodAutoscaler", True)],
    ("networking.k8s.io", "v1"): [("networkpolicies", "NetworkPolicy", True), ("ingresses", "Ingress", True)],
}


def _resource_list(group_version: str, resources: list[tuple[str, str, bool]]) -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": [
            {
                "name": plural,
                "singularName": kind.lower(),
                "namespaced": namespaced,
                "kind": kind,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            }
            for plural, kind, namespaced in resources
        ],
    }


class _FakeApi(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    store: dict[str, Any] = {}
    lock = threading.Lock()

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _not_found(self) -> None:
        self._send(
            404,
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
             "reason": "NotFound", "code": 404, "message": "not found"},
        )

    def _body(self) -> dict[str, Any] | None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            return json.loads(raw)
        except ValueError:
            return None

    def do_GET(self) -> None:  # noqa: N802
        path = urlparse(self.path).path
        if path == "/version":
            major, minor = KUBE_VERSION
            return self._send(200, {"major": major, "minor": minor, "gitVersion": f"v{major}.{minor}.0",
                                    "platform": "linux/amd64"})
        if path == "/api":
            return self._send(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})
        if path == "/apis":
            groups: dict[str, list[str]] = {}
            for group, version in _GROUPS:
                groups.setdefault(group, []).append(version)
            return self._send(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": group,
                 "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
                 "preferredVersion": {"groupVersion": f"{group}/{versions[0]}", "version": versions[0]}}
                for group, versions in groups.items()]})
        if path == "/api/v1":
            return self._send(200, _resource_list("v1", _CORE))
        match = re.fullmatch(r"/apis/([^/]+)/([^/]+)", path)
        if match and (match[1], match[2]) in _GROUPS:
            return self._send(200, _resource_list(f"{match[1]}/{match[2]}", _GROUPS[(match[1], match[2])]))
        with self.lock:
            if path in self.store:
                return self._send(200, self.store[path])
        if re.search(r"/namespaces/[^/]+/[a-z]+$", path):
            return self._send(200, {"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
                                    "items": []})
        return self._not_found()

    def do_POST(self) -> None:  # noqa: N802
        body = self._body() or {"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "unparsed"}}
        metadata = body.setdefault("metadata", {})
        metadata.setdefault("uid", str(uuid.uuid4()))
        metadata["resourceVersion"] = "1"
        metadata.setdefault("creationTimestamp", "2025-01-01T00:00:00Z")
        with self.lock:
            self.store[f"{urlparse(self.path).path}/{metadata.get('name', '')}"] = body
        self._send(201, body)

    def do_PUT(self) -> None:  # noqa: N802
        body = self._body() or {}
        with self.lock:
            self.store[urlparse(self.path).path] = body
        self._send(200, body)

    def do_PATCH(self) -> None:  # noqa: N802
        self._body()
        self._not_found()

    def do_DELETE(self) -> None:  # noqa: N802
        self._not_found()


@dataclass
class Rendered:
    manifest: str
    notes: str
    documents: list[dict[str, Any]] = field(default_factory=list)

    def find(self, kind: str, name: str | None = None) -> list[dict[str, Any]]:
        return [d for d in self.documents
                if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]

    def one(self, kind: str, name: str) -> dict[str, Any]:
        found = self.find(kind, name)
        assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
        return found[0]


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def render(chart_dir: Path, values: dict[str, Any] | None = None, release: str = "switchboard",
           namespace: str = "switchboard") -> Rendered:
    """Renders the chart as `helm install` would; raises helm's error on failure."""
    from helm_sdkpy import Configuration, Install

    os.environ["HELM_DRIVER"] = "memory"
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        kubeconfig = yaml.safe_dump({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
            "users": [{"name": "fake", "user": {"token": "fake"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}],
            "current-context": "fake",
        })
        config = Configuration(namespace=namespace, kubeconfig=kubeconfig)
        result = asyncio.run(Install(config).run(release, str(chart_dir), values=values or None, wait=False,
                                                 timeout=30))
    finally:
        server.shutdown()
        server.server_close()
        with _FakeApi.lock:
            _FakeApi.store.clear()
    manifest = result.get("manifest", "")
    documents = [d for d in yaml.safe_load_all(manifest) if d]
    return Rendered(manifest=manifest, notes=result.get("info", {}).get("notes", ""), documents=documents)


def lint(chart_dir: Path, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Lints the chart (with `values` merged over values.yaml); returns helm's messages.

    Helm's lint reads only the chart's own values.yaml, so other value sets are
    linted on a copy of the chart whose values.yaml has them merged in.
    """
    from helm_sdkpy import Configuration, Lint

    with tempfile.TemporaryDirectory() as tmp:
        target = chart_dir
        if values:
            target = Path(tmp) / chart_dir.name
            shutil.copytree(chart_dir, target)
            base = yaml.safe_load((chart_dir / "values.yaml").read_text()) or {}
            (target / "values.yaml").write_text(yaml.safe_dump(_deep_merge(base, values), sort_keys=False))
        result = asyncio.run(Lint(Configuration(namespace="default")).run(str(target)))
    return list(result.get("Messages") or [])
