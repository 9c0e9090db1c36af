//! `UpdateAgent` with an update mask, the operator's `max_agents` quota on
//! `CreateAgent` and `UpdateAgent`, and an agent signing in with a token of
//! the operator's identity provider.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;

use prost_types::FieldMask;
use support::{Cluster, publish_contact_of};
use switchboard_platform::config::TenantPolicyConfig;
use switchboard_proto::common::v1::{Channel, ChannelCapacity};
use switchboard_proto::presence::v1::{Agent, CreateAgentRequest, GetAgentRequest, UpdateAgentRequest};
use switchboard_proto::routing::v1::{CreateQueueRequest, Queue};
use switchboard_test_support::identity_provider::{Signer, TestIdentityProvider};
use switchboard_test_support::{authorized, error_reason, violated_fields};
use tonic::Code;

fn update(agent: Agent, paths: &[&str]) -> UpdateAgentRequest {
    UpdateAgentRequest {
        agent: Some(agent),
        update_mask: Some(FieldMask { paths: paths.iter().map(|path| (*path).to_owned()).collect() }),
    }
}

async fn get_alice(cluster: &mut Cluster) -> Agent {
    let request = GetAgentRequest { name: "agents/alice".into() };
    cluster.presence.get_agent(authorized("operator", request)).await.unwrap().into_inner()
}

#[tokio::test]
async fn an_update_changes_only_the_masked_fields_and_a_refused_one_changes_nothing() {
    let mut cluster = Cluster::start().await;
    cluster.create_alice().await;
    let before = get_alice(&mut cluster).await;
    let renamed = Agent { name: "agents/alice".into(), display_name: "Alice A.".into(), ..Agent::default() };
    let updated = cluster.presence.update_agent(authorized("operator", update(renamed.clone(), &["display_name"])));
    let updated = updated.await.expect("renamed").into_inner();
    assert_eq!(updated.display_name, "Alice A.");
    assert_eq!(
        (updated.tenants, updated.skills, updated.capacities),
        (before.tenants, before.skills, before.capacities)
    );
    let after_rename = get_alice(&mut cluster).await;

    let refusals: Vec<(&str, UpdateAgentRequest, Code, &str)> = vec![
        (
            "no mask",
            UpdateAgentRequest { agent: Some(renamed.clone()), update_mask: None },
            Code::InvalidArgument,
            "update_mask",
        ),
        ("an output field", update(renamed.clone(), &["state"]), Code::InvalidArgument, "update_mask"),
        ("no tenants left", update(renamed.clone(), &["tenants"]), Code::InvalidArgument, "agent.tenants"),
        (
            "a name that is no agent",
            update(Agent { name: "queues/alice".into(), ..renamed.clone() }, &["display_name"]),
            Code::InvalidArgument,
            "agent.name",
        ),
        ("no agent", UpdateAgentRequest { agent: None, update_mask: None }, Code::InvalidArgument, "agent"),
    ];
    for (case, request, code, field) in refusals {
        let refused = cluster.presence.update_agent(authorized("operator", request)).await.expect_err(case);
        assert_eq!((refused.code(), violated_fields(&refused)), (code, vec![field.to_owned()]), "{case}");
    }
    let unknown_tenant = Agent { tenants: vec!["tenants/umbrella".into()], ..renamed.clone() };
    let refused = cluster.presence.update_agent(authorized("operator", update(unknown_tenant, &["tenants"]))).await;
    assert_eq!(refused.expect_err("unknown tenant").code(), Code::NotFound);
    let nobody = Agent { name: "agents/nobody".into(), ..renamed.clone() };
    let refused = cluster.presence.update_agent(authorized("operator", update(nobody, &["display_name"]))).await;
    assert_eq!(refused.expect_err("no such agent").code(), Code::NotFound);
    let refused = cluster.presence.update_agent(authorized("acme-admin", update(renamed, &["display_name"]))).await;
    assert_eq!(refused.expect_err("agents are the operator's").code(), Code::PermissionDenied);
    assert_eq!(get_alice(&mut cluster).await, after_rename, "no refusal changed anything");
    cluster.stop().await;
}

#[tokio::test]
async fn an_online_agent_given_another_tenant_is_offered_its_contacts_at_once() {
    let mut cluster = Cluster::start().await;
    cluster.create_alice().await;
    let queue = Queue { channels: vec![Channel::Chat as i32], ..Queue::default() };
    let request = CreateQueueRequest { parent: "tenants/globex".into(), queue_id: "sales".into(), queue: Some(queue) };
    cluster.routing.create_queue(authorized("globex-admin", request)).await.unwrap();
    let mut desktop = cluster.available_desktop("alice").await;
    let shared = Agent {
        name: "agents/alice".into(),
        tenants: vec!["tenants/acme".into(), "tenants/globex".into()],
        capacities: vec![ChannelCapacity { channel: Channel::Chat as i32, max_concurrent: 2 }],
        ..Agent::default()
    };
    cluster.presence.update_agent(authorized("operator", update(shared, &["tenants", "capacities"]))).await.unwrap();
    let contact = publish_contact_of(&cluster.bus, "globex", "sales").await;
    let offer = desktop.until_offer().await;
    assert_eq!(offer.contact, contact, "routing offers globex's contact to the agent it was just given to");
    cluster.stop().await;
}

#[tokio::test]
async fn agents_past_a_tenants_quota_are_refused_on_create_and_on_update() {
    let policy = TenantPolicyConfig { max_agents: Some(1), ..TenantPolicyConfig::default() };
    let mut cluster = Cluster::start_with_policies(BTreeMap::from([("acme".to_owned(), policy)])).await;
    cluster.create_alice().await;
    let shared = Agent {
        tenants: vec!["tenants/globex".into(), "tenants/acme".into()],
        capacities: vec![ChannelCapacity { channel: Channel::Chat as i32, max_concurrent: 1 }],
        ..Agent::default()
    };
    let request = CreateAgentRequest { agent_id: "bob".into(), agent: Some(shared.clone()) };
    let refused = cluster.presence.create_agent(authorized("operator", request)).await.expect_err("acme is full");
    assert_eq!((refused.code(), error_reason(&refused).as_deref()), (Code::ResourceExhausted, Some("QUOTA_EXCEEDED")));
    let globex_only = Agent { tenants: vec!["tenants/globex".into()], ..shared.clone() };
    let request = CreateAgentRequest { agent_id: "bob".into(), agent: Some(globex_only) };
    cluster.presence.create_agent(authorized("operator", request)).await.expect("globex has no quota");
    let to_acme = Agent { name: "agents/bob".into(), ..shared };
    let refused = cluster.presence.update_agent(authorized("operator", update(to_acme, &["tenants"]))).await;
    let refused = refused.expect_err("adding acme passes its quota");
    assert_eq!(error_reason(&refused).as_deref(), Some("QUOTA_EXCEEDED"));
    cluster.stop().await;
}

/// An agent created through the API signs in at once with a token from the
/// operator's identity provider, and is offered work; a token for another
/// agent opens no session.
#[tokio::test]
async fn an_agent_signs_in_with_the_identity_providers_token_and_is_offered_work() {
    let provider = TestIdentityProvider::start().await;
    let access = support::access(|auth| auth.oidc = Some(provider.config()));
    access.oidc().expect("configured").refresh().await.expect("the JWKS");
    let mut cluster = Cluster::start_with_access(|_| {}, access).await;
    let dana = Agent {
        tenants: vec!["tenants/acme".into()],
        capacities: vec![ChannelCapacity { channel: Channel::Chat as i32, max_concurrent: 1 }],
        ..Agent::default()
    };
    let request = CreateAgentRequest { agent_id: "dana".into(), agent: Some(dana) };
    cluster.presence.create_agent(authorized("operator", request)).await.expect("created");
    let queue = Queue { channels: vec![Channel::Chat as i32], ..Queue::default() };
    let request = CreateQueueRequest { parent: "tenants/acme".into(), queue_id: "support".into(), queue: Some(queue) };
    cluster.routing.create_queue(authorized("acme-admin", request)).await.unwrap();

    let claims = |agent: &str| {
        TestIdentityProvider::claims(
            &format!("{agent}@acme"),
            300,
            serde_json::json!({"switchboard_role": "agent", "switchboard_agent": agent}),
        )
    };
    let someone_else = provider.token(Signer::Es256, &claims("erin"));
    let refused = cluster.open_session(&someone_else, "dana").await.err().expect("another agent's token");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let token = provider.token(Signer::Rs256, &claims("dana"));
    let mut desktop = cluster.open_session(&token, "dana").await.expect("signed in");
    assert!(matches!(
        desktop.next().await,
        switchboard_proto::presence::v1::agent_session_response::Kind::SessionStarted(_)
    ));
    desktop.set_state(switchboard_proto::presence::v1::AgentState::Available, "").await;
    let contact = publish_contact_of(&cluster.bus, "acme", "support").await;
    assert_eq!(desktop.until_offer().await.contact, contact);
    cluster.stop().await;
}

/// A stream opened with a token of the identity provider ends when the
/// token does: the watcher must sign in again.
#[tokio::test]
async fn a_watch_opened_with_a_token_ends_when_the_token_expires() {
    let provider = TestIdentityProvider::start().await;
    let access = support::access(|auth| {
        let mut oidc = provider.config();
        oidc.leeway_secs = 0;
        auth.oidc = Some(oidc);
    });
    access.oidc().expect("configured").refresh().await.expect("the JWKS");
    let mut cluster = Cluster::start_with_access(|_| {}, access).await;
    let claims = TestIdentityProvider::claims(
        "ann@acme",
        2,
        serde_json::json!({"switchboard_role": "tenant_admin", "switchboard_tenant": "acme"}),
    );
    let token = provider.token(Signer::Es256, &claims);
    let request = switchboard_proto::presence::v1::WatchAgentStatesRequest { tenant: String::new() };
    let mut watch = cluster.presence.watch_agent_states(authorized(&token, request)).await.expect("open").into_inner();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), watch.message()).await.expect("ended in time");
    let status = ended.expect_err("ended with a status");
    assert_eq!((status.code(), error_reason(&status).as_deref()), (Code::Unauthenticated, Some("TOKEN_EXPIRED")));
    cluster.stop().await;
}
