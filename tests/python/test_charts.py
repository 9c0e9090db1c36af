"""Deployment artefacts: the Helm chart, the plain Kubernetes examples, docker-compose.

- The chart is linted with helm-sdkpy (severity 3 = error fails) for several
  value sets, and rendered (see helm_render.py) so every manifest is checked
  against the Kubernetes schemas (kubernetes-validate, strict) and against what
  the services need (args, probes, security, config).
- deploy/k8s/*.yaml are validated the same way.
- docker-compose.yml is checked with `docker-compose config -q`.
- Every form exposes each service's HTTP server (/metrics, /healthz, /readyz)
  on 9090 inside the pod or container; the chart can add ServiceMonitors.
- The chart's optional public access (an Ingress pair, or a Gateway API
  GRPCRoute and HTTPRoute) routes exactly the gRPC services each service's
  code mounts, serves the webhooks and web chat but not /metrics, never falls
  back to plaintext unless told to, and is let through the NetworkPolicies.
- Every switchboard.toml we ship or render is fed to `switchboard routing --print-config`
  when the binary is there, so the files cannot drift from the config schema.
- TLS (tls.*, and the backends' CA Secrets and Kafka SASL): the Secret is
  mounted as a directory, the service URLs are https:// at names the
  certificate carries, the probes and scrapes use HTTPS, the binary accepts
  the rendered [tls], and each half-configured combination is refused at
  install as the binary would refuse it at start.

Run: .test-env/venv/bin/python -m pytest -q tests/python/test_charts.py
(scripts/check-charts.sh does that after making sure the venv exists).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as kv_utils
from packaging.version import Version

import helm_render
from helm_render import Rendered, lint, render

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "switchboard"
K8S_DIR = ROOT / "deploy" / "k8s"
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_TOML = ROOT / "deploy" / "switchboard.compose.toml"
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# The HTTP port (/metrics, /healthz, /readyz) of every service in the chart's
# defaults and in deploy/k8s; compose publishes it on the host as 5006x.
METRICS_PORT = 9090
COMPOSE_METRICS_HOST_PORTS = {"ingestion": 50061, "routing": 50062, "presence": 50063, "crm": 50064, "kpi": 50065}

SERVICES = {
    "ingestion": "switchboard.ingestion.v1.IngestionService",
    "routing": "switchboard.routing.v1.RoutingService",
    "presence": "switchboard.presence.v1.PresenceService",
    "crm": "switchboard.crm.v1.CrmService",
    "kpi": "switchboard.kpi.v1.KpiService",
}

# Top-level tables of switchboard.toml and their keys (crates/platform/src/config/).
CONFIG_SCHEMA: dict[str, set[str]] = {
    "telemetry": {"log_format", "log_filter", "otlp_endpoint", "otlp_ca_file"},
    "grpc": {"max_message_bytes", "request_timeout_ms", "concurrency_limit"},
    "kafka": {"brokers", "partitions", "replication_factor", "group_prefix", "topic_prefix", "security_protocol",
              "sasl_mechanism", "sasl_username", "ssl_ca_location", "properties", "interactive_fetch_wait_ms", "hints"},
    "redis": {"url", "pool", "ca_file"},
    "postgres": {"url", "pool_size", "ca_file"},
    "tls": {"cert_file", "key_file", "ca_file", "client_auth", "reload_interval_secs"},
    "auth": {"tenants", "api_keys"},
    "services": set(SERVICES),
    "routing": {"offer_sweep_interval_ms", "relay_interval_ms"},
    "presence": {"session_grace_ms", "missed_offers_threshold"},
    "ingestion": {"public_base_url", "allow_private_destinations"},
}


def _sha(key: str) -> str:
    import hashlib

    return hashlib.sha256(key.encode()).hexdigest()


FULL_VALUES: dict[str, Any] = {
    "image": {"repository": "registry.example/switchboard", "tag": "1.2.3"},
    "config": {
        "telemetry": {"otlpEndpoint": "http://otel-collector.observability:4317"},
        "kafka": {"brokers": "kafka-0.kafka:9092,kafka-1.kafka:9092", "topicPrefix": "prod.",
                  "interactiveFetchWaitMs": 100, "hints": False},
        "ingestion": {"publicBaseUrl": "https://switchboard.example.com"},
    },
    "postgres": {"existingSecret": "pg-credentials", "existingSecretKey": "dsn"},
    "redis": {"existingSecret": "redis-credentials"},
    "auth": {
        "tenants": ["acme", "globex"],
        "apiKeys": [
            {"name": "ops", "sha256": _sha("ops-key"), "role": "operator_admin"},
            {"name": "acme-admin", "sha256": _sha("acme-key"), "role": "tenant_admin", "tenant": "acme"},
            {"name": "globex-reader", "sha256": _sha("globex-key"), "role": "tenant_reader", "tenant": "globex"},
            {"name": "alice", "sha256": _sha("alice-key"), "role": "agent", "agent": "alice"},
        ],
    },
    "extraEnv": [{"name": "RUST_LOG", "value": "info,switchboard=debug"}],
    "podAnnotations": {"example.com/team": "contact-center"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "switchboard", "effect": "NoSchedule"}],
    "serviceAccount": {"annotations": {"example.com/role": "switchboard"}},
    "services": {
        name: {
            "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6},
            "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        }
        for name in SERVICES
    }
    | {"kpi": {"autoscaling": {"enabled": False}, "pdb": {"minAvailable": 1}, "replicas": 3}},
}

SERVICE_MONITOR_VALUES: dict[str, Any] = {
    "metrics": {"serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prometheus"}}},
}

INGRESS_CONTROLLER = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
                      "podSelector": {"matchLabels": {"app.kubernetes.io/name": "ingress-nginx"}}}
MONITORING = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
API_CLIENTS = {"namespaceSelector": {"matchLabels": {"team": "contact-center"}}}

# Two hosts, each covered by its own TLS entry (one a wildcard certificate),
# and NetworkPolicies that let only known peers in.
INGRESS_VALUES: dict[str, Any] = {
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
        "hosts": ["switchboard.example.com", "cc.example.org"],
        "tls": [{"secretName": "switchboard-tls", "hosts": ["switchboard.example.com"]},
                {"secretName": "example-org-wildcard", "hosts": ["*.example.org"]}],
    },
    "networkPolicy": {"grpcFrom": [API_CLIENTS], "metricsFrom": [MONITORING], "ingressFrom": [INGRESS_CONTROLLER]},
}

GATEWAY = {"name": "public", "namespace": "gateway-system", "sectionName": "https"}
GATEWAY_VALUES: dict[str, Any] = {
    "gatewayApi": {
        "grpcRoute": {"enabled": True, "parentRefs": [GATEWAY], "hostnames": ["api.switchboard.example.com"]},
        "httpRoute": {"enabled": True, "parentRefs": [GATEWAY], "hostnames": ["hooks.switchboard.example.com"]},
    },
}


# ----------------------------------------------------------------- helpers ---


def _k8s_versions() -> list[str]:
    """The oldest schema set at or above the chart's minimum (1.27) and the newest."""
    versions = sorted(kv_utils.all_versions(), key=Version)
    supported = [v for v in versions if Version(v) >= Version("1.27")] or versions
    return sorted({supported[0], supported[-1]}, key=Version)


# Custom resources kubernetes-validate has no schema for: _validate_k8s leaves
# them out (and returns them) so each can be checked structurally instead.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("gateway.networking.k8s.io/v1", "GRPCRoute"),
                ("gateway.networking.k8s.io/v1", "HTTPRoute"), ("cert-manager.io/v1", "Certificate")}


def _validate_k8s(documents: list[dict[str, Any]], origin: str) -> list[dict[str, Any]]:
    """Validates every document strictly except CUSTOM_KINDS, which it returns."""
    errors = []
    skipped = []
    for document in documents:
        if (document.get("apiVersion"), document.get("kind")) in CUSTOM_KINDS:
            skipped.append(document)
            continue
        for version in _k8s_versions():
            try:
                kubernetes_validate.validate(document, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                path = ".".join(str(part) for part in error.path)
                errors.append(f"{origin}: {document['kind']}/{document['metadata']['name']} (k8s {version}): "
                              f"{path}: {error.message}")
            except kv_utils.SchemaNotFoundError as error:
                errors.append(f"{origin}: {error.message}")
    assert not errors, "\n".join(errors)
    return skipped


def _switchboard_bin() -> Path | None:
    explicit = os.environ.get("SWITCHBOARD_BIN")
    path = Path(explicit) if explicit else ROOT / "target" / "debug" / "switchboard"
    if not path.is_absolute() and not path.exists():
        path = ROOT / path
    if path.exists():
        return path
    if explicit:
        pytest.fail(f"SWITCHBOARD_BIN={explicit} does not exist (build it: cargo build --bin switchboard)")
    return None


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without SWITCHBOARD_* (they would be read as config keys)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update(extra)
    return env


def _check_with_binary(toml_text: str, tmp_path: Path, **env: str) -> dict[str, Any]:
    """`switchboard routing --print-config` must accept the file (schema and validation);
    returns the effective configuration it printed."""
    binary = _switchboard_bin()
    if binary is None:
        if CI:
            pytest.fail("target/debug/switchboard is missing: build it before the chart checks")
        pytest.skip("no switchboard binary built yet (cargo build --bin switchboard)")
    config = tmp_path / "switchboard.toml"
    config.write_text(toml_text)
    # Any service subcommand: with --print-config it only loads, validates and prints.
    result = subprocess.run([str(binary), "routing", "--print-config", "--config", str(config)], env=_clean_env(**env),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"switchboard rejected the config:\n{result.stderr}\n--- file ---\n{toml_text}"
    printed = tomllib.loads(result.stdout)
    assert printed["auth"]["api_keys"] == tomllib.loads(toml_text).get("auth", {}).get("api_keys", [])
    return printed


def _binary_refusal(toml_text: str, tmp_path: Path, **env: str) -> str:
    """`switchboard routing --print-config` must refuse the configuration; returns its error."""
    binary = _switchboard_bin()
    if binary is None:
        if CI:
            pytest.fail("target/debug/switchboard is missing: build it before the chart checks")
        pytest.skip("no switchboard binary built yet (cargo build --bin switchboard)")
    config = tmp_path / "refused.toml"
    config.write_text(toml_text)
    result = subprocess.run([str(binary), "routing", "--print-config", "--config", str(config)], env=_clean_env(**env),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0, f"switchboard accepted what it must refuse ({env}):\n{result.stdout}"
    return result.stderr


def _check_toml_keys(config: dict[str, Any], origin: str) -> None:
    unknown = [f"[{table}]" for table in config if table not in CONFIG_SCHEMA]
    for table, keys in CONFIG_SCHEMA.items():
        if isinstance(config.get(table), dict):
            unknown += [f"{table}.{key}" for key in config[table] if key not in keys]
    for name, endpoint in config.get("services", {}).items():
        unknown += [f"services.{name}.{key}" for key in endpoint if key not in ("listen", "url", "http_listen")]
    assert not unknown, f"{origin}: keys the config schema does not know: {unknown}"


def _pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    return deployment["spec"]["template"]["metadata"]["labels"]


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def _check_metrics_exposed(deployment: dict[str, Any], svc: dict[str, Any], port: int = METRICS_PORT) -> None:
    """The container's HTTP port "http-metrics" and its Service's port "metrics" in front of it."""
    name = deployment["metadata"]["name"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    by_name = {p["name"]: p for p in container["ports"]}
    assert by_name.get("http-metrics") == {"name": "http-metrics", "containerPort": port, "protocol": "TCP"}, \
        f"{name}: container ports {container['ports']}"
    assert by_name["grpc"]["containerPort"] != port, f"{name}: gRPC and HTTP need their own ports"
    service_ports = {p["name"]: p for p in svc["spec"]["ports"]}
    metrics = service_ports.get("metrics")
    assert metrics is not None, f"Service {svc['metadata']['name']} has no port named metrics"
    assert metrics["port"] == port and metrics["targetPort"] == "http-metrics", metrics
    assert metrics.get("protocol", "TCP") == "TCP", metrics
    assert service_ports["grpc"]["targetPort"] == "grpc", "the gRPC Service port must stay as it was"


def _check_http_listen(config: dict[str, Any], origin: str, port: int = METRICS_PORT) -> None:
    """Every service's HTTP server listens on all interfaces on `port` (not the 127.0.0.1 default)."""
    for service in SERVICES:
        endpoint = config["services"][service]
        assert endpoint.get("http_listen") == f"0.0.0.0:{port}", f"{origin}: services.{service} = {endpoint}"
        assert not endpoint["listen"].endswith(f":{port}"), f"{origin}: {service}'s gRPC and HTTP share a port"


_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def _seconds(duration: str) -> float:
    assert _DURATION.match(duration), f"{duration!r} is not a Prometheus duration"
    return sum(int(n) * _DURATION_UNITS[unit] for n, unit in re.findall(r"([0-9]+)(ms|s|m|h|d|w|y)", duration))


# The ServiceMonitor fields the chart may use (monitoring.coreos.com/v1), so a
# typo fails here as kubernetes-validate --strict would fail it for a built-in kind.
_SERVICE_MONITOR_SPEC = {"selector", "namespaceSelector", "endpoints", "jobLabel", "targetLabels", "podTargetLabels",
                         "sampleLimit", "attachMetadata"}
_SERVICE_MONITOR_ENDPOINT = {"port", "targetPort", "path", "scheme", "interval", "scrapeTimeout", "honorLabels",
                             "honorTimestamps", "relabelings", "metricRelabelings", "params", "tlsConfig"}
_SERVICE_MONITOR_TLS = {"ca", "cert", "keySecret", "serverName", "insecureSkipVerify", "caFile", "certFile", "keyFile"}


def _check_service_monitor(monitor: dict[str, Any]) -> None:
    """A structural check of a ServiceMonitor (kubernetes-validate has no schema for it)."""
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}, sorted(monitor)
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "ServiceMonitor")
    name = monitor["metadata"]["name"]
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", name), f"{name!r} is not a DNS label"
    labels = monitor["metadata"].get("labels", {})
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()), f"{name}: labels {labels}"
    spec = monitor["spec"]
    assert set(spec) <= _SERVICE_MONITOR_SPEC, f"{name}: unknown spec fields {sorted(set(spec) - _SERVICE_MONITOR_SPEC)}"
    selector = spec["selector"]
    assert set(selector) <= {"matchLabels", "matchExpressions"} and selector, f"{name}: selector {selector}"
    assert all(isinstance(v, str) for v in selector.get("matchLabels", {}).values()), f"{name}: {selector}"
    if "namespaceSelector" in spec:
        assert set(spec["namespaceSelector"]) <= {"any", "matchNames"}, f"{name}: {spec['namespaceSelector']}"
    assert spec["endpoints"], f"{name}: no endpoints"
    for endpoint in spec["endpoints"]:
        unknown = set(endpoint) - _SERVICE_MONITOR_ENDPOINT
        assert not unknown, f"{name}: unknown endpoint fields {sorted(unknown)}"
        assert ("port" in endpoint) != ("targetPort" in endpoint), f"{name}: an endpoint names one port"
        assert str(endpoint.get("path", "/metrics")).startswith("/"), endpoint
        assert endpoint.get("scheme", "http") in ("http", "https"), endpoint
        if "tlsConfig" in endpoint:
            tls = endpoint["tlsConfig"]
            assert set(tls) <= _SERVICE_MONITOR_TLS, f"{name}: unknown tlsConfig fields {sorted(set(tls) - _SERVICE_MONITOR_TLS)}"
            for field in ("ca", "cert"):
                if field in tls:
                    [(source, ref)] = tls[field].items()
                    assert source in ("secret", "configMap") and set(ref) == {"name", "key"}, f"{name}: {field} {tls[field]}"
        if "scrapeTimeout" in endpoint:
            # Prometheus rejects a scrape timeout longer than the interval.
            assert _seconds(endpoint["scrapeTimeout"]) <= _seconds(endpoint.get("interval", "30s")), endpoint


def _served_grpc_apis() -> dict[str, set[str]]:
    """The gRPC APIs each service mounts: the *Server types its lib.rs takes
    from switchboard_proto, as fully qualified names."""
    server = re.compile(r"switchboard_proto::(\w+)::v1::\w+_server::(\w+)Server\b")
    served = {}
    for service in SERVICES:
        text = (ROOT / "services" / service / "src" / "lib.rs").read_text()
        served[service] = {f"switchboard.{area}.v1.{name}" for area, name in server.findall(text)}
        assert SERVICES[service] in served[service], f"services/{service}/src/lib.rs: found only {served[service]}"
    return served


def _declared_grpc_apis() -> set[str]:
    """Every `service` the protos under proto/switchboard declare, fully qualified."""
    declared = set()
    for proto in sorted((ROOT / "proto" / "switchboard").glob("*/v1/*.proto")):
        text = proto.read_text()
        package = re.search(r"^package\s+([\w.]+);", text, re.MULTILINE)
        assert package, f"{proto}: no package"
        declared |= {f"{package[1]}.{name}" for name in re.findall(r"^service\s+(\w+)", text, re.MULTILINE)}
    return declared


def _tls_covers(host: str, tls: list[dict[str, Any]]) -> bool:
    """Whether a rendered Ingress's tls names `host`, exactly or by a one-label wildcard."""
    wildcard = "*." + host.split(".", 1)[1] if "." in host else None
    return any(host in entry.get("hosts", []) or wildcard in entry.get("hosts", []) for entry in tls)


def _prefix_matches(prefix: str, path: str) -> bool:
    """Ingress pathType Prefix and Gateway PathPrefix: element-wise, "/a" matches "/a" and "/a/b"."""
    prefix = prefix.rstrip("/")
    return prefix == "" or path == prefix or path.startswith(prefix + "/")


_HOSTNAME = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_PARENT_REF = {"group", "kind", "namespace", "name", "sectionName", "port"}
_BACKEND_REF = {"group", "kind", "name", "namespace", "port", "weight", "filters"}
# The service pattern GRPCRoute's CRD enforces on an Exact match.
_GRPC_SERVICE = re.compile(r"^\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$", re.IGNORECASE)


def _check_route(route: dict[str, Any], kind: str, rule_fields: set[str]) -> None:
    """What a Gateway API route (gateway.networking.k8s.io/v1) of the standard
    channel's CRDs accepts, for the fields the chart uses; kubernetes-validate
    has no schema for it."""
    assert set(route) == {"apiVersion", "kind", "metadata", "spec"}, sorted(route)
    assert (route["apiVersion"], route["kind"]) == ("gateway.networking.k8s.io/v1", kind)
    name = route["metadata"]["name"]
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", name), f"{name!r} is not a DNS label"
    spec = route["spec"]
    assert set(spec) <= {"parentRefs", "hostnames", "rules"}, f"{name}: spec fields {sorted(spec)}"
    assert 1 <= len(spec["parentRefs"]) <= 32, f"{name}: parentRefs {spec['parentRefs']}"
    for ref in spec["parentRefs"]:
        assert set(ref) <= _PARENT_REF and ref.get("name"), f"{name}: parentRef {ref}"
    hostnames = spec.get("hostnames", [])
    assert len(hostnames) <= 16 and all(_HOSTNAME.match(h) for h in hostnames), f"{name}: hostnames {hostnames}"
    assert 1 <= len(spec["rules"]) <= 16, f"{name}: {len(spec['rules'])} rules"
    assert sum(len(rule.get("matches", [])) for rule in spec["rules"]) <= 128, f"{name}: too many matches"
    for rule in spec["rules"]:
        assert set(rule) <= rule_fields, f"{name}: rule fields {sorted(rule)}"
        assert 1 <= len(rule["backendRefs"]) <= 16, f"{name}: backendRefs {rule.get('backendRefs')}"
        for backend in rule["backendRefs"]:
            assert set(backend) <= _BACKEND_REF, f"{name}: backendRef {backend}"
            # A Service backend needs its port, as a number.
            assert isinstance(backend["port"], int) and 1 <= backend["port"] <= 65535, f"{name}: {backend}"


def _check_grpc_route(route: dict[str, Any]) -> None:
    _check_route(route, "GRPCRoute", {"matches", "filters", "backendRefs"})
    for rule in route["spec"]["rules"]:
        assert 1 <= len(rule["matches"]) <= 8, f"a GRPCRoute rule takes at most 8 matches: {rule['matches']}"
        for match in rule["matches"]:
            assert set(match) <= {"method", "headers"}, match
            method = match["method"]
            assert set(method) <= {"type", "service", "method"}, method
            assert method.get("type", "Exact") in ("Exact", "RegularExpression"), method
            assert method.get("service") or method.get("method"), f"a method match needs service or method: {match}"
            if method.get("type", "Exact") == "Exact" and "service" in method:
                assert _GRPC_SERVICE.match(method["service"]), method


def _check_http_route(route: dict[str, Any]) -> None:
    _check_route(route, "HTTPRoute", {"matches", "filters", "backendRefs", "timeouts"})
    for rule in route["spec"]["rules"]:
        assert 1 <= len(rule["matches"]) <= 64, rule["matches"]
        for match in rule["matches"]:
            assert set(match) <= {"path", "headers", "queryParams", "method"}, match
            path = match["path"]
            assert path["type"] in ("Exact", "PathPrefix", "RegularExpression"), path
            assert path["value"].startswith("/"), path


def _check_deployment(deployment: dict[str, Any], service: str, port: int = 50051, tls: bool = False) -> None:
    """What every Switchboard Deployment must get right, chart or plain. With
    `tls`, the probes are HTTPS GETs of the HTTP server (the kubelet's gRPC
    probes cannot speak TLS)."""
    spec = deployment["spec"]["template"]["spec"]
    name = deployment["metadata"]["name"]
    assert spec.get("enableServiceLinks") is False, f"{name}: enableServiceLinks must be false"
    assert spec["securityContext"]["runAsNonRoot"] is True, name
    grace = spec["terminationGracePeriodSeconds"]
    assert grace >= 15, f"{name}: terminationGracePeriodSeconds {grace} leaves no time to drain"
    [container] = spec["containers"]
    assert container["args"] == [service, "--config", "/etc/switchboard/switchboard.toml"], name
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True, name
    assert security["allowPrivilegeEscalation"] is False, name
    assert security["capabilities"]["drop"] == ["ALL"], name
    assert any(p["containerPort"] == port and p["name"] == "grpc" for p in container["ports"]), name
    if tls:
        http_port = {p["name"]: p["containerPort"] for p in container["ports"]}["http-metrics"]
        for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            assert "grpc" not in container[probe], f"{name}: a gRPC {probe} cannot speak TLS"
            get = container[probe]["httpGet"]
            assert get["scheme"] == "HTTPS" and get["path"] == path, f"{name}: {probe} {get}"
            assert get["port"] in ("http-metrics", http_port), f"{name}: {probe} must ask the HTTP server: {get}"
    else:
        assert container["livenessProbe"]["grpc"]["port"] == port, name
        assert "service" not in container["livenessProbe"]["grpc"], f"{name}: liveness must ask for the server ('')"
        assert container["readinessProbe"]["grpc"] == {"port": port, "service": SERVICES[service]}, name
        assert container["startupProbe"]["grpc"]["port"] == port, name
    env = {e["name"]: e for e in container.get("env", [])}
    assert "secretKeyRef" in env["SWITCHBOARD_POSTGRES__URL"]["valueFrom"], f"{name}: postgres URL must come from a Secret"
    service_key = env["SWITCHBOARD_AUTH__SERVICE_KEY"]["valueFrom"]["secretKeyRef"]
    assert service_key["name"].endswith("-service-key"), f"{name}: the service key comes from a Secret"
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    if pre_stop:
        assert grace > int(pre_stop[-1]) + 10, f"{name}: grace period must cover preStop sleep plus the drain"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/etc/switchboard" in mounts and "/tmp" in mounts, name


# ------------------------------------------------------------------- chart ---


def test_chart_metadata():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == "0.1.0"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values["services"]) == set(SERVICES)
    assert {"repository", "tag", "pullPolicy"} <= set(values["image"])
    assert (CHART / "values.schema.json").exists()


@pytest.mark.parametrize("variant",
                         ["defaults", "full", "existing-auth-secret", "service-monitor", "ingress", "gateway-api",
                          "tls"])
def test_chart_lints_without_errors(variant):
    values = {"defaults": None, "full": FULL_VALUES, "existing-auth-secret": {"auth": {"existingSecret": "x"}},
              "service-monitor": SERVICE_MONITOR_VALUES, "ingress": INGRESS_VALUES,
              "gateway-api": GATEWAY_VALUES,
              "tls": CERT_MANAGER_VALUES | SERVICE_MONITOR_VALUES | INGRESS_VALUES | BACKEND_TLS_VALUES}[variant]
    messages = lint(CHART, values)
    errors = [m for m in messages if m.get("Severity", 0) >= 3]
    if errors:
        # helm-sdkpy serialises lint errors without their text; name the
        # templates that fail on their own to point at the culprit.
        culprits = _failing_templates(values)
        try:
            render(CHART, values)
            detail = "(rendering succeeds)"
        except Exception as error:  # helm's own message, with file and line
            detail = str(error)
        pytest.fail(f"helm lint ({variant}) reported {len(errors)} error(s) in {[m['Path'] for m in errors]}; "
                    f"templates failing alone: {culprits}; render: {detail}")


def _failing_templates(values: dict[str, Any] | None) -> list[str]:
    import tempfile

    failing = []
    templates = sorted(p.name for p in (CHART / "templates").iterdir() if not p.name.startswith("_"))
    for template in templates:
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / CHART.name
            shutil.copytree(CHART, copy)
            for other in (copy / "templates").iterdir():
                if not other.name.startswith("_") and other.name != template:
                    other.unlink()
            if any(m.get("Severity", 0) >= 3 for m in lint(copy, values)):
                failing.append(template)
    return failing


@pytest.fixture(scope="module")
def rendered_defaults() -> Rendered:
    return render(CHART)


@pytest.fixture(scope="module")
def rendered_full() -> Rendered:
    return render(CHART, FULL_VALUES, release="cc-prod", namespace="contact-center")


def test_chart_defaults_render_valid_manifests(rendered_defaults):
    _validate_k8s(rendered_defaults.documents, "chart (defaults)")
    kinds = sorted(d["kind"] for d in rendered_defaults.documents)
    assert kinds.count("Deployment") == 5 and kinds.count("Service") == 5
    assert kinds.count("PodDisruptionBudget") == 5
    assert "HorizontalPodAutoscaler" not in kinds
    assert kinds.count("ConfigMap") == 1 and kinds.count("Secret") == 3 and kinds.count("ServiceAccount") == 1


def test_chart_full_values_render_valid_manifests(rendered_full):
    _validate_k8s(rendered_full.documents, "chart (full values)")
    assert len(rendered_full.find("HorizontalPodAutoscaler")) == 4
    # The auth Secret and the service key: PostgreSQL comes from an existing Secret.
    assert [s["metadata"]["name"] for s in rendered_full.find("Secret")] == ["cc-prod-auth", "cc-prod-service-key"]


@pytest.mark.parametrize("fixture", ["rendered_defaults", "rendered_full"])
def test_chart_deployments_services_and_budgets(fixture, request):
    rendered: Rendered = request.getfixturevalue(fixture)
    release = "switchboard" if fixture == "rendered_defaults" else "cc-prod"
    for service in SERVICES:
        name = f"{release}-{service}"
        deployment = rendered.one("Deployment", name)
        _check_deployment(deployment, service)
        labels = _pod_labels(deployment)
        assert _matches(deployment["spec"]["selector"]["matchLabels"], labels)
        svc = rendered.one("Service", name)
        assert _matches(svc["spec"]["selector"], labels), f"Service {name} selects no pod of its Deployment"
        assert svc["spec"]["ports"][0]["port"] == 50051
        pdb = rendered.one("PodDisruptionBudget", name)
        assert _matches(pdb["spec"]["selector"]["matchLabels"], labels)
        # Other services' pods must not match this service's selector.
        for other in SERVICES:
            if other != service:
                other_labels = _pod_labels(rendered.one("Deployment", f"{release}-{other}"))
                assert not _matches(svc["spec"]["selector"], other_labels)
        template = deployment["spec"]["template"]
        assert "checksum/config" in template["metadata"]["annotations"]
        [init] = template["spec"]["initContainers"]
        assert init["securityContext"]["readOnlyRootFilesystem"] is True
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        assert volumes["config-auth"]["secret"]["secretName"] == f"{release}-auth"


def test_chart_full_values_wiring(rendered_full):
    for service in SERVICES:
        deployment = rendered_full.one("Deployment", f"cc-prod-{service}")
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == "registry.example/switchboard:1.2.3"
        env = {e["name"]: e for e in container["env"]}
        assert env["SWITCHBOARD_POSTGRES__URL"]["valueFrom"]["secretKeyRef"] == {"name": "pg-credentials", "key": "dsn"}
        assert env["SWITCHBOARD_REDIS__URL"]["valueFrom"]["secretKeyRef"]["name"] == "redis-credentials"
        assert env["RUST_LOG"]["value"] == "info,switchboard=debug"
        hpa = rendered_full.find("HorizontalPodAutoscaler", f"cc-prod-{service}")
        if service == "kpi":
            assert not hpa and deployment["spec"]["replicas"] == 3
            pdb = rendered_full.one("PodDisruptionBudget", "cc-prod-kpi")["spec"]
            assert pdb["minAvailable"] == 1 and "maxUnavailable" not in pdb
        else:
            assert hpa and hpa[0]["spec"]["scaleTargetRef"]["name"] == f"cc-prod-{service}"
            assert "replicas" not in deployment["spec"], "an HPA-managed Deployment must not pin replicas"


def _config_toml(rendered: Rendered) -> tuple[str, dict[str, Any]]:
    [config_map] = rendered.find("ConfigMap")
    text = config_map["data"]["switchboard.toml"]
    return text, tomllib.loads(text)


def _auth_toml(rendered: Rendered, name: str) -> str:
    secret = rendered.one("Secret", name)
    return base64.b64decode(secret["data"]["auth.toml"]).decode()


def test_chart_config_toml(rendered_full, rendered_defaults):
    text, config = _config_toml(rendered_full)
    _check_toml_keys(config, "chart ConfigMap")
    assert "auth" not in config, "API key hashes belong in the auth Secret"
    assert "url" not in config.get("postgres", {}), "the PostgreSQL URL belongs in a Secret"
    assert config["kafka"]["brokers"] == "kafka-0.kafka:9092,kafka-1.kafka:9092"
    assert config["kafka"]["topic_prefix"] == "prod."
    assert config["kafka"]["interactive_fetch_wait_ms"] == 100
    assert config["telemetry"]["otlp_endpoint"] == "http://otel-collector.observability:4317"
    assert config["ingestion"]["public_base_url"] == "https://switchboard.example.com"
    assert config["ingestion"]["allow_private_destinations"] is False, "tenants' channel settings reach public hosts only"
    for service in SERVICES:
        assert config["services"][service] == {"listen": "0.0.0.0:50051", "url": f"http://cc-prod-{service}:50051",
                                               "http_listen": "0.0.0.0:9090"}
    _, defaults = _config_toml(rendered_defaults)
    assert "otlp_endpoint" not in defaults["telemetry"]
    assert "interactive_fetch_wait_ms" not in defaults["kafka"], "the binary's default (5) unless set"
    assert defaults["kafka"]["hints"] is True, "interactive consumers take records from their hints by default"
    assert config["kafka"]["hints"] is False, "values turn hints off"


def test_chart_auth_secret(rendered_full, rendered_defaults):
    auth = tomllib.loads(_auth_toml(rendered_full, "cc-prod-auth"))["auth"]
    assert auth["tenants"] == ["acme", "globex"]
    expected = []
    for key in FULL_VALUES["auth"]["apiKeys"]:
        entry = {"name": key["name"], "sha256": key["sha256"], "role": key["role"]}
        for optional in ("tenant", "agent"):
            if optional in key:
                entry[optional] = key[optional]
        expected.append(entry)
    assert auth["api_keys"] == expected
    assert tomllib.loads(_auth_toml(rendered_defaults, "switchboard-auth")) == {"auth": {"tenants": []}}
    assert "auth.apiKeys is empty" in rendered_defaults.notes


def test_chart_config_is_accepted_by_the_binary(rendered_full, tmp_path):
    text, _ = _config_toml(rendered_full)
    # What the init container writes: ConfigMap file + auth Secret file.
    merged = text + _auth_toml(rendered_full, "cc-prod-auth")
    printed = _check_with_binary(merged, tmp_path, SWITCHBOARD_POSTGRES__URL="postgres://u:p@db:5432/switchboard")
    _check_http_listen(printed, "chart config as the binary reads it")


@pytest.mark.parametrize("fixture", ["rendered_defaults", "rendered_full"])
def test_chart_exposes_metrics_port(fixture, request):
    rendered: Rendered = request.getfixturevalue(fixture)
    release = "switchboard" if fixture == "rendered_defaults" else "cc-prod"
    for service in SERVICES:
        name = f"{release}-{service}"
        _check_metrics_exposed(rendered.one("Deployment", name), rendered.one("Service", name))
    _, config = _config_toml(rendered)
    _check_http_listen(config, f"chart ConfigMap ({fixture})")
    assert not rendered.find("ServiceMonitor"), "metrics.serviceMonitor.enabled is false by default"
    assert "monitoring.coreos.com" not in rendered.manifest


def test_chart_custom_metrics_port(tmp_path):
    rendered = render(CHART, {"metricsPort": 9102})
    for service in SERVICES:
        name = f"switchboard-{service}"
        deployment = rendered.one("Deployment", name)
        _check_metrics_exposed(deployment, rendered.one("Service", name), port=9102)
        # The probes stay gRPC on the service port.
        _check_deployment(deployment, service)
    _, config = _config_toml(rendered)
    _check_http_listen(config, "chart ConfigMap (metricsPort 9102)", port=9102)


def _worker_threads_env(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return [env for env in _container(deployment).get("env", []) if env["name"] == "TOKIO_WORKER_THREADS"]


def test_chart_sizes_each_runtime_to_its_cpu_request(rendered_defaults):
    # Not one worker per node CPU: one per CPU the pod requests, rounded up.
    for service in SERVICES:
        [env] = _worker_threads_env(rendered_defaults.one("Deployment", f"switchboard-{service}"))
        assert env["valueFrom"] == {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1"}}, env
    k8s_deployments = [d for _, d in _k8s_documents() if d["kind"] == "Deployment"]
    assert len(k8s_deployments) == len(SERVICES)
    for deployment in k8s_deployments:
        [env] = _worker_threads_env(deployment)
        assert env["valueFrom"] == {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1"}}, env
        assert _container(deployment)["resources"]["requests"]["cpu"], deployment["metadata"]["name"]


def test_chart_worker_threads_set_explicitly():
    rendered = render(CHART, {"workerThreads": 3})
    for service in SERVICES:
        [env] = _worker_threads_env(rendered.one("Deployment", f"switchboard-{service}"))
        assert env == {"name": "TOKIO_WORKER_THREADS", "value": "3"}


def test_chart_worker_threads_left_to_the_runtime_without_a_cpu_request():
    # requests.cpu of a container without one reads as 0, which the runtime
    # refuses: the variable is left out and the runtime uses the node's CPUs.
    rendered = render(CHART, {"resources": {"requests": {"cpu": None}},
                              "services": {"routing": {"resources": {"requests": {"cpu": "1500m"}}}}})
    for service in SERVICES:
        envs = _worker_threads_env(rendered.one("Deployment", f"switchboard-{service}"))
        if service == "routing":
            assert [env["valueFrom"]["resourceFieldRef"]["resource"] for env in envs] == ["requests.cpu"]
        else:
            assert envs == [], service


@pytest.fixture(scope="module")
def monitoring_api():
    """The fake API server announces the Prometheus Operator's CRD, as a cluster
    with it installed does (helm refuses kinds the server does not serve)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(helm_render._GROUPS, ("monitoring.coreos.com", "v1"),
                      [("servicemonitors", "ServiceMonitor", True)])
        yield


def test_chart_service_monitor(monitoring_api):
    rendered = render(CHART, SERVICE_MONITOR_VALUES, release="cc-prod", namespace="contact-center")
    skipped = _validate_k8s(rendered.documents, "chart (serviceMonitor)")
    monitors = rendered.find("ServiceMonitor")
    # Only the ServiceMonitors escaped the strict schema validation.
    assert skipped == monitors and len(monitors) == len(SERVICES)
    services = rendered.find("Service")
    assert len(services) == len(SERVICES)
    scraped: set[str] = set()
    for monitor in monitors:
        _check_service_monitor(monitor)
        name = monitor["metadata"]["name"]
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["labels"]["release"] == "prometheus", f"{name}: metrics.serviceMonitor.labels"
        assert monitor["metadata"]["labels"]["app.kubernetes.io/instance"] == "cc-prod"
        assert monitor["spec"].get("namespaceSelector", {"matchNames": ["contact-center"]}) == \
            {"matchNames": ["contact-center"]}, f"{name}: must look in the release's namespace"
        [endpoint] = monitor["spec"]["endpoints"]
        assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics", endpoint
        assert endpoint["interval"] == "15s" and endpoint["scrapeTimeout"] == "10s", endpoint
        # A ServiceMonitor selects Services by their own labels (not the pods').
        selected = [s for s in services if _matches(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
        assert selected, f"{name} selects no Service"
        for svc in selected:
            assert "metrics" in {p["name"] for p in svc["spec"]["ports"]}, svc["metadata"]["name"]
        scraped |= {s["metadata"]["name"] for s in selected}
    assert scraped == {f"cc-prod-{service}" for service in SERVICES}, "every service's metrics must be scraped"
    assert "ServiceMonitor" in rendered.notes


def test_chart_service_monitor_follows_enabled_services(monitoring_api):
    values = {"metrics": {"serviceMonitor": {"enabled": True}}, "services": {"kpi": {"enabled": False}}}
    rendered = render(CHART, values)
    names = {m["metadata"]["name"] for m in rendered.find("ServiceMonitor")}
    assert names == {f"switchboard-{service}" for service in SERVICES if service != "kpi"}
    [monitor] = [m for m in rendered.find("ServiceMonitor") if m["metadata"]["name"] == "switchboard-crm"]
    # Defaults: 30 s interval, 10 s timeout, no extra label.
    assert monitor["spec"]["endpoints"][0]["interval"] == "30s"
    assert monitor["spec"]["endpoints"][0]["scrapeTimeout"] == "10s"
    assert "release" not in monitor["metadata"]["labels"]


def test_chart_existing_auth_secret():
    rendered = render(CHART, {"auth": {"existingSecret": "my-keys"}})
    assert not rendered.find("Secret", "switchboard-auth")
    deployment = rendered.one("Deployment", "switchboard-routing")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config-auth"]["secret"]["secretName"] == "my-keys"
    assert "checksum/auth" not in deployment["spec"]["template"]["metadata"]["annotations"]


def test_chart_network_policies_deny_all_but_what_each_service_needs():
    rendered = render(CHART, {})
    policies = {p["metadata"]["name"]: p["spec"] for p in rendered.find("NetworkPolicy")}
    assert set(policies) == {f"switchboard-{service}" for service in SERVICES}, policies.keys()
    for name, spec in policies.items():
        assert spec["policyTypes"] == ["Ingress", "Egress"], name
        service = name.removeprefix("switchboard-")
        assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == service, name
        ingress_ports = {port["port"] for rule in spec["ingress"] for port in rule["ports"]}
        assert ingress_ports == {"grpc", "http-metrics"}, name
        egress_ports = {port["port"] for rule in spec["egress"] for port in rule["ports"]}
        assert {53, 9092, 6379, 5432, 4317, 50051} <= egress_ports, name
        assert (443 in egress_ports) == (service == "ingestion"), f"{name}: only ingestion reaches providers"
    scoped = render(CHART, {"networkPolicy": {"grpcFrom": [{"namespaceSelector": {"matchLabels": {"team": "cc"}}}]}})
    spec = next(p["spec"] for p in scoped.find("NetworkPolicy") if p["metadata"]["name"] == "switchboard-routing")
    grpc_rule = next(rule for rule in spec["ingress"] if rule["ports"][0]["port"] == "grpc")
    assert grpc_rule["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "switchboard"
    assert grpc_rule["from"][1] == {"namespaceSelector": {"matchLabels": {"team": "cc"}}}
    assert not render(CHART, {"networkPolicy": {"enabled": False}}).find("NetworkPolicy")
    # ingressFrom opens nothing while neither an Ingress nor a route is enabled.
    unexposed = render(CHART, {"networkPolicy": {"grpcFrom": [API_CLIENTS], "metricsFrom": [MONITORING],
                                                 "ingressFrom": [INGRESS_CONTROLLER]}})
    for policy in unexposed.find("NetworkPolicy"):
        peers = [peer for rule in policy["spec"]["ingress"] for peer in rule.get("from", [])]
        assert INGRESS_CONTROLLER not in peers, policy["metadata"]["name"]


def test_chart_service_key():
    rendered = render(CHART, {})
    [secret] = rendered.find("Secret", "switchboard-service-key")
    key = base64.b64decode(secret["data"]["key"]).decode()
    assert key.startswith("sbs_") and len(key) >= 32 and key.isprintable() and " " not in key, key
    own = render(CHART, {"auth": {"serviceKey": {"existingSecret": "own-service-key", "existingSecretKey": "k"}}})
    assert not own.find("Secret", "switchboard-service-key")
    for deployment in own.find("Deployment"):
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["SWITCHBOARD_AUTH__SERVICE_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "own-service-key", "key": "k"}


@pytest.fixture(scope="module")
def gateway_api():
    """The fake API server serves Gateway API's route kinds, as a cluster with
    its CRDs (standard channel 1.1 or newer) does."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(helm_render._GROUPS, ("gateway.networking.k8s.io", "v1"),
                      [("grpcroutes", "GRPCRoute", True), ("httproutes", "HTTPRoute", True)])
        yield


def test_chart_routes_every_grpc_api_the_code_serves():
    """The chart's per-service list of gRPC APIs (what the Ingress and the
    GRPCRoute route on) is what each service mounts, and together they are
    every service the protos declare."""
    served = _served_grpc_apis()
    assert set().union(*served.values()) == _declared_grpc_apis(), \
        "a service declared in proto/ is mounted by no service (or one mounted is declared nowhere)"
    rendered = render(CHART, INGRESS_VALUES)
    routed: dict[str, set[str]] = {}
    for rule in rendered.one("Ingress", "switchboard-grpc")["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]["name"].removeprefix("switchboard-")
            routed.setdefault(backend, set()).add(path["path"].removeprefix("/"))
    assert routed == served


def test_chart_ingress_routes_grpc_by_service_over_tls():
    rendered = render(CHART, INGRESS_VALUES, release="cc-prod", namespace="contact-center")
    assert _validate_k8s(rendered.documents, "chart (ingress)") == []
    served = _served_grpc_apis()
    services = {svc["metadata"]["name"]: {port["name"]: port for port in svc["spec"]["ports"]}
                for svc in rendered.find("Service")}
    grpc, http = rendered.one("Ingress", "cc-prod-grpc"), rendered.one("Ingress", "cc-prod-http")
    assert len(rendered.find("Ingress")) == 2
    for ingress in (grpc, http):
        name, spec = ingress["metadata"]["name"], ingress["spec"]
        assert spec["ingressClassName"] == "nginx", name
        assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt", name
        assert [rule["host"] for rule in spec["rules"]] == INGRESS_VALUES["ingress"]["hosts"], name
        assert all(entry["secretName"] for entry in spec["tls"]), name
        for rule in spec["rules"]:
            assert _tls_covers(rule["host"], spec["tls"]), f"{name}: {rule['host']} would be served in plaintext"
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                assert path["pathType"] == "Prefix", path
                assert backend["port"]["name"] in services[backend["name"]], f"{name}: {backend} names no Service port"
    # Only the gRPC Ingress talks gRPC (h2c) to its backends.
    assert grpc["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC"
    assert "nginx.ingress.kubernetes.io/backend-protocol" not in http["metadata"]["annotations"]
    for rule in grpc["spec"]["rules"]:
        routed: dict[str, set[str]] = {}
        for path in rule["http"]["paths"]:
            assert path["backend"]["service"]["port"] == {"name": "grpc"}, path
            routed.setdefault(path["backend"]["service"]["name"], set()).add(path["path"].removeprefix("/"))
        assert routed == {f"cc-prod-{service}": apis for service, apis in served.items()}, rule["host"]
        # A prefix matches whole path elements: no API's prefix takes another's calls.
        for path in rule["http"]["paths"]:
            for api in set().union(*served.values()) - {path["path"].removeprefix("/")}:
                assert not _prefix_matches(path["path"], f"/{api}/Method"), (path["path"], api)
    for rule in http["spec"]["rules"]:
        paths = {path["path"]: path["backend"]["service"] for path in rule["http"]["paths"]}
        assert set(paths) == {"/webhooks", "/webchat"}, paths
        assert all(backend == {"name": "cc-prod-ingestion", "port": {"name": "metrics"}} for backend in paths.values())
        for internal in ("/metrics", "/healthz", "/readyz"):
            assert not any(_prefix_matches(prefix, internal) for prefix in paths), f"{internal} must stay internal"
        assert _prefix_matches("/webchat", "/webchat/acme/site/ws"), "the web chat's WebSocket"
    # Channels show their webhook URLs on the first host TLS covers.
    _, config = _config_toml(rendered)
    assert config["ingestion"]["public_base_url"] == "https://switchboard.example.com"
    assert "https://switchboard.example.com/webhooks/" in rendered.notes
    # The controller's pods reach every gRPC port despite grpcFrom; ingestion's
    # HTTP port takes only them and the scrapers, other HTTP ports only scrapers.
    for policy in rendered.find("NetworkPolicy"):
        name = policy["metadata"]["name"]
        rules = {rule["ports"][0]["port"]: rule for rule in policy["spec"]["ingress"]}
        assert INGRESS_CONTROLLER in rules["grpc"]["from"] and API_CLIENTS in rules["grpc"]["from"], name
        expected = [MONITORING, INGRESS_CONTROLLER] if name == "cc-prod-ingestion" else [MONITORING]
        assert rules["http-metrics"]["from"] == expected, name


def test_chart_ingress_follows_enabled_services():
    values = INGRESS_VALUES | {"services": {"kpi": {"enabled": False}, "ingestion": {"enabled": False}}}
    rendered = render(CHART, values)
    [grpc] = rendered.find("Ingress")
    backends = {path["backend"]["service"]["name"] for rule in grpc["spec"]["rules"] for path in rule["http"]["paths"]}
    assert backends == {"switchboard-routing", "switchboard-presence", "switchboard-crm"}
    _, config = _config_toml(rendered)
    assert config["ingestion"]["public_base_url"] == "", "no webhooks served here"
    only_grpc = render(CHART, {"ingress": INGRESS_VALUES["ingress"] | {"http": {"enabled": False}}})
    assert [i["metadata"]["name"] for i in only_grpc.find("Ingress")] == ["switchboard-grpc"]
    specific = render(CHART, {"ingress": INGRESS_VALUES["ingress"] | {"grpc": {"pathType": "ImplementationSpecific"}}})
    _validate_k8s(specific.find("Ingress"), "chart (ingress, ImplementationSpecific)")
    path_types = {ingress["metadata"]["name"]: {path["pathType"] for rule in ingress["spec"]["rules"]
                                                 for path in rule["http"]["paths"]}
                  for ingress in specific.find("Ingress")}
    assert path_types == {"switchboard-grpc": {"ImplementationSpecific"}, "switchboard-http": {"Prefix"}}


def test_chart_ingress_plaintext_only_when_asked_for():
    """allowPlaintext is the one way to an Ingress without TLS (TLS ending in
    front of the controller); the webhook URL is then not guessed."""
    rendered = render(CHART, {"ingress": {"enabled": True, "hosts": ["sb.internal"], "allowPlaintext": True}})
    _validate_k8s(rendered.find("Ingress"), "chart (plaintext ingress)")
    assert all("tls" not in ingress["spec"] for ingress in rendered.find("Ingress"))
    _, config = _config_toml(rendered)
    assert config["ingestion"]["public_base_url"] == ""
    assert "config.ingestion.publicBaseUrl is empty" in rendered.notes


def test_chart_gateway_api_routes(gateway_api):
    rendered = render(CHART, GATEWAY_VALUES, release="cc-prod", namespace="contact-center")
    skipped = _validate_k8s(rendered.documents, "chart (gateway api)")
    assert sorted(route["kind"] for route in skipped) == ["GRPCRoute", "HTTPRoute"]
    assert not rendered.find("Ingress")
    services = {svc["metadata"]["name"]: {port["name"]: port["port"] for port in svc["spec"]["ports"]}
                for svc in rendered.find("Service")}
    grpc = rendered.one("GRPCRoute", "cc-prod-grpc")
    _check_grpc_route(grpc)
    assert grpc["spec"]["parentRefs"] == [GATEWAY]
    assert grpc["spec"]["hostnames"] == ["api.switchboard.example.com"]
    routed = {}
    for rule in grpc["spec"]["rules"]:
        [backend] = rule["backendRefs"]
        assert backend["port"] == services[backend["name"]]["grpc"], backend
        # By service name: every method of the service, whatever it adds later.
        assert all(set(match["method"]) == {"type", "service"} for match in rule["matches"]), rule["matches"]
        routed[backend["name"]] = {match["method"]["service"] for match in rule["matches"]}
    assert routed == {f"cc-prod-{service}": apis for service, apis in _served_grpc_apis().items()}
    http = rendered.one("HTTPRoute", "cc-prod-http")
    _check_http_route(http)
    assert http["spec"]["hostnames"] == ["hooks.switchboard.example.com"]
    [rule] = http["spec"]["rules"]
    assert {m["path"]["value"] for m in rule["matches"]} == {"/webhooks", "/webchat"}
    assert all(m["path"]["type"] == "PathPrefix" for m in rule["matches"])
    assert rule["backendRefs"] == [{"name": "cc-prod-ingestion", "port": services["cc-prod-ingestion"]["metrics"]}]
    _, config = _config_toml(rendered)
    assert config["ingestion"]["public_base_url"] == "https://hooks.switchboard.example.com"
    # Routes on different Gateways may share a hostname; without sectionName
    # only when plaintext is allowed.
    apart = render(CHART, {"gatewayApi": {
        "allowPlaintext": True,
        "grpcRoute": {"enabled": True, "parentRefs": [{"name": "grpc-gateway"}], "hostnames": ["sb.example.com"]},
        "httpRoute": {"enabled": True, "parentRefs": [{"name": "web-gateway"}], "hostnames": ["sb.example.com"]},
    }})
    for route in apart.find("GRPCRoute") + apart.find("HTTPRoute"):
        (_check_grpc_route if route["kind"] == "GRPCRoute" else _check_http_route)(route)
    _, config = _config_toml(apart)
    assert config["ingestion"]["public_base_url"] == "", "no https:// guessed for a listener that may be plain"


def test_chart_gateway_api_network_policy(gateway_api):
    values = GATEWAY_VALUES | {"networkPolicy": {"grpcFrom": [API_CLIENTS], "ingressFrom": [INGRESS_CONTROLLER]}}
    for policy in render(CHART, values).find("NetworkPolicy"):
        grpc_rule = next(rule for rule in policy["spec"]["ingress"] if rule["ports"][0]["port"] == "grpc")
        assert INGRESS_CONTROLLER in grpc_rule["from"], policy["metadata"]["name"]


def test_chart_kafka_topics_fit_a_one_broker_cluster(rendered_defaults):
    """Topic creation with a replication factor above the live brokers fails
    and every pod crash-loops, so the chart leaves the factor to the binary
    unless set; partitions fit any broker count."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["config"]["kafka"]["replicationFactor"] is None
    _, config = _config_toml(rendered_defaults)
    assert "replication_factor" not in config["kafka"], config["kafka"]
    assert config["kafka"]["partitions"] >= 1
    _, chosen = _config_toml(render(CHART, {"config": {"kafka": {"replicationFactor": 3}}}))
    assert chosen["kafka"]["replication_factor"] == 3


def test_chart_kafka_default_replication_is_the_binarys(rendered_defaults, tmp_path):
    text, _ = _config_toml(rendered_defaults)
    printed = _check_with_binary(text + _auth_toml(rendered_defaults, "switchboard-auth"), tmp_path,
                                 SWITCHBOARD_POSTGRES__URL="postgres://u:p@db:5432/switchboard")
    # 1, or -1 (the broker's default.replication.factor) once the binary takes it.
    assert printed["kafka"]["replication_factor"] in (1, -1), printed["kafka"]


# --------------------------------------------------------------------- TLS ---

TLS_SECRET = "sb-tls"
TLS_VALUES: dict[str, Any] = {"tls": {"enabled": True, "secretName": TLS_SECRET}}
CERT_MANAGER_VALUES: dict[str, Any] = {
    "tls": {"enabled": True, "clientAuth": "required",
            "certManager": {"enabled": True, "issuerRef": {"name": "internal-ca", "kind": "ClusterIssuer"}}},
}
# Every backend over TLS, Kafka with SASL too; each CA from its own Secret.
BACKEND_TLS_VALUES: dict[str, Any] = {
    "config": {
        "kafka": {"securityProtocol": "sasl_ssl", "saslMechanism": "SCRAM-SHA-512", "saslUsername": "switchboard",
                  "properties": {"client.rack": "eu-west-1a"}},
        "redis": {"url": "rediss://redis:6380"},
        "telemetry": {"otlpEndpoint": "https://otel-collector.observability:4317"},
    },
    "postgres": {"url": "postgres://switchboard@db:5432/switchboard?sslmode=require", "caSecret": "pg-ca"},
    "redis": {"caSecret": "redis-ca", "caSecretKey": "ca.pem"},
    "kafka": {"saslPasswordSecret": "kafka-credentials", "caSecret": "kafka-ca"},
    "telemetry": {"otlpCaSecret": "otel-ca"},
}
TLS_DIR = "/etc/switchboard-tls"


@pytest.fixture(scope="module")
def cert_manager_api():
    """The fake API server serves cert-manager's Certificate, as a cluster with
    cert-manager installed does."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(helm_render._GROUPS, ("cert-manager.io", "v1"), [("certificates", "Certificate", True)])
        yield


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _mounted_file(deployment: dict[str, Any], path: str) -> tuple[dict[str, Any], str]:
    """The volume a file path of the container lies in and the file's name in it."""
    container = _container(deployment)
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    for mount in container["volumeMounts"]:
        if path.startswith(mount["mountPath"].rstrip("/") + "/"):
            assert mount.get("readOnly") is True, f"{mount} must be read-only"
            return volumes[mount["name"]], path[len(mount["mountPath"].rstrip("/")) + 1:]
    raise AssertionError(f"{path} lies in no volume of {deployment['metadata']['name']}")


def _secret_file(deployment: dict[str, Any], path: str) -> tuple[str, str]:
    """(Secret, key) a file of the container comes from."""
    volume, name = _mounted_file(deployment, path)
    assert "secret" in volume, f"{path}: {volume}"
    items = {item["path"]: item["key"] for item in volume["secret"].get("items", [])}
    if items:
        assert name in items, f"{path}: the volume projects only {sorted(items)}"
        return volume["secret"]["secretName"], items[name]
    return volume["secret"]["secretName"], name


@pytest.fixture(scope="module")
def rendered_tls() -> Rendered:
    return render(CHART, TLS_VALUES | SERVICE_MONITOR_VALUES, release="cc-prod", namespace="contact-center")


def test_chart_tls_renders_valid_manifests(monitoring_api, rendered_tls):
    skipped = _validate_k8s(rendered_tls.documents, "chart (tls)")
    assert {d["kind"] for d in skipped} == {"ServiceMonitor"}
    for service in SERVICES:
        _check_deployment(rendered_tls.one("Deployment", f"cc-prod-{service}"), service, tls=True)
    assert not rendered_tls.find("Certificate"), "tls.secretName given: the chart issues no certificate"


def test_chart_tls_mounts_the_secret_as_a_directory(rendered_tls):
    _, config = _config_toml(rendered_tls)
    tls = config["tls"]
    assert tls["client_auth"] == "none" and tls["reload_interval_secs"] == 5, tls
    for service in SERVICES:
        deployment = rendered_tls.one("Deployment", f"cc-prod-{service}")
        mounts = _container(deployment)["volumeMounts"]
        # A subPath mount keeps the file it found at start: renewals would never arrive.
        assert not [m for m in mounts if "subPath" in m or "subPathExpr" in m], f"{service}: {mounts}"
        for setting, key in (("cert_file", "tls.crt"), ("key_file", "tls.key"), ("ca_file", "ca.crt")):
            assert tls[setting].startswith(TLS_DIR + "/"), tls
            volume, _ = _mounted_file(deployment, tls[setting])
            assert volume["secret"] == {"secretName": TLS_SECRET}, f"{service}: the whole Secret, {volume}"
            assert _secret_file(deployment, tls[setting]) == (TLS_SECRET, key), setting
        # Not under /etc/switchboard: that read-only mount has no room for another mount point.
        assert all(not m["mountPath"].startswith("/etc/switchboard/") for m in mounts), mounts


def test_chart_tls_service_urls_are_https(rendered_tls, rendered_full):
    _, config = _config_toml(rendered_tls)
    for service in SERVICES:
        assert config["services"][service]["url"] == f"https://cc-prod-{service}:50051", config["services"][service]
    # Off, they stay as they were.
    _, plain = _config_toml(rendered_full)
    assert "tls" not in plain
    assert all(plain["services"][s]["url"].startswith("http://") for s in SERVICES)


def test_chart_tls_config_is_accepted_by_the_binary(rendered_tls, tmp_path):
    text, _ = _config_toml(rendered_tls)
    merged = text + _auth_toml(rendered_tls, "cc-prod-auth")
    env = {"SWITCHBOARD_POSTGRES__URL": "postgres://u:p@db:5432/switchboard"}
    printed = _check_with_binary(merged, tmp_path, **env)
    assert printed["tls"]["cert_file"] == f"{TLS_DIR}/tls.crt", printed["tls"]
    assert printed["tls"]["client_auth"] == "none"
    assert all(printed["services"][s]["url"].startswith("https://") for s in SERVICES)
    # The same file with http:// service URLs is refused: the binary insists
    # on https:// while it serves TLS, so the chart must render them so.
    error = _binary_refusal(merged.replace('url = "https://', 'url = "http://'), tmp_path, **env)
    assert "https://" in error and "services." in error, error


def test_chart_tls_service_monitors_check_the_certificate(rendered_tls):
    monitors = rendered_tls.find("ServiceMonitor")
    assert len(monitors) == len(SERVICES)
    for monitor in monitors:
        _check_service_monitor(monitor)
        [endpoint] = monitor["spec"]["endpoints"]
        assert endpoint["scheme"] == "https", endpoint
        tls = endpoint["tlsConfig"]
        assert tls["ca"] == {"secret": {"name": TLS_SECRET, "key": "ca.crt"}}, tls
        assert tls.get("insecureSkipVerify", False) is False, tls
        # Prometheus dials pod IPs: the name it checks is the Service's.
        assert tls["serverName"] == f"{monitor['metadata']['name']}.contact-center.svc", tls
    for svc in rendered_tls.find("Service"):
        metrics = next(p for p in svc["spec"]["ports"] if p["name"] == "metrics")
        assert metrics["appProtocol"] == "https", metrics
    assert "over HTTPS" in rendered_tls.notes and "TLS only" in rendered_tls.notes


def test_chart_tls_certificate_carries_every_service_name(cert_manager_api, monitoring_api, tmp_path):
    values = CERT_MANAGER_VALUES | SERVICE_MONITOR_VALUES | {"services": {"kpi": {"enabled": False}}}
    rendered = render(CHART, values, release="cc-prod", namespace="contact-center")
    [certificate] = rendered.find("Certificate")
    skipped = _validate_k8s(rendered.documents, "chart (cert-manager)")
    assert {d["kind"] for d in skipped} == {"Certificate", "ServiceMonitor"}
    assert set(certificate) == {"apiVersion", "kind", "metadata", "spec"}
    spec = certificate["spec"]
    assert set(spec) <= {"secretName", "dnsNames", "duration", "renewBefore", "privateKey", "usages", "issuerRef"}, spec
    assert spec["secretName"] == "cc-prod-tls"
    assert spec["issuerRef"] == {"name": "internal-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    # Mutual TLS: the services present this certificate on their calls too.
    assert {"server auth", "client auth"} <= set(spec["usages"]), spec["usages"]
    enabled = [s for s in SERVICES if s != "kpi"]
    expected = {f"cc-prod-{s}{suffix}" for s in enabled
                for suffix in ("", ".contact-center", ".contact-center.svc", ".contact-center.svc.cluster.local")}
    assert set(spec["dnsNames"]) == expected and len(spec["dnsNames"]) == len(expected), spec["dnsNames"]
    _, config = _config_toml(rendered)
    assert config["tls"]["client_auth"] == "required"
    for service in enabled:
        deployment = rendered.one("Deployment", f"cc-prod-{service}")
        assert _secret_file(deployment, config["tls"]["cert_file"]) == ("cc-prod-tls", "tls.crt")
        # Every name a caller dials must be one the certificate carries.
        host = config["services"][service]["url"].removeprefix("https://").rsplit(":", 1)[0]
        assert host in spec["dnsNames"], host
    for monitor in rendered.find("ServiceMonitor"):
        assert monitor["spec"]["endpoints"][0]["tlsConfig"]["serverName"] in spec["dnsNames"]
    _check_with_binary(_config_toml(rendered)[0] + _auth_toml(rendered, "cc-prod-auth"), tmp_path,
                       SWITCHBOARD_POSTGRES__URL="postgres://u:p@db:5432/switchboard")
    # Without mutual TLS the certificate is not made a client certificate.
    one_way = render(CHART, {"tls": CERT_MANAGER_VALUES["tls"] | {"clientAuth": "none"}})
    assert "client auth" not in one_way.one("Certificate", "switchboard-tls")["spec"]["usages"]


def test_chart_tls_ingress_speaks_tls_to_the_pods():
    rendered = render(CHART, INGRESS_VALUES | TLS_VALUES)
    protocol = "nginx.ingress.kubernetes.io/backend-protocol"
    assert rendered.one("Ingress", "switchboard-grpc")["metadata"]["annotations"][protocol] == "GRPCS"
    assert rendered.one("Ingress", "switchboard-http")["metadata"]["annotations"][protocol] == "HTTPS"
    # A protocol of the operator's own choosing is kept.
    own = render(CHART, TLS_VALUES | {"ingress": INGRESS_VALUES["ingress"] | {
        "grpc": {"annotations": {protocol: "AUTO_HTTP"}}}})
    assert own.one("Ingress", "switchboard-grpc")["metadata"]["annotations"][protocol] == "AUTO_HTTP"


def test_chart_backend_tls(tmp_path):
    rendered = render(CHART, BACKEND_TLS_VALUES)
    _validate_k8s(rendered.documents, "chart (backend tls)")
    _, config = _config_toml(rendered)
    _check_toml_keys(config, "chart ConfigMap (backend tls)")
    assert "tls" not in config, "backend TLS does not turn on the services' own"
    deployment = rendered.one("Deployment", "switchboard-routing")
    expected = {("redis", "ca_file"): ("redis-ca", "ca.pem"), ("postgres", "ca_file"): ("pg-ca", "ca.crt"),
                ("kafka", "ssl_ca_location"): ("kafka-ca", "ca.crt"),
                ("telemetry", "otlp_ca_file"): ("otel-ca", "ca.crt")}
    for (table, key), source in expected.items():
        assert _secret_file(deployment, config[table][key]) == source, (table, key)
    # Only the CA key of each Secret reaches the pod.
    for volume in deployment["spec"]["template"]["spec"]["volumes"]:
        if volume["name"].endswith("-ca"):
            assert len(volume["secret"]["items"]) == 1, volume
    assert config["kafka"]["security_protocol"] == "sasl_ssl" and config["kafka"]["sasl_mechanism"] == "SCRAM-SHA-512"
    assert config["kafka"]["properties"] == {"client.rack": "eu-west-1a"}
    assert "sasl_password" not in config["kafka"], "the password comes from a Secret, never the ConfigMap"
    env = {e["name"]: e for e in _container(deployment)["env"]}
    assert env["SWITCHBOARD_KAFKA__SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == \
        {"name": "kafka-credentials", "key": "password"}
    printed = _check_with_binary(_config_toml(rendered)[0] + _auth_toml(rendered, "switchboard-auth"), tmp_path,
                                 SWITCHBOARD_POSTGRES__URL=BACKEND_TLS_VALUES["postgres"]["url"],
                                 SWITCHBOARD_KAFKA__SASL_PASSWORD="secret")
    assert printed["kafka"]["security_protocol"] == "sasl_ssl" and printed["redis"]["ca_file"] == config["redis"]["ca_file"]
    # Off by default: plaintext Kafka, no CA, no password variable.
    _, defaults = _config_toml(render(CHART))
    assert defaults["kafka"]["security_protocol"] == "plaintext" and "ca_file" not in defaults["redis"]


# The combinations the chart refuses (test_chart_rejects_bad_values), as the
# binary would meet them: it must refuse each too, so the chart is no stricter
# than the binary by mistake, and notices if the binary's rules change. (The
# chart is stricter on purpose in one place: postgres.caSecret without
# sslmode=require, which the binary takes as plaintext without a word.)
_BINARY_REFUSALS = [
    ({"SWITCHBOARD_TLS__CLIENT_AUTH": "required"}, "tls.client_auth"),
    ({"SWITCHBOARD_KAFKA__SECURITY_PROTOCOL": "sasl_ssl", "SWITCHBOARD_KAFKA__SASL_MECHANISM": "PLAIN",
      "SWITCHBOARD_KAFKA__SASL_USERNAME": "switchboard"}, "kafka.sasl_password"),
    ({"SWITCHBOARD_KAFKA__SECURITY_PROTOCOL": "sasl_ssl", "SWITCHBOARD_KAFKA__SASL_USERNAME": "switchboard",
      "SWITCHBOARD_KAFKA__SASL_PASSWORD": "secret"}, "kafka.sasl_mechanism"),
    ({"SWITCHBOARD_KAFKA__SASL_USERNAME": "switchboard"}, "kafka.security_protocol"),
    ({"SWITCHBOARD_KAFKA__SSL_CA_LOCATION": "/etc/switchboard-ca/kafka/ca.crt"}, "kafka.ssl_ca_location"),
    ({"SWITCHBOARD_REDIS__CA_FILE": "/etc/switchboard-ca/redis/ca.crt"}, "redis.ca_file"),
    ({"SWITCHBOARD_REDIS__URL": "rediss://redis:6380/#insecure"}, "#insecure"),
    ({"SWITCHBOARD_TELEMETRY__OTLP_ENDPOINT": "http://otel:4317",
      "SWITCHBOARD_TELEMETRY__OTLP_CA_FILE": "/etc/switchboard-ca/otlp/ca.crt"}, "telemetry.otlp_ca_file"),
]


@pytest.mark.parametrize(("env", "message"), _BINARY_REFUSALS, ids=[m for _, m in _BINARY_REFUSALS])
def test_binary_refuses_what_the_chart_refuses(rendered_defaults, tmp_path, env, message):
    text = _config_toml(rendered_defaults)[0] + _auth_toml(rendered_defaults, "switchboard-auth")
    error = _binary_refusal(text, tmp_path, SWITCHBOARD_POSTGRES__URL="postgres://u:p@db:5432/switchboard", **env)
    assert message in error, error


_HOST_TLS = {"enabled": True, "hosts": ["sb.example.com"], "tls": [{"secretName": "sb-tls"}]}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"auth": {"apiKeys": [{"name": "k", "sha256": "ABC", "role": "operator_admin"}]}}, "sha256"),
        ({"auth": {"apiKeys": [{"name": "k", "sha256": _sha("k"), "role": "root"}]}}, "role"),
        ({"auth": {"tenants": ["acme"],
                   "apiKeys": [{"name": "k", "sha256": _sha("k"), "role": "tenant_admin", "tenant": "globex"}]}},
         "tenant"),
        ({"auth": {"apiKeys": [{"name": "k", "sha256": _sha("k"), "role": "agent"}]}}, "agent"),
        ({"auth": {"tenants": ["Acme"]}}, "tenants"),
        ({"postgres": {"url": ""}}, "postgres.url"),
        ({"services": {"routing": {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 3}}}},
         "services.routing.autoscaling.minReplicas"),
        ({"services": {"crm": {"replicas": 2, "pdb": {"enabled": True, "minAvailable": 2}}}},
         "services.crm.pdb.minAvailable"),
        ({"services": {"kpi": {"pdb": {"enabled": True, "maxUnavailable": 0}}}}, "services.kpi.pdb.maxUnavailable"),
        # values.schema.json catches typos and bad types.
        ({"services": {"crm": {"replica": 3}}}, "replica"),
        ({"config": {"telemetry": {"logFormat": "xml"}}}, "logFormat"),
        ({"config": {"redis": {"pool": "{pool}"}}}, "pool"),
        ({"metricsPort": 50051}, "metricsPort"),
        ({"metricsPort": 0}, "metricsPort"),
        ({"metrics": {"serviceMonitor": {"interval": "30"}}}, "interval"),
        ({"metrics": {"serviceMonitor": {"enable": True}}}, "enable"),
        ({"metrics": {"serviceMonitor": {"labels": {"release": 1}}}}, "release"),
        # Public access never falls back to plaintext unless told to.
        ({"ingress": {"enabled": True, "hosts": ["sb.example.com"]}}, "ingress.tls is empty"),
        ({"ingress": {"enabled": True, "hosts": ["sb.example.com", "cc.example.org"],
                      "tls": [{"secretName": "t", "hosts": ["sb.example.com"]}]}}, '"cc.example.org"'),
        ({"ingress": {"enabled": True, "hosts": ["a.b.example.org"],
                      "tls": [{"secretName": "t", "hosts": ["*.example.org"]}]}}, '"a.b.example.org"'),
        ({"ingress": {"enabled": True, "hosts": ["sb.example.com"], "tls": [{"hosts": ["sb.example.com"]}]}},
         "ingress.tls[0].secretName"),
        ({"ingress": {"enabled": True, "tls": [{"secretName": "t"}]}}, "ingress.hosts is empty"),
        ({"ingress": _HOST_TLS, "networkPolicy": {"grpcFrom": [API_CLIENTS]}}, "networkPolicy.ingressFrom"),
        ({"gatewayApi": {"grpcRoute": {"enabled": True, "parentRefs": [{"name": "public"}]}}}, "sectionName"),
        ({"gatewayApi": {"grpcRoute": {"enabled": True}}}, "gatewayApi.grpcRoute.parentRefs is empty"),
        ({"gatewayApi": {"grpcRoute": {"enabled": True, "parentRefs": [GATEWAY]}},
          "networkPolicy": {"grpcFrom": [API_CLIENTS]}}, "networkPolicy.ingressFrom"),
        ({"gatewayApi": {"grpcRoute": {"enabled": True, "parentRefs": [GATEWAY], "hostnames": ["*.example.com"]},
                         "httpRoute": {"enabled": True, "parentRefs": [GATEWAY], "hostnames": ["hooks.example.com"]}}},
         "overlap"),
        ({"gatewayApi": {"grpcRoute": {"enabled": True, "parentRefs": [GATEWAY], "hostnames": ["api.example.com"]},
                         "httpRoute": {"enabled": True, "parentRefs": [{"name": "public", "namespace": "gateway-system",
                                                                         "port": 443}]}}},
         "no hostnames"),
        ({"gatewayApi": {"grpcRoute": {"enabled": True, "parentRefs": [{"name": "public", "section": "https"}]}}},
         "section"),
        ({"ingress": {"enable": True}}, "enable"),
        ({"ingress": {"hosts": ["SB.example.com"]}}, "SB.example.com"),
        ({"config": {"kafka": {"replicationFactor": 0}}}, "replicationFactor"),
        ({"config": {"kafka": {"interactiveFetchWaitMs": 0}}}, "interactiveFetchWaitMs"),
        ({"config": {"kafka": {"interactiveFetchWaitMs": 501}}}, "interactiveFetchWaitMs"),
        ({"config": {"kafka": {"hints": "yes"}}}, "hints"),
        # TLS is never half on, and never plaintext where a CA or SASL promises it.
        ({"tls": {"enabled": True}}, "tls.enabled needs tls.secretName"),
        ({"tls": {"clientAuth": "required"}}, "tls.clientAuth=required needs tls.enabled"),
        ({"tls": {"enabled": True, "certManager": {"enabled": True}}}, "tls.certManager.issuerRef.name"),
        ({"tls": {"certManager": {"enabled": True, "issuerRef": {"name": "ca"}}}},
         "tls.certManager.enabled needs tls.enabled"),
        ({"tls": {"enabled": True, "secretName": "t", "clientAuth": "optional"}}, "clientAuth"),
        ({"config": {"kafka": {"securityProtocol": "sasl_ssl", "saslMechanism": "PLAIN", "saslUsername": "sb"}}},
         "kafka.saslPasswordSecret"),
        ({"config": {"kafka": {"securityProtocol": "sasl_ssl", "saslMechanism": "PLAIN"}},
          "kafka": {"saslPasswordSecret": "k"}}, "config.kafka.saslUsername"),
        ({"config": {"kafka": {"securityProtocol": "sasl_plaintext", "saslUsername": "sb"}},
          "kafka": {"saslPasswordSecret": "k"}}, "config.kafka.saslMechanism"),
        ({"config": {"kafka": {"saslUsername": "sb"}}}, "securityProtocol sasl_plaintext or sasl_ssl, not plaintext"),
        ({"kafka": {"caSecret": "kafka-ca"}}, "kafka.caSecret is set but config.kafka.securityProtocol is plaintext"),
        ({"config": {"kafka": {"properties": {"security.protocol": "ssl"}}}}, '"security.protocol"'),
        ({"config": {"kafka": {"properties": {"fetch.max.bytes": 1048576}}}}, "fetch.max.bytes"),
        ({"config": {"kafka": {"securityProtocol": "tls"}}}, "securityProtocol"),
        ({"redis": {"caSecret": "redis-ca"}}, "redis.caSecret is set but config.redis.url"),
        ({"config": {"redis": {"url": "rediss://redis:6380/#insecure"}}}, "#insecure"),
        ({"postgres": {"caSecret": "pg-ca"}}, "postgres.caSecret is set but postgres.url has no sslmode=require"),
        ({"postgres": {"url": "postgres://sb@db/sb?sslmode=prefer", "caSecret": "pg-ca"}}, "sslmode=require"),
        ({"telemetry": {"otlpCaSecret": "otel-ca"}, "config": {"telemetry": {"otlpEndpoint": "http://otel:4317"}}},
         "telemetry.otlpCaSecret"),
    ],
)
def test_chart_rejects_bad_values(values, message):
    with pytest.raises(Exception) as failure:
        render(CHART, values)
    assert message in str(failure.value), str(failure.value)


# ------------------------------------------------------- plain k8s examples ---


def _k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    files = sorted(K8S_DIR.glob("*.yaml"))
    assert files, f"no manifests in {K8S_DIR}"
    return [(f.name, d) for f in files for d in yaml.safe_load_all(f.read_text()) if d]


def test_k8s_examples_are_valid_manifests():
    for origin, document in _k8s_documents():
        _validate_k8s([document], f"deploy/k8s/{origin}")


def test_k8s_examples_cover_every_service():
    documents = [d for _, d in _k8s_documents()]
    by_kind = lambda kind: {d["metadata"]["name"]: d for d in documents if d["kind"] == kind}  # noqa: E731
    deployments, services = by_kind("Deployment"), by_kind("Service")
    assert "switchboard" in by_kind("Namespace")
    for service in SERVICES:
        deployment = deployments[f"switchboard-{service}"]
        _check_deployment(deployment, service)
        assert _matches(services[f"switchboard-{service}"]["spec"]["selector"], _pod_labels(deployment))
    for document in documents:
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == "switchboard"


def test_k8s_example_config(tmp_path):
    [config_map] = [d for _, d in _k8s_documents() if d["kind"] == "ConfigMap"]
    text = config_map["data"]["switchboard.toml"]
    config = tomllib.loads(text)
    _check_toml_keys(config, "deploy/k8s ConfigMap")
    for service in SERVICES:
        assert config["services"][service]["url"] == f"http://switchboard-{service}:50051"
    _check_http_listen(config, "deploy/k8s ConfigMap")
    printed = _check_with_binary(text, tmp_path, SWITCHBOARD_POSTGRES__URL="postgres://u:p@db:5432/switchboard")
    _check_http_listen(printed, "deploy/k8s config as the binary reads it")


def test_k8s_examples_expose_metrics():
    documents = [d for _, d in _k8s_documents()]
    by_kind = lambda kind: {d["metadata"]["name"]: d for d in documents if d["kind"] == kind}  # noqa: E731
    deployments, services = by_kind("Deployment"), by_kind("Service")
    for service in SERVICES:
        deployment = deployments[f"switchboard-{service}"]
        _check_metrics_exposed(deployment, services[f"switchboard-{service}"])
        annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
        assert annotations.get("prometheus.io/scrape") == "true", f"{service}: {annotations}"
        assert annotations.get("prometheus.io/port") == str(METRICS_PORT), f"{service}: {annotations}"
        assert annotations.get("prometheus.io/path") == "/metrics", f"{service}: {annotations}"


# ----------------------------------------------------------- docker-compose ---


def test_compose_config_is_valid():
    compose = shutil.which("docker-compose")
    if compose is None:
        if CI:
            pytest.fail("docker-compose is not installed (scripts/test-env.sh install adds it)")
        pytest.skip("docker-compose is not installed")
    result = subprocess.run([compose, "-f", str(COMPOSE), "config", "-q"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_compose_services_and_config(tmp_path):
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert {"kafka", "redis", "postgres", "otel-collector"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["postgres"]["image"].startswith("postgres:15")
    config = tomllib.loads(COMPOSE_TOML.read_text())
    _check_toml_keys(config, "deploy/switchboard.compose.toml")
    for service in SERVICES:
        spec = services[service]
        assert spec["command"] == [service, "--config", "/etc/switchboard/switchboard.toml"]
        assert spec["build"]["dockerfile"] == "deploy/Dockerfile"
        env = spec["environment"]
        assert env["SWITCHBOARD_KAFKA__BROKERS"] == "kafka:9092"
        assert env["SWITCHBOARD_REDIS__URL"].startswith("redis://redis:")
        assert env["SWITCHBOARD_POSTGRES__URL"].startswith("postgres://")
        assert env["SWITCHBOARD_TELEMETRY__OTLP_ENDPOINT"] == "http://otel-collector:4317"
        port = config["services"][service]["listen"].rsplit(":", 1)[1]
        assert config["services"][service]["url"] == f"http://{service}:{port}"
        assert any(str(p).endswith(f":{port}:{port}") for p in spec["ports"])
        for backend in ("kafka", "redis", "postgres"):
            assert spec["depends_on"][backend]["condition"] == "service_healthy"
    assert (ROOT / "deploy" / "otel-collector.yaml").exists()
    otel = yaml.safe_load((ROOT / "deploy" / "otel-collector.yaml").read_text())
    assert "otlp" in otel["service"]["pipelines"]["traces"]["receivers"]
    _check_with_binary(COMPOSE_TOML.read_text(), tmp_path)


def _published(port: str | int | dict[str, Any]) -> tuple[str, int, int]:
    """(host ip, host port, container port) of a compose port, short or long syntax."""
    if isinstance(port, dict):
        return port.get("host_ip", "0.0.0.0"), int(port["published"]), int(port["target"])
    parts = str(port).split(":")
    assert len(parts) == 3, f"{port!r}: publish on an explicit host ip"
    return parts[0], int(parts[1]), int(parts[2])


def test_compose_publishes_metrics():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    config = tomllib.loads(COMPOSE_TOML.read_text())
    _check_http_listen(config, "deploy/switchboard.compose.toml")
    for service, host_port in COMPOSE_METRICS_HOST_PORTS.items():
        published = [_published(p) for p in services[service]["ports"]]
        assert ("127.0.0.1", host_port, METRICS_PORT) in published, f"{service}: {published}"
    every = [_published(p)[1] for spec in services.values() for p in spec.get("ports", [])]
    assert len(every) == len(set(every)), f"a host port is published twice: {sorted(every)}"


def test_compose_redis_keeps_routing_state():
    redis = yaml.safe_load(COMPOSE.read_text())["services"]["redis"]
    command = redis["command"]
    assert isinstance(command, list) and command[0] == "redis-server", command
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options.get("--appendonly") == "yes", command
    assert options.get("--appendfsync") == "everysec", command
    assert options.get("--maxmemory-policy") == "noeviction", command
    assert any(v.endswith(":/data") for v in redis["volumes"]), "the AOF must live on a volume"


def test_no_deployment_file_ships_a_key_whose_value_is_public():
    """Neither the compose stack nor the plain manifests configure an API key:
    a digest whose key is written anywhere public would open them to anyone."""
    config = tomllib.loads(COMPOSE_TOML.read_text())
    assert config["auth"].get("api_keys", []) == [], "compose configures no API key"
    k8s_config = (ROOT / "deploy" / "k8s" / "10-config.yaml").read_text()
    assert "sha256 =" not in k8s_config, "deploy/k8s configures no API key"
    assert "api-key new" in (ROOT / "docs" / "deploy.md").read_text(), "the docs say how to make one"


def test_dockerfile_runs_as_non_root_with_switchboard_entrypoint():
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["switchboard"]' in dockerfile
    assert "USER 10001" in dockerfile
    assert dockerfile.count("FROM ") >= 2, "multi-stage build expected"
