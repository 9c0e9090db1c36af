"""An outside integrator's view: plain Python grpcio against `switchboard dev`.

Compiles the published .proto files with grpc_tools at test time (nothing
generated is checked in), starts the binary on free loopback ports, and uses
only what an integrator has: the protos, gRPC health, server reflection and
an API key.

    SWITCHBOARD_BIN=target/debug/switchboard .test-env/venv/bin/python -m pytest -q tests/python/test_integrator.py
"""

from __future__ import annotations

import importlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = ROOT / "proto"
SERVICES = {
    "ingestion": "switchboard.ingestion.v1.IngestionService",
    "routing": "switchboard.routing.v1.RoutingService",
    "presence": "switchboard.presence.v1.PresenceService",
    "crm": "switchboard.crm.v1.CrmService",
    "kpi": "switchboard.kpi.v1.KpiService",
}
STARTUP_TIMEOUT_S = 60
RPC_TIMEOUT_S = 10
SHUTDOWN_TIMEOUT_S = 20


def _bearer(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _binary() -> Path:
    configured = os.environ.get("SWITCHBOARD_BIN", "target/debug/switchboard")
    path = Path(configured)
    if not path.is_absolute() and not path.exists():
        path = ROOT / path
    if not path.exists():
        pytest.fail(f"switchboard binary not found at {path} (SWITCHBOARD_BIN={configured!r}); "
                    "build it first: cargo build --bin switchboard")
    return path.resolve()


class Protos:
    """Python modules generated from proto/**/*.proto."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir

    def module(self, area: str, suffix: str) -> ModuleType:
        return importlib.import_module(f"switchboard.{area}.v1.{area}_{suffix}")


@pytest.fixture(scope="module")
def protos() -> Iterator[Protos]:
    import grpc_tools
    from grpc_tools import protoc

    files = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    assert files, f"no .proto files under {PROTO_ROOT}"
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory(prefix="switchboard-protos-") as out:
        status = protoc.main([
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            *files,
        ])
        assert status == 0, f"protoc failed on {files}"
        sys.path.insert(0, out)
        try:
            yield Protos(Path(out))
        finally:
            sys.path.remove(out)
            for name in [n for n in sys.modules if n == "switchboard" or n.startswith("switchboard.")]:
                del sys.modules[name]


class Server:
    def __init__(self, process: subprocess.Popen, ports: dict[str, int], log: Path):
        self.process = process
        self.ports = ports
        self.log = log
        self.channels: dict[str, grpc.Channel] = {}

    def channel(self, service: str) -> grpc.Channel:
        if service not in self.channels:
            self.channels[service] = grpc.insecure_channel(f"127.0.0.1:{self.ports[service]}")
        return self.channels[service]

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def close_channels(self) -> None:
        for channel in self.channels.values():
            channel.close()
        self.channels.clear()


def _serving(channel: grpc.Channel, service: str = "") -> bool:
    try:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=2)
    except grpc.RpcError:
        return False
    return response.status == health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    binary = _binary()
    ports = dict(zip(SERVICES, _free_ports(len(SERVICES))))
    # Only our endpoint settings: any other SWITCHBOARD_* in the caller's
    # environment (test backends, a developer's overrides) stays out.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    for service, port in ports.items():
        env[f"SWITCHBOARD_SERVICES__{service.upper()}__LISTEN"] = f"127.0.0.1:{port}"
        env[f"SWITCHBOARD_SERVICES__{service.upper()}__URL"] = f"http://127.0.0.1:{port}"
        env[f"SWITCHBOARD_SERVICES__{service.upper()}__HTTP_LISTEN"] = "127.0.0.1:0"
    env.setdefault("RUST_LOG", "info")
    log = tmp_path_factory.mktemp("switchboard") / "switchboard-dev.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen([str(binary), "dev"], env=env, stdin=subprocess.DEVNULL, stdout=log_file,
                                   stderr=subprocess.STDOUT, cwd=ROOT)
    running = Server(process, ports, log)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        waiting = set(SERVICES)
        while waiting:
            if process.poll() is not None:
                pytest.fail(f"`switchboard dev` exited with {process.returncode} while starting:\n{running.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"health of {sorted(waiting)} not SERVING after {STARTUP_TIMEOUT_S}s:\n"
                            f"{running.log_tail()}")
            waiting = {s for s in waiting if not _serving(running.channel(s))}
            if waiting:
                time.sleep(0.2)
        yield running
    finally:
        running.close_channels()
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


# ------------------------------------------------------------------- tests ---


def test_every_service_reports_serving_for_itself(server):
    for service, name in SERVICES.items():
        assert _serving(server.channel(service)), f"{service}: overall health not SERVING"
        assert _serving(server.channel(service), name), f"{service}: health of {name} not SERVING"


def _reflection_service_names(channel: grpc.Channel) -> list[str]:
    """ListServices over server reflection, v1 first, then v1alpha.

    The two versions share their messages' wire format; only the method path
    differs, so the v1alpha message classes serve both.
    """
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    last_error: grpc.RpcError | None = None
    for package in ("grpc.reflection.v1", "grpc.reflection.v1alpha"):
        call = channel.stream_stream(
            f"/{package}.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        try:
            responses = list(call(iter([request]), timeout=RPC_TIMEOUT_S))
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise
            last_error = error
            continue
        assert responses, "reflection answered nothing"
        return [s.name for s in responses[0].list_services_response.service]
    raise AssertionError(f"server reflection is not served: {last_error}")


def test_reflection_lists_the_ingestion_service(server):
    names = _reflection_service_names(server.channel("ingestion"))
    assert "switchboard.ingestion.v1.IngestionService" in names, names


def _file_containing(channel: grpc.Channel, symbol: str):
    """The FileDescriptorProto that declares `symbol`, over v1alpha reflection."""
    from google.protobuf import descriptor_pb2

    call = channel.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
    responses = list(call(iter([request]), timeout=RPC_TIMEOUT_S))
    files = [descriptor_pb2.FileDescriptorProto.FromString(raw)
             for raw in responses[0].file_descriptor_response.file_descriptor_proto]
    return next(f for f in files if any(s.name == symbol.rsplit(".", 1)[-1] for s in f.service))


def test_reflection_serves_the_kpi_definitions_as_comments(server):
    """`grpcurl describe` shows the proto comments: the KPI definitions live in the API itself."""
    kpi = _file_containing(server.channel("kpi"), "switchboard.kpi.v1.KpiService")
    summary_index, summary = next((i, m) for i, m in enumerate(kpi.message_type) if m.name == "KpiSummary")
    comments = {}
    for location in kpi.source_code_info.location:
        # [4, message index, 2, field index]: a field of a top-level message.
        if list(location.path[:2]) == [4, summary_index] and len(location.path) == 4 and location.path[2] == 2:
            comments[summary.field[location.path[3]].name] = " ".join(location.leading_comments.split())
    assert "Call Abandon Rate" in comments.get("car", ""), comments.get("car")
    assert "short-abandon threshold" in comments.get("short_abandoned", ""), comments.get("short_abandoned")
    assert "wait" in comments.get("asa", ""), comments.get("asa")
    service_comment = " ".join(next(
        location.leading_comments for location in kpi.source_code_info.location if list(location.path) == [6, 0]
    ).split())
    assert "wait** runs from the instant it entered the queue" in service_comment, service_comment


@pytest.fixture(scope="module")
def acme_contact(server, protos):
    """Queue tenants/acme/queues/support and one chat contact in it, as dev-acme-admin."""
    common = protos.module("common", "pb2")
    routing_pb2 = protos.module("routing", "pb2")
    routing_grpc = protos.module("routing", "pb2_grpc")
    ingestion_pb2 = protos.module("ingestion", "pb2")
    ingestion_grpc = protos.module("ingestion", "pb2_grpc")

    queue = routing_grpc.RoutingServiceStub(server.channel("routing")).CreateQueue(
        routing_pb2.CreateQueueRequest(
            parent="tenants/acme",
            queue_id="support",
            queue=routing_pb2.Queue(display_name="Support", channels=[common.CHANNEL_CHAT]),
        ),
        metadata=_bearer("dev-acme-admin"),
        timeout=RPC_TIMEOUT_S,
    )
    assert queue.name == "tenants/acme/queues/support"

    identity = common.CustomerIdentity(kind=common.IDENTITY_KIND_CHAT_VISITOR, value="visitor-1")
    contact = ingestion_pb2.Contact(
        channel=common.CHANNEL_CHAT,
        direction=common.DIRECTION_INBOUND,
        queue="tenants/acme/queues/support",
        subject="Where is my order?",
        body="Hello, order 1234 has not arrived.",
        **{"from": identity},
    )
    created = ingestion_grpc.IngestionServiceStub(server.channel("ingestion")).CreateContact(
        ingestion_pb2.CreateContactRequest(parent="tenants/acme", contact=contact, request_id=str(uuid.uuid4())),
        metadata=_bearer("dev-acme-admin"),
        timeout=RPC_TIMEOUT_S,
    )
    return created


def test_tenant_admin_creates_a_queue_and_a_contact(acme_contact):
    assert acme_contact.name.startswith("tenants/acme/contacts/"), acme_contact.name
    assert acme_contact.customer.startswith("tenants/acme/customers/"), acme_contact.customer
    assert acme_contact.queue == "tenants/acme/queues/support"


def test_tenant_admin_reads_its_own_contact(server, protos, acme_contact):
    ingestion_pb2 = protos.module("ingestion", "pb2")
    stub = protos.module("ingestion", "pb2_grpc").IngestionServiceStub(server.channel("ingestion"))
    fetched = stub.GetContact(ingestion_pb2.GetContactRequest(name=acme_contact.name),
                              metadata=_bearer("dev-acme-admin"), timeout=RPC_TIMEOUT_S)
    assert fetched.name == acme_contact.name


def test_other_tenant_is_denied(server, protos, acme_contact):
    ingestion_pb2 = protos.module("ingestion", "pb2")
    stub = protos.module("ingestion", "pb2_grpc").IngestionServiceStub(server.channel("ingestion"))
    with pytest.raises(grpc.RpcError) as denied:
        stub.GetContact(ingestion_pb2.GetContactRequest(name=acme_contact.name),
                        metadata=_bearer("dev-globex-admin"), timeout=RPC_TIMEOUT_S)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED, denied.value


def test_no_key_is_unauthenticated(server, protos, acme_contact):
    ingestion_pb2 = protos.module("ingestion", "pb2")
    stub = protos.module("ingestion", "pb2_grpc").IngestionServiceStub(server.channel("ingestion"))
    with pytest.raises(grpc.RpcError) as refused:
        stub.GetContact(ingestion_pb2.GetContactRequest(name=acme_contact.name), timeout=RPC_TIMEOUT_S)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, refused.value


def test_contact_without_sender_is_invalid(server, protos):
    common = protos.module("common", "pb2")
    ingestion_pb2 = protos.module("ingestion", "pb2")
    stub = protos.module("ingestion", "pb2_grpc").IngestionServiceStub(server.channel("ingestion"))
    contact = ingestion_pb2.Contact(channel=common.CHANNEL_CHAT, queue="tenants/acme/queues/support")
    with pytest.raises(grpc.RpcError) as invalid:
        stub.CreateContact(
            ingestion_pb2.CreateContactRequest(parent="tenants/acme", contact=contact, request_id=str(uuid.uuid4())),
            metadata=_bearer("dev-acme-admin"),
            timeout=RPC_TIMEOUT_S,
        )
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT, invalid.value


def test_an_ivr_reads_the_queue_and_books_a_callback(server, protos, acme_contact):
    common = protos.module("common", "pb2")
    routing_pb2 = protos.module("routing", "pb2")
    stub = protos.module("routing", "pb2_grpc").RoutingServiceStub(server.channel("routing"))
    admin = _bearer("dev-acme-admin")
    deadline = time.monotonic() + RPC_TIMEOUT_S
    while True:
        assignment = stub.GetAssignment(routing_pb2.GetAssignmentRequest(contact=acme_contact.name),
                                        metadata=admin, timeout=RPC_TIMEOUT_S)
        if assignment.status == common.CONTACT_STATUS_QUEUED or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert assignment.status == common.CONTACT_STATUS_QUEUED, assignment
    status = stub.GetQueueStatus(routing_pb2.GetQueueStatusRequest(name="tenants/acme/queues/support"),
                                 metadata=admin, timeout=RPC_TIMEOUT_S)
    assert status.open
    [chat] = status.channels
    assert chat.channel == common.CHANNEL_CHAT and chat.waiting >= 1, status
    with pytest.raises(grpc.RpcError) as invalid:
        stub.RequestCallback(routing_pb2.RequestCallbackRequest(contact=acme_contact.name, phone_number="12345"),
                             metadata=admin, timeout=RPC_TIMEOUT_S)
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT, invalid.value
    assert "phone_number" in invalid.value.details(), invalid.value.details()
    booked = stub.RequestCallback(
        routing_pb2.RequestCallbackRequest(contact=acme_contact.name, phone_number="+4915112345678"),
        metadata=admin, timeout=RPC_TIMEOUT_S)
    assert booked.callback_number == "+4915112345678" and booked.position >= 1, booked


# Keep last: it stops the module's server.
def test_sigterm_shuts_down_cleanly_within_20s(server):
    server.close_channels()
    server.process.send_signal(signal.SIGTERM)
    try:
        code = server.process.wait(timeout=SHUTDOWN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {SHUTDOWN_TIMEOUT_S}s after SIGTERM:\n{server.log_tail()}")
    assert code == 0, f"exit code {code} after SIGTERM:\n{server.log_tail()}"
