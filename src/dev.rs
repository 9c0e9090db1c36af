//! `switchboard dev`: development tenants and API keys, and the banner that
//! tells a newcomer where everything is.

use switchboard_platform::Config;
use switchboard_platform::auth::hash_api_key;
use switchboard_platform::config::ApiKeyConfig;

use crate::wiring::StartedService;

/// Development keys: (key, role, tenant, agent). Printed by `dev`; never
/// configured outside it.
pub const DEV_KEYS: [(&str, &str, Option<&str>, Option<&str>); 8] = [
    ("dev-operator-admin", "operator_admin", None, None),
    ("dev-acme-admin", "tenant_admin", Some("acme"), None),
    ("dev-acme-reader", "tenant_reader", Some("acme"), None),
    ("dev-globex-admin", "tenant_admin", Some("globex"), None),
    ("dev-globex-reader", "tenant_reader", Some("globex"), None),
    ("dev-agent-alice", "agent", None, Some("alice")),
    ("dev-agent-bob", "agent", None, Some("bob")),
    ("dev-agent-carol", "agent", None, Some("carol")),
];

/// Adds the development tenants and keys unless the configuration already
/// defines keys of its own.
pub fn apply_dev_defaults(config: &mut Config) -> anyhow::Result<()> {
    if config.auth.api_keys.is_empty() {
        for tenant in ["acme", "globex"] {
            if !config.auth.tenants.iter().any(|known| known == tenant) {
                config.auth.tenants.push(tenant.to_owned());
            }
        }
        config.auth.api_keys = DEV_KEYS
            .iter()
            .map(|(key, role, tenant, agent)| ApiKeyConfig {
                name: (*key).to_owned(),
                sha256: hash_api_key(key),
                role: (*role).to_owned(),
                tenant: tenant.map(str::to_owned),
                agent: agent.map(str::to_owned),
            })
            .collect();
    }
    config.validate()
}

pub fn print_banner(started: &[StartedService]) {
    let mut banner = String::from(
        "\nswitchboard dev is running (embedded backends; state is lost on exit)\n\n  endpoints (gRPC with reflection and health; HTTP with /metrics, /healthz, /readyz):\n",
    );
    for service in started {
        let http = service.http.map(|address| format!("http://{address}")).unwrap_or_default();
        banner.push_str(&format!("    {:<10} {:<18} {http}\n", service.name, service.grpc.to_string()));
    }
    banner.push_str("\n  development API keys (send as `authorization: Bearer <key>`):\n");
    for (key, role, tenant, agent) in DEV_KEYS {
        let scope = tenant.map(|tenant| format!("tenant {tenant}")).or(agent.map(|agent| format!("agent {agent}")));
        banner.push_str(&format!("    {key:<20} {role:<15} {}\n", scope.unwrap_or_else(|| "all tenants".to_owned())));
    }
    banner.push_str("\n  try: grpcurl -plaintext -H 'authorization: Bearer dev-acme-admin' \\\n         -d '{\"parent\":\"tenants/acme\",\"queue_id\":\"support\",\"queue\":{\"channels\":[\"CHANNEL_CHAT\"]}}' \\\n         ");
    let routing = started.iter().find(|service| service.name == "routing").map(|service| service.grpc.to_string());
    banner.push_str(&routing.unwrap_or_default());
    banner.push_str(" switchboard.routing.v1.RoutingService/CreateQueue\n");
    println!("{banner}");
}
