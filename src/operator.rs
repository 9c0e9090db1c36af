//! Operator commands: `switchboard dead-letters list` and
//! `switchboard dead-letters replay` against the configured Kafka, and
//! `switchboard api-key new`.

use std::io::Write;

use switchboard_core::event::ALL_TOPICS;
use switchboard_core::time::millis_from_timestamp;
use switchboard_platform::Config;
use switchboard_platform::bus::dead_letter::{
    DeadLetterEntry, DeadLetterFilter, DeadLetterId, list_dead_letters, replay_dead_letters,
};
use switchboard_platform::bus::kafka::KafkaBus;

/// What to do with dead letters.
#[derive(Debug, clap::Subcommand)]
pub enum DeadLetterAction {
    /// Lists dead letters, oldest first per partition: id
    /// (`partition:offset`), when, which consumer gave up, the original
    /// record's place, its tenant, and why.
    List {
        /// Only those this consumer wrote (e.g. `crm`, `routing`).
        #[arg(long)]
        consumer: Option<String>,
        /// Only those of this tenant.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Publishes dead letters' original records again on their topics, for
    /// every consumer of the topic to handle once more (they are
    /// idempotent).
    Replay {
        /// Dead-letter ids (`partition:offset`) from `list`.
        ids: Vec<String>,
        /// Every dead letter the filters select.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// Only those this consumer wrote (a named id outside the filters
        /// is refused as unknown).
        #[arg(long)]
        consumer: Option<String>,
        /// Only those of this tenant (likewise).
        #[arg(long)]
        tenant: Option<String>,
    },
}

pub async fn dead_letters(config: &Config, action: DeadLetterAction) -> anyhow::Result<()> {
    let bus = KafkaBus::connect(&config.kafka, &ALL_TOPICS).await?;
    match action {
        DeadLetterAction::List { consumer, tenant } => {
            let entries = list_dead_letters(&bus, &DeadLetterFilter { consumer, tenant }).await?;
            let mut out = std::io::stdout().lock();
            for entry in &entries {
                writeln!(out, "{}", describe(entry))?;
            }
            writeln!(out, "{} dead letters", entries.len())?;
        }
        DeadLetterAction::Replay { ids, all, consumer, tenant } => {
            if ids.is_empty() && !all {
                anyhow::bail!("name dead letters to replay (`partition:offset` from `list`) or pass --all");
            }
            let entries = list_dead_letters(&bus, &DeadLetterFilter { consumer, tenant }).await?;
            let chosen: Vec<DeadLetterEntry> = if all {
                entries
            } else {
                let wanted = ids.iter().map(|id| id.parse::<DeadLetterId>()).collect::<Result<Vec<_>, _>>()?;
                if let Some(missing) = wanted.iter().find(|id| !entries.iter().any(|entry| entry.id == **id)) {
                    anyhow::bail!("no dead letter {missing} (see `switchboard dead-letters list`)");
                }
                entries.into_iter().filter(|entry| wanted.contains(&entry.id)).collect()
            };
            let replayed = replay_dead_letters(&bus, &chosen).await?;
            println!("{replayed} dead letters replayed");
        }
    }
    Ok(())
}

/// One line per dead letter; control characters in stored text are escaped.
fn describe(entry: &DeadLetterEntry) -> String {
    let letter = &entry.letter;
    let when = letter.dead_letter_time.as_ref().map(millis_from_timestamp).map_or_else(String::new, |millis| {
        jiff::Timestamp::from_millisecond(millis).map_or_else(|_| millis.to_string(), |time| time.to_string())
    });
    format!(
        "{id}  {when}  consumer={consumer}  {topic}[{partition}]@{offset}  tenant={tenant}  {reason}: {message}",
        id = entry.id,
        consumer = letter.consumer.escape_debug(),
        topic = letter.topic.escape_debug(),
        partition = letter.partition,
        offset = letter.offset,
        tenant = if letter.tenant.is_empty() { "-".to_owned() } else { letter.tenant.escape_debug().to_string() },
        reason = letter.reason.escape_debug(),
        message = letter.message.escape_debug(),
    )
}

/// `prefix` and 32 random bytes in lowercase hex.
pub fn random_secret(prefix: &str) -> String {
    use rand::RngCore;
    let mut secret = [0_u8; 32];
    rand::rng().fill_bytes(&mut secret);
    format!("{prefix}{}", secret.iter().map(|byte| format!("{byte:02x}")).collect::<String>())
}

/// A new service key for `switchboard service-key new`, with where it goes:
/// the same value on every service, from a Secret.
pub fn new_service_key() -> String {
    let key = random_secret("sbs_");
    format!(
        "# Service key: the same on every service, kept in a Secret (never in a ConfigMap).\n\
         # Set it as SWITCHBOARD_AUTH__SERVICE_KEY={key}\n\
         # or in the [auth] section of switchboard.toml:\n\
         service_key = \"{key}\"\n"
    )
}

/// A new API key for `switchboard api-key new`: 24 random bytes behind the
/// recognisable prefix `sbk_` and a checksum (as keys made through the
/// API), and the `[[auth.api_keys]]` entry that holds
/// only its SHA-256. The key itself is printed once and stored nowhere.
pub fn new_api_key(name: &str, role: &str, tenant: Option<&str>, agent: Option<&str>) -> anyhow::Result<String> {
    let key = switchboard_platform::credentials::new_secret();
    let entry = switchboard_platform::config::ApiKeyConfig::for_key(name, &key, role, tenant, agent);
    // The same checks the configuration gets at start (the tenant must also
    // be listed in `auth.tenants` there).
    let mut check = Config::default();
    check.auth.tenants = tenant.map(|tenant| vec![tenant.to_owned()]).unwrap_or_default();
    check.auth.api_keys = vec![entry.clone()];
    check.validate()?;
    let mut printed = format!(
        "# API key `{name}`: give the key to its holder; only its SHA-256 is configured.\n# key: {key}\n[[auth.api_keys]]\nname = \"{name}\"\nsha256 = \"{}\"\nrole = \"{role}\"\n",
        entry.sha256
    );
    if let Some(tenant) = tenant {
        printed.push_str(&format!("tenant = \"{tenant}\"\n"));
    }
    if let Some(agent) = agent {
        printed.push_str(&format!("agent = \"{agent}\"\n"));
    }
    Ok(printed)
}
