//! Bad bytes never reach a handler and never look like a server fault:
//! every RPC of the API answers a message that is not valid protobuf with
//! INVALID_ARGUMENT and `google.rpc` details (the descriptor set lists the
//! RPCs, so a new one is covered without touching this test), and an agent
//! session that sends a malformed or oversized message after `hello` ends
//! with INVALID_ARGUMENT or RESOURCE_EXHAUSTED, not OK.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use prost::Message;
use support::{Endpoints, Process, authorized, scratch_dir, service_of, wait_until_serving};
use switchboard_proto::presence::v1::{AgentSessionRequest, Hello, agent_session_request};
use switchboard_test_support::{RawCodec, every_rpc};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::client::Grpc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic_types::StatusExt;

const OPERATOR: &str = "dev-operator-admin";
const ALICE: &str = "dev-agent-alice";
/// Not a protobuf message: field 31, wire type 7 (which does not exist).
const GARBAGE: &[u8] = &[0xff, 0xff, 0xff, 0xff];

async fn raw_client(endpoints: &Endpoints, service: &str) -> Grpc<Channel> {
    let mut client = Grpc::new(endpoints.channel(service).await);
    client.ready().await.expect("the server is up");
    client
}

fn assert_malformed(status: &tonic::Status, path: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{path}: {status:?}");
    let info = status.get_details_error_info().unwrap_or_else(|| panic!("{path}: no ErrorInfo in {status:?}"));
    assert_eq!(info.reason, "MALFORMED_MESSAGE", "{path}");
    assert_eq!(info.domain, "switchboard.dev", "{path}");
}

async fn open_session(endpoints: &Endpoints) -> (mpsc::Sender<Vec<u8>>, tonic::Streaming<Vec<u8>>) {
    let (requests, outbound) = mpsc::channel(8);
    let hello = AgentSessionRequest {
        kind: Some(agent_session_request::Kind::Hello(Hello { agent: "agents/alice".to_owned() })),
    };
    requests.send(hello.encode_to_vec()).await.expect("send hello");
    let mut client = raw_client(endpoints, "presence").await;
    let path = PathAndQuery::from_static("/switchboard.presence.v1.PresenceService/AgentSession");
    let request = authorized(ALICE, ReceiverStream::new(outbound));
    let mut responses = client.streaming(request, path, RawCodec).await.expect("session opens").into_inner();
    let started = responses.next().await.expect("a first response").expect("session started");
    assert!(!started.is_empty());
    (requests, responses)
}

/// The status the session's stream ends with (skipping responses before it).
async fn end_of(mut responses: tonic::Streaming<Vec<u8>>) -> tonic::Status {
    while let Some(next) = responses.next().await {
        if let Err(status) = next {
            return status;
        }
    }
    panic!("the session ended with OK");
}

/// A message over the size limit: RESOURCE_EXHAUSTED naming the reason, and
/// no `RetryInfo` (retrying the same message cannot succeed).
fn assert_too_large(status: &tonic::Status, what: &str) {
    use tonic_types::StatusExt;
    let info = status.get_details_error_info().unwrap_or_else(|| panic!("{what}: ErrorInfo in {status:?}"));
    assert_eq!(info.reason, "MESSAGE_TOO_LARGE", "{what}");
    assert!(status.get_details_retry_info().is_none(), "{what}: nothing to retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_messages_are_the_callers_fault_on_every_rpc() {
    let dir = scratch_dir("malformed");
    let endpoints = Endpoints::pick();
    let mut processes = vec![Process::spawn("dev", &["dev"], &endpoints.env(), &dir)];
    wait_until_serving(&endpoints, &mut processes).await;

    let rpcs = every_rpc();
    assert!(rpcs.len() >= 29, "the descriptor set lists the API's RPCs: {}", rpcs.len());
    for (path, client_streaming) in rpcs.iter().filter(|(_, client_streaming)| !client_streaming) {
        let mut client = raw_client(&endpoints, service_of(path)).await;
        let method = PathAndQuery::try_from(path.as_str()).expect("path");
        let request = authorized(OPERATOR, GARBAGE.to_vec());
        // Unary and server-streaming calls decode the one request before the
        // handler runs; a server-streaming call may report it on the stream.
        let status = match client.server_streaming(request, method, RawCodec).await {
            Err(status) => status,
            Ok(response) => end_of(response.into_inner()).await,
        };
        assert!(!client_streaming);
        assert_malformed(&status, path);
    }

    let (requests, responses) = open_session(&endpoints).await;
    requests.send(GARBAGE.to_vec()).await.expect("send garbage");
    let status = end_of(responses).await;
    assert_malformed(&status, "AgentSession after hello");

    let (requests, responses) = open_session(&endpoints).await;
    requests.send(vec![0x0a; 300 * 1024]).await.expect("send an oversized message");
    let status = end_of(responses).await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_too_large(&status, "AgentSession after hello");
    drop(requests);

    // A unary request over the limit is refused before any handler runs,
    // with the same details (found from outside: none at all).
    let path = "/switchboard.routing.v1.RoutingService/ListQueues";
    let mut client = raw_client(&endpoints, service_of(path)).await;
    let method = PathAndQuery::try_from(path).expect("path");
    let oversized = authorized(OPERATOR, vec![0x0a; 300 * 1024]);
    let status = client.unary(oversized, method, RawCodec).await.expect_err("over the limit");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_too_large(&status, path);

    let status = processes.remove(0).terminate();
    assert!(status.success(), "dev exits cleanly: {status}");
}
