//! `switchboard dev`: development tenants and API keys, and the banner that
//! tells a newcomer where everything is.

use std::sync::OnceLock;
use std::time::Duration;
use switchboard_platform::Config;
use switchboard_platform::auth::authorized;

use switchboard_platform::config::ApiKeyConfig;
use switchboard_proto::common::v1::{Channel, ChannelCapacity};
use switchboard_proto::ingestion::v1::channel::Provider;
use switchboard_proto::ingestion::v1::channel_service_client::ChannelServiceClient;
use switchboard_proto::ingestion::v1::{
    Channel as ChannelResource, CreateChannelRequest, CtiSettings, EmailSettings, MetaProduct, MetaSettings,
    SocialSettings, TelegramSettings, TwilioSettings, WebChatSettings, WebFormSettings,
};
use switchboard_proto::presence::v1::presence_service_client::PresenceServiceClient;
use switchboard_proto::presence::v1::{Agent, CreateAgentRequest};
use switchboard_proto::routing::v1::routing_service_client::RoutingServiceClient;
use switchboard_proto::routing::v1::{CreateQueueRequest, Queue};
use tonic::Code;
use tonic::transport::Channel as GrpcChannel;

use crate::wiring::StartedService;

/// Development keys: (key, role, tenant, agent). Printed by `dev`; never
/// configured outside it.
pub const DEV_KEYS: [(&str, &str, Option<&str>, Option<&str>); 10] = [
    ("dev-operator-admin", "operator_admin", None, None),
    ("dev-acme-admin", "tenant_admin", Some("acme"), None),
    ("dev-acme-reader", "tenant_reader", Some("acme"), None),
    ("dev-acme-integration", "integration", Some("acme"), None),
    ("dev-acme-supervisor", "supervisor", Some("acme"), None),
    ("dev-globex-admin", "tenant_admin", Some("globex"), None),
    ("dev-globex-reader", "tenant_reader", Some("globex"), None),
    ("dev-agent-alice", "agent", None, Some("alice")),
    ("dev-agent-bob", "agent", None, Some("bob")),
    ("dev-agent-carol", "agent", None, Some("carol")),
];

/// The agents `dev` creates, with the tenants each serves: the ones the
/// development agent keys belong to.
pub const DEV_AGENTS: [(&str, &[&str]); 3] =
    [("alice", &["acme", "globex"]), ("bob", &["acme"]), ("carol", &["globex"])];

/// The key `dev` sets itself up with (an operator admin, random per
/// process, never printed), so a configuration file that redefines a
/// development key cannot stop the setup.
static SETUP_KEY: OnceLock<String> = OnceLock::new();
const SETUP_KEY_NAME: &str = "dev-setup";

fn setup_key() -> &'static str {
    SETUP_KEY.get_or_init(|| crate::operator::random_secret("sbk_"))
}

/// The development keys that work as printed: a configuration file's key
/// of the same name (which wins) may have another secret.
pub fn working_dev_keys(
    config: &Config,
) -> impl Iterator<Item = (&'static str, &'static str, Option<&str>, Option<&str>)> {
    DEV_KEYS.into_iter().filter(|(key, ..)| {
        let digest = switchboard_platform::auth::hash_api_key(key);
        config.auth.api_keys.iter().any(|configured| configured.name == *key && configured.sha256 == digest)
    })
}

/// Adds the development tenants and keys, beside any the configuration
/// defines (a key of the same name in the file wins, and the banner then
/// leaves it out), and the setup's own key.
pub fn apply_dev_defaults(config: &mut Config) -> anyhow::Result<()> {
    for tenant in ["acme", "globex"] {
        if !config.auth.tenants.iter().any(|known| known == tenant) {
            config.auth.tenants.push(tenant.to_owned());
        }
    }
    for (key, role, tenant, agent) in DEV_KEYS {
        if config.auth.api_keys.iter().any(|configured| configured.name == key) {
            continue;
        }
        config.auth.api_keys.push(ApiKeyConfig::for_key(key, key, role, tenant, agent));
    }
    config.auth.api_keys.retain(|configured| configured.name != SETUP_KEY_NAME);
    config.auth.api_keys.push(ApiKeyConfig::for_key(SETUP_KEY_NAME, setup_key(), "operator_admin", None, None));
    // The services of one process share it; nobody else needs to know it.
    if config.auth.service_key.is_none() {
        config.auth.service_key = Some(crate::operator::random_secret("sbs_"));
    }
    config.validate()
}

/// A channel to a service of this process, once it accepts connections.
pub(crate) async fn channel(url: &str) -> anyhow::Result<GrpcChannel> {
    for _ in 0..100 {
        if let Ok(channel) = GrpcChannel::from_shared(url.to_owned())?.connect().await {
            return Ok(channel);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("cannot reach {url}")
}

/// Success, or ALREADY_EXISTS (set up by an earlier run).
pub(crate) fn tolerate_existing<T>(outcome: Result<T, tonic::Status>) -> anyhow::Result<()> {
    match outcome {
        Ok(_) => Ok(()),
        Err(status) if status.code() == Code::AlreadyExists => Ok(()),
        Err(status) => Err(anyhow::anyhow!("dev setup failed: {}", status.message())),
    }
}

/// Creates the development agents through the presence API, so the agent
/// keys the banner prints can open a session at once.
pub async fn create_dev_agents(config: &Config) -> anyhow::Result<()> {
    let mut presence = PresenceServiceClient::new(channel(&config.services.presence.url).await?);
    for (agent_id, tenants) in DEV_AGENTS {
        let agent = Agent {
            display_name: agent_id.to_owned(),
            tenants: tenants.iter().map(|tenant| format!("tenants/{tenant}")).collect(),
            capacities: [(Channel::Voice, 1), (Channel::Chat, 3), (Channel::Email, 5)]
                .iter()
                .map(|(channel, max)| ChannelCapacity { channel: *channel as i32, max_concurrent: *max })
                .collect(),
            ..Agent::default()
        };
        let request = CreateAgentRequest { agent_id: agent_id.to_owned(), agent: Some(agent) };
        tolerate_existing(presence.create_agent(authorized(setup_key(), request)).await)?;
    }
    Ok(())
}

/// The queue `dev` creates for its demo channels' messages.
pub const DEV_MESSAGES_QUEUE: &str = "tenants/acme/queues/messages";
/// Twilio's auth token of the `sms` demo channel.
pub const DEV_TWILIO_AUTH_TOKEN: &str = "dev-twilio-auth-token";
/// Meta's app secret of the `whatsapp` and `messenger` demo channels.
pub const DEV_META_APP_SECRET: &str = "dev-meta-app-secret";
/// Meta's verify token of the `whatsapp` and `messenger` demo channels.
pub const DEV_META_VERIFY_TOKEN: &str = "dev-meta-verify-token";
/// The webhook secret token of the `telegram` demo channel.
pub const DEV_TELEGRAM_SECRET: &str = "dev_telegram_secret";
/// The signing secret of the `reviews` (social), `mail` (relay) and `pbx`
/// (CTI) demo channels.
pub const DEV_SIGNING_SECRET: &str = "dev-signing-secret";

/// The demo channels of acme: (id, provider settings). Their provider API
/// URLs point nowhere reachable (a name under the reserved `.invalid`):
/// replies are not sent in `dev`.
fn dev_channels() -> Vec<(&'static str, Provider)> {
    let unreachable_api = "http://provider.invalid".to_owned();
    let meta = |product: MetaProduct, phone_number_id: &str| MetaSettings {
        product: product as i32,
        phone_number_id: phone_number_id.to_owned(),
        api_base_url: unreachable_api.clone(),
        app_secret: DEV_META_APP_SECRET.to_owned(),
        verify_token: DEV_META_VERIFY_TOKEN.to_owned(),
        access_token: "dev-meta-access-token".to_owned(),
    };
    vec![
        (
            "sms",
            Provider::Twilio(TwilioSettings {
                account_sid: "ACdev0000000000000000000000000000".to_owned(),
                from: "+15550100".to_owned(),
                api_base_url: unreachable_api.clone(),
                auth_token: DEV_TWILIO_AUTH_TOKEN.to_owned(),
            }),
        ),
        ("whatsapp", Provider::Meta(meta(MetaProduct::Whatsapp, "100000000000001"))),
        ("messenger", Provider::Meta(meta(MetaProduct::Messenger, ""))),
        (
            "telegram",
            Provider::Telegram(TelegramSettings {
                api_base_url: unreachable_api.clone(),
                bot_token: "100000:dev-bot-token".to_owned(),
                webhook_secret: DEV_TELEGRAM_SECRET.to_owned(),
            }),
        ),
        (
            "chat",
            Provider::WebChat(WebChatSettings {
                greeting: "Hi! This is acme's demo chat: an agent on the messages queue answers.".to_owned(),
                ..WebChatSettings::default()
            }),
        ),
        ("web-form", Provider::WebForm(WebFormSettings::default())),
        ("pbx", Provider::Cti(CtiSettings { signing_secret: DEV_SIGNING_SECRET.to_owned(), ..CtiSettings::default() })),
        ("reviews", Provider::Social(SocialSettings { signing_secret: DEV_SIGNING_SECRET.to_owned() })),
        (
            "mail",
            Provider::Email(EmailSettings {
                address: "support@acme.example".to_owned(),
                signing_secret: DEV_SIGNING_SECRET.to_owned(),
                ..EmailSettings::default()
            }),
        ),
    ]
}

/// Creates acme's `messages` queue and a demo channel of each provider
/// kind on it, through the public APIs, so a newcomer can post a signed
/// webhook at once.
pub async fn create_dev_channels(config: &Config) -> anyhow::Result<()> {
    let mut routing = RoutingServiceClient::new(channel(&config.services.routing.url).await?);
    let queue = CreateQueueRequest {
        parent: "tenants/acme".to_owned(),
        queue_id: "messages".to_owned(),
        queue: Some(Queue { display_name: "Messages from every channel".to_owned(), ..Queue::default() }),
    };
    tolerate_existing(routing.create_queue(authorized(setup_key(), queue)).await)?;
    let mut channels = ChannelServiceClient::new(channel(&config.services.ingestion.url).await?);
    for (channel_id, provider) in dev_channels() {
        let request = CreateChannelRequest {
            parent: "tenants/acme".to_owned(),
            channel_id: channel_id.to_owned(),
            channel: Some(ChannelResource {
                display_name: format!("demo {channel_id}"),
                queue: DEV_MESSAGES_QUEUE.to_owned(),
                provider: Some(provider),
                ..ChannelResource::default()
            }),
        };
        tolerate_existing(channels.create_channel(authorized(setup_key(), request)).await)?;
    }
    Ok(())
}

/// What `dev` prints once it is up: the endpoints and the development keys
/// that work, then, unless `short` (the demo, whose live summary follows),
/// the agents, channels and examples to try.
pub fn print_banner(started: &[StartedService], config: &Config, short: bool) {
    let mut banner = String::from(
        "\nswitchboard dev is running (embedded backends; state is lost on exit)\n\n  endpoints (gRPC with reflection and health; HTTP with /metrics, /healthz, /readyz):\n",
    );
    for service in started {
        let http = service.http.map(|address| format!("http://{address}")).unwrap_or_default();
        banner.push_str(&format!("    {:<10} {:<18} {http}\n", service.name, service.grpc.to_string()));
    }
    let working: Vec<_> = working_dev_keys(config).collect();
    if short {
        let names: Vec<&str> = working.iter().map(|(key, ..)| *key).collect();
        banner.push_str(&format!(
            "\n  API keys (`authorization: Bearer <key>`): {}\n  (`switchboard dev` without --demo explains each, with examples)\n",
            names.join(", ")
        ));
        println!("{banner}");
        return;
    }
    banner.push_str("\n  development API keys (send as `authorization: Bearer <key>`):\n");
    for (key, role, tenant, agent) in &working {
        let scope = tenant.map(|tenant| format!("tenant {tenant}")).or(agent.map(|agent| format!("agent {agent}")));
        banner.push_str(&format!("    {key:<20} {role:<15} {}\n", scope.unwrap_or_else(|| "all tenants".to_owned())));
    }
    for (key, ..) in DEV_KEYS.iter().filter(|(key, ..)| !working.iter().any(|(working, ..)| working == key)) {
        banner.push_str(&format!("    {key:<20} (defined by the configuration file with its own secret)\n"));
    }
    banner.push_str(
        "\n  agents alice (acme, globex), bob (acme) and carol (globex) exist; open an AgentSession with their keys\n",
    );
    let presence = started.iter().find(|service| service.name == "presence").map(|service| service.grpc.to_string());
    banner.push_str(&format!(
        "  tenants, API keys and the audit at runtime: switchboard.access.v1.AccessService on {} (dev-operator-admin)\n",
        presence.unwrap_or_default()
    ));
    banner.push_str("\n  try: grpcurl -plaintext -H 'authorization: Bearer dev-acme-admin' \\\n         -d '{\"parent\":\"tenants/acme\",\"queue_id\":\"support\",\"queue\":{\"channels\":[\"CHANNEL_CHAT\"]}}' \\\n         ");
    let routing = started.iter().find(|service| service.name == "routing").map(|service| service.grpc.to_string());
    banner.push_str(&routing.unwrap_or_default());
    banner.push_str(" switchboard.routing.v1.RoutingService/CreateQueue\n");
    let webhooks = started.iter().find(|service| service.name == "ingestion").and_then(|service| service.http);
    if let Some(webhooks) = webhooks {
        banner.push_str(&format!(
            "\n  channel webhooks at http://{webhooks}/webhooks/acme/{{sms,whatsapp,messenger,telegram,web-form,reviews,mail,pbx}} \
             (into {DEV_MESSAGES_QUEUE});\n  \
             secrets: twilio auth token {DEV_TWILIO_AUTH_TOKEN}, meta app secret {DEV_META_APP_SECRET} (verify token \
             {DEV_META_VERIFY_TOKEN}), telegram secret token {DEV_TELEGRAM_SECRET}, social, mail and pbx signing secret \
             {DEV_SIGNING_SECRET}\n  \
             web chat: open http://{webhooks}/webchat/acme/chat in a browser and answer as alice (dev-agent-alice)\n  \
             try: curl -H 'x-telegram-bot-api-secret-token: {DEV_TELEGRAM_SECRET}' -H 'content-type: application/json' \\\n         \
             -d '{{\"update_id\":1,\"message\":{{\"message_id\":1,\"date\":1767225600,\"text\":\"hello\",\"from\":{{\"id\":42,\"first_name\":\"Ann\"}},\"chat\":{{\"id\":42,\"type\":\"private\"}}}}}}' \\\n         \
             http://{webhooks}/webhooks/acme/telegram\n"
        ));
    }
    let kpi = started.iter().find(|service| service.name == "kpi").and_then(|service| service.http);
    if let Some(kpi) = kpi {
        banner.push_str(&format!(
            "\n  wallboard: open http://{kpi}/wallboard#tenant=acme and sign in with dev-acme-reader (or \
             dev-operator-admin and no tenant for every tenant)\n"
        ));
    }
    println!("{banner}");
}
