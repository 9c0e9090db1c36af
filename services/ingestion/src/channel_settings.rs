//! A channel's settings: what each provider needs, which fields are
//! secrets, how an update mask applies, and the provider accounts the
//! pure formats in [`crate::channels`] work with. Pure functions.

use switchboard_core::error::FieldViolation;
use switchboard_core::identity::{IdentityKind, normalize_identity};
use switchboard_core::names::parse_queue;
use switchboard_core::time::checked_duration_millis;
use switchboard_core::{Error, TenantId};
use switchboard_proto::ingestion::v1::channel::Provider;
use switchboard_proto::ingestion::v1::{
    Channel, EmailSettings, MailSecurity, MailServer, MetaProduct, MetaSettings, TelegramSettings, TwilioSettings,
    WebChatSettings, WebFormSettings,
};

use crate::channels::meta::{MetaAccount, MetaProduct as MetaKind};
use crate::channels::telegram::{TelegramBot, is_valid_secret};
use crate::channels::twilio::TwilioAccount;

/// Twilio's public API.
pub const TWILIO_API: &str = "https://api.twilio.com";
/// Meta's public Graph API, at the version the formats follow.
pub const META_GRAPH_API: &str = "https://graph.facebook.com/v21.0";
/// Telegram's public Bot API.
pub const TELEGRAM_BOT_API: &str = "https://api.telegram.org";

/// What `UpdateChannel`'s mask may name.
pub const UPDATABLE_FIELDS: &[&str] = &[
    "display_name",
    "queue",
    "disabled",
    "conversation_window",
    "twilio.account_sid",
    "twilio.from",
    "twilio.api_base_url",
    "twilio.auth_token",
    "meta.phone_number_id",
    "meta.api_base_url",
    "meta.app_secret",
    "meta.verify_token",
    "meta.access_token",
    "telegram.api_base_url",
    "telegram.bot_token",
    "telegram.webhook_secret",
    "web_form.honeypot_field",
    "web_form.allowed_origins",
    "web_form.success_url",
    "social.signing_secret",
    "email.address",
    "email.signing_secret",
    "email.smtp",
    "email.smtp.password",
    "email.imap",
    "email.imap.password",
    "email.imap_folder",
    "web_chat.allowed_origins",
    "web_chat.greeting",
    "web_chat.title",
    "cti.signing_secret",
    "cti.queues",
    "cti.decision_url",
];

const MAX_DISPLAY_NAME_CHARS: usize = 200;
const MIN_WINDOW_MS: i64 = 60_000;
const MAX_WINDOW_MS: i64 = 30 * 24 * 3_600_000;
const MAX_SECRET_BYTES: usize = 1024;
const MAX_URL_BYTES: usize = 2048;

#[derive(Default)]
struct Violations(Vec<FieldViolation>);

impl Violations {
    fn add(&mut self, field: String, description: impl Into<String>) {
        self.0.push(FieldViolation { field, description: description.into() });
    }

    fn required(&mut self, field: String, value: &str) -> bool {
        if value.is_empty() {
            self.add(field, "is required");
            return false;
        }
        true
    }

    fn secret(&mut self, field: String, value: &str) {
        if !self.required(field.clone(), value) {
            return;
        }
        if value.len() > MAX_SECRET_BYTES || !value.bytes().all(|byte| byte.is_ascii_graphic()) {
            self.add(field, format!("must be at most {MAX_SECRET_BYTES} printable ASCII characters without spaces"));
        }
    }

    fn base_url(&mut self, field: String, value: &str) {
        let well_formed = (value.starts_with("https://") || value.starts_with("http://"))
            && value.len() <= MAX_URL_BYTES
            && value.bytes().all(|byte| byte.is_ascii_graphic());
        if !value.is_empty() && !well_formed {
            self.add(field, "must be empty or an http(s) URL");
        }
    }
}

/// Checks `channel` as it would be stored: every setting and secret its
/// provider needs, all problems at once. Errors name fields under `field`.
pub fn validate_channel(tenant: &TenantId, channel: &Channel, field: &str) -> Result<(), Error> {
    let mut violations = Violations::default();
    let display_name_ok = channel.display_name.chars().count() <= MAX_DISPLAY_NAME_CHARS
        && !channel.display_name.chars().any(char::is_control);
    if !display_name_ok {
        violations.add(
            format!("{field}.display_name"),
            format!("must be at most {MAX_DISPLAY_NAME_CHARS} characters, no control characters"),
        );
    }
    match parse_queue(&channel.queue, &format!("{field}.queue")) {
        Ok((queue_tenant, _)) if queue_tenant != *tenant => {
            violations.add(format!("{field}.queue"), format!("must be a queue of tenant `{tenant}`"));
        }
        Ok(_) => {}
        Err(error) => violations.0.extend(error.field_violations),
    }
    if let Some(window) = &channel.conversation_window {
        let window_field = format!("{field}.conversation_window");
        match checked_duration_millis(window) {
            Ok(millis) if (MIN_WINDOW_MS..=MAX_WINDOW_MS).contains(&millis) => {}
            Ok(_) => violations.add(window_field, "must be between 1 minute and 30 days"),
            Err(problem) => violations.add(window_field, problem),
        }
    }
    match &channel.provider {
        None => violations.add(
            format!("{field}.provider"),
            "is required: one of twilio, meta, telegram, web_form, social, email, web_chat, cti",
        ),
        Some(Provider::Twilio(twilio)) => validate_twilio(&mut violations, twilio, &format!("{field}.twilio")),
        Some(Provider::Meta(meta)) => validate_meta(&mut violations, meta, &format!("{field}.meta")),
        Some(Provider::Telegram(telegram)) => {
            validate_telegram(&mut violations, telegram, &format!("{field}.telegram"))
        }
        Some(Provider::WebForm(form)) => validate_web_form(&mut violations, form, &format!("{field}.web_form")),
        Some(Provider::Social(social)) => {
            violations.secret(format!("{field}.social.signing_secret"), &social.signing_secret);
        }
        Some(Provider::Email(email)) => validate_email(&mut violations, email, &format!("{field}.email")),
        Some(Provider::WebChat(chat)) => validate_web_chat(&mut violations, chat, &format!("{field}.web_chat")),
        Some(Provider::Cti(cti)) => {
            violations.secret(format!("{field}.cti.signing_secret"), &cti.signing_secret);
            if cti.queues.len() > 100 {
                violations.add(format!("{field}.cti.queues"), "at most 100 queues");
            }
            violations.base_url(format!("{field}.cti.decision_url"), &cti.decision_url);
            for (index, queue) in cti.queues.iter().enumerate() {
                if let Err(error) = switchboard_core::QueueId::parse(queue, &format!("{field}.cti.queues[{index}]")) {
                    violations.0.extend(error.field_violations);
                }
            }
        }
    }
    if violations.0.is_empty() { Ok(()) } else { Err(Error::invalid_fields(violations.0)) }
}

fn validate_email(violations: &mut Violations, email: &EmailSettings, field: &str) {
    let address_field = format!("{field}.address");
    if violations.required(address_field.clone(), &email.address)
        && let Err(error) = normalize_identity(IdentityKind::Email, &email.address, &address_field)
    {
        violations.0.extend(error.field_violations);
    }
    match &email.imap {
        None => violations.secret(format!("{field}.signing_secret"), &email.signing_secret),
        Some(imap) => {
            if !email.signing_secret.is_empty() {
                violations.secret(format!("{field}.signing_secret"), &email.signing_secret);
            }
            validate_mail_server(violations, imap, &format!("{field}.imap"), true);
        }
    }
    if let Some(smtp) = &email.smtp {
        validate_mail_server(violations, smtp, &format!("{field}.smtp"), false);
    }
    let folder_ok = email.imap_folder.len() <= 200
        && !email.imap_folder.chars().any(|character| character.is_control() || character == '"' || character == '\\');
    if !folder_ok {
        violations
            .add(format!("{field}.imap_folder"), "must be at most 200 characters, no control characters, `\"` or `\\`");
    }
}

fn validate_mail_server(violations: &mut Violations, server: &MailServer, field: &str, account_required: bool) {
    let host_field = format!("{field}.host");
    if violations.required(host_field.clone(), &server.host) {
        let host_ok = server.host.len() <= 253
            && server.host.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b':'));
        if !host_ok {
            violations.add(host_field, "must be a host name or an IP address");
        }
    }
    if server.port > u32::from(u16::MAX) {
        violations.add(format!("{field}.port"), "must be at most 65535 (0: the default port)");
    }
    if MailSecurity::try_from(server.security).is_err() {
        violations.add(format!("{field}.security"), "must be TLS, STARTTLS or NONE");
    }
    let username_field = format!("{field}.username");
    let username_ok =
        server.username.chars().count() <= 256 && !server.username.chars().any(|character| character.is_control());
    if !username_ok {
        violations.add(username_field.clone(), "must be at most 256 characters, no control characters");
    }
    if account_required {
        violations.required(username_field, &server.username);
    }
    if account_required || !server.username.is_empty() {
        violations.secret(format!("{field}.password"), &server.password);
    }
}

fn validate_twilio(violations: &mut Violations, twilio: &TwilioSettings, field: &str) {
    let sid_field = format!("{field}.account_sid");
    if violations.required(sid_field.clone(), &twilio.account_sid)
        && (twilio.account_sid.len() > 64 || !twilio.account_sid.bytes().all(|byte| byte.is_ascii_alphanumeric()))
    {
        violations.add(sid_field, "must be an account SID (letters and digits)");
    }
    let from_field = format!("{field}.from");
    if violations.required(from_field.clone(), &twilio.from) {
        let phone = twilio.from.strip_prefix("whatsapp:").unwrap_or(&twilio.from);
        if let Err(error) = normalize_identity(IdentityKind::Phone, phone, &from_field) {
            violations.0.extend(error.field_violations);
        }
    }
    violations.base_url(format!("{field}.api_base_url"), &twilio.api_base_url);
    violations.secret(format!("{field}.auth_token"), &twilio.auth_token);
}

fn validate_meta(violations: &mut Violations, meta: &MetaSettings, field: &str) {
    match MetaProduct::try_from(meta.product) {
        Ok(MetaProduct::Whatsapp) => {
            let id_field = format!("{field}.phone_number_id");
            if violations.required(id_field.clone(), &meta.phone_number_id)
                && (meta.phone_number_id.len() > 32 || !meta.phone_number_id.bytes().all(|byte| byte.is_ascii_digit()))
            {
                violations.add(id_field, "must be the number's id (digits)");
            }
        }
        Ok(MetaProduct::Messenger | MetaProduct::Instagram) => {}
        Ok(MetaProduct::Unspecified) | Err(_) => {
            violations.add(format!("{field}.product"), "must be WHATSAPP, MESSENGER or INSTAGRAM");
        }
    }
    violations.base_url(format!("{field}.api_base_url"), &meta.api_base_url);
    violations.secret(format!("{field}.app_secret"), &meta.app_secret);
    violations.secret(format!("{field}.verify_token"), &meta.verify_token);
    violations.secret(format!("{field}.access_token"), &meta.access_token);
}

fn validate_telegram(violations: &mut Violations, telegram: &TelegramSettings, field: &str) {
    violations.base_url(format!("{field}.api_base_url"), &telegram.api_base_url);
    violations.secret(format!("{field}.bot_token"), &telegram.bot_token);
    let secret_field = format!("{field}.webhook_secret");
    if violations.required(secret_field.clone(), &telegram.webhook_secret) && !is_valid_secret(&telegram.webhook_secret)
    {
        violations.add(secret_field, "must be 1-256 of A-Z, a-z, 0-9, `_` and `-`");
    }
}

fn validate_web_form(violations: &mut Violations, form: &WebFormSettings, field: &str) {
    let honeypot_ok = form.honeypot_field.len() <= 64
        && form.honeypot_field.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    if !honeypot_ok {
        violations.add(format!("{field}.honeypot_field"), "must be a field name: letters, digits, `_` and `-`");
    }
    validate_origins(violations, &form.allowed_origins, field);
    violations.base_url(format!("{field}.success_url"), &form.success_url);
}

fn validate_origins(violations: &mut Violations, origins: &[String], field: &str) {
    for (index, origin) in origins.iter().enumerate() {
        let scheme_and_host = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
        if !scheme_and_host.is_some_and(|host| {
            !host.is_empty() && !host.contains('/') && host.bytes().all(|byte| byte.is_ascii_graphic())
        }) {
            violations.add(format!("{field}.allowed_origins[{index}]"), "must be an origin: `https://host[:port]`");
        }
    }
}

fn validate_web_chat(violations: &mut Violations, chat: &WebChatSettings, field: &str) {
    validate_origins(violations, &chat.allowed_origins, field);
    let short_text = |text: &str, max: usize| text.chars().count() <= max && !text.chars().any(char::is_control);
    if !short_text(&chat.greeting, 500) {
        violations.add(format!("{field}.greeting"), "must be at most 500 characters, no control characters");
    }
    if !short_text(&chat.title, 100) {
        violations.add(format!("{field}.title"), "must be at most 100 characters, no control characters");
    }
}

/// The secrets of `channel` that are set, by path.
pub fn secrets_set(channel: &Channel) -> Vec<String> {
    let set = |path: &str, value: &str| (!value.is_empty()).then(|| path.to_owned());
    match &channel.provider {
        Some(Provider::Twilio(twilio)) => {
            [set("twilio.auth_token", &twilio.auth_token)].into_iter().flatten().collect()
        }
        Some(Provider::Meta(meta)) => [
            set("meta.app_secret", &meta.app_secret),
            set("meta.verify_token", &meta.verify_token),
            set("meta.access_token", &meta.access_token),
        ]
        .into_iter()
        .flatten()
        .collect(),
        Some(Provider::Telegram(telegram)) => {
            [set("telegram.bot_token", &telegram.bot_token), set("telegram.webhook_secret", &telegram.webhook_secret)]
                .into_iter()
                .flatten()
                .collect()
        }
        Some(Provider::Social(social)) => {
            [set("social.signing_secret", &social.signing_secret)].into_iter().flatten().collect()
        }
        Some(Provider::Cti(cti)) => [set("cti.signing_secret", &cti.signing_secret)].into_iter().flatten().collect(),
        Some(Provider::Email(email)) => {
            fn password(server: &Option<MailServer>) -> &str {
                server.as_ref().map_or("", |server| server.password.as_str())
            }
            [
                set("email.signing_secret", &email.signing_secret),
                set("email.smtp.password", password(&email.smtp)),
                set("email.imap.password", password(&email.imap)),
            ]
            .into_iter()
            .flatten()
            .collect()
        }
        Some(Provider::WebForm(_) | Provider::WebChat(_)) | None => Vec::new(),
    }
}

/// `channel` with every secret cleared: what the API answers.
pub fn without_secrets(mut channel: Channel) -> Channel {
    match &mut channel.provider {
        Some(Provider::Twilio(twilio)) => twilio.auth_token.clear(),
        Some(Provider::Meta(meta)) => {
            meta.app_secret.clear();
            meta.verify_token.clear();
            meta.access_token.clear();
        }
        Some(Provider::Telegram(telegram)) => {
            telegram.bot_token.clear();
            telegram.webhook_secret.clear();
        }
        Some(Provider::Social(social)) => social.signing_secret.clear(),
        Some(Provider::Cti(cti)) => cti.signing_secret.clear(),
        Some(Provider::Email(email)) => {
            email.signing_secret.clear();
            for server in [&mut email.smtp, &mut email.imap].into_iter().flatten() {
                server.password.clear();
            }
        }
        Some(Provider::WebForm(_) | Provider::WebChat(_)) | None => {}
    }
    channel
}

/// `stored` with the fields `paths` name taken from `changes`. A provider
/// path needs the stored channel and `changes` to be of that provider:
/// the provider itself never changes.
pub fn apply_update(mut stored: Channel, changes: &Channel, paths: &[String]) -> Result<Channel, Error> {
    for path in paths {
        match path.as_str() {
            "display_name" => stored.display_name = changes.display_name.clone(),
            "queue" => stored.queue = changes.queue.clone(),
            "disabled" => stored.disabled = changes.disabled,
            "conversation_window" => stored.conversation_window = changes.conversation_window,
            provider_path => {
                let (provider, setting) = provider_path.split_once('.').unwrap_or((provider_path, ""));
                let mismatch = || {
                    Error::invalid_field(
                        format!("channel.{provider}"),
                        "names another provider than the channel's; the provider cannot change, create another channel",
                    )
                };
                match (&mut stored.provider, &changes.provider) {
                    (Some(Provider::Twilio(into)), Some(Provider::Twilio(from))) if provider == "twilio" => {
                        match setting {
                            "account_sid" => into.account_sid.clone_from(&from.account_sid),
                            "from" => into.from.clone_from(&from.from),
                            "api_base_url" => into.api_base_url.clone_from(&from.api_base_url),
                            _ => into.auth_token.clone_from(&from.auth_token),
                        }
                    }
                    (Some(Provider::Meta(into)), Some(Provider::Meta(from))) if provider == "meta" => match setting {
                        "phone_number_id" => into.phone_number_id.clone_from(&from.phone_number_id),
                        "api_base_url" => into.api_base_url.clone_from(&from.api_base_url),
                        "app_secret" => into.app_secret.clone_from(&from.app_secret),
                        "verify_token" => into.verify_token.clone_from(&from.verify_token),
                        _ => into.access_token.clone_from(&from.access_token),
                    },
                    (Some(Provider::Telegram(into)), Some(Provider::Telegram(from))) if provider == "telegram" => {
                        match setting {
                            "api_base_url" => into.api_base_url.clone_from(&from.api_base_url),
                            "bot_token" => into.bot_token.clone_from(&from.bot_token),
                            _ => into.webhook_secret.clone_from(&from.webhook_secret),
                        }
                    }
                    (Some(Provider::WebForm(into)), Some(Provider::WebForm(from))) if provider == "web_form" => {
                        match setting {
                            "honeypot_field" => into.honeypot_field.clone_from(&from.honeypot_field),
                            "allowed_origins" => into.allowed_origins.clone_from(&from.allowed_origins),
                            _ => into.success_url.clone_from(&from.success_url),
                        }
                    }
                    (Some(Provider::WebChat(into)), Some(Provider::WebChat(from))) if provider == "web_chat" => {
                        match setting {
                            "allowed_origins" => into.allowed_origins.clone_from(&from.allowed_origins),
                            "greeting" => into.greeting.clone_from(&from.greeting),
                            _ => into.title.clone_from(&from.title),
                        }
                    }
                    (Some(Provider::Cti(into)), Some(Provider::Cti(from))) if provider == "cti" => match setting {
                        "queues" => into.queues.clone_from(&from.queues),
                        "decision_url" => into.decision_url.clone_from(&from.decision_url),
                        _ => into.signing_secret.clone_from(&from.signing_secret),
                    },
                    (Some(Provider::Social(into)), Some(Provider::Social(from))) if provider == "social" => {
                        into.signing_secret.clone_from(&from.signing_secret);
                    }
                    (Some(Provider::Email(into)), Some(Provider::Email(from))) if provider == "email" => {
                        match setting {
                            "address" => into.address.clone_from(&from.address),
                            "signing_secret" => into.signing_secret.clone_from(&from.signing_secret),
                            "imap_folder" => into.imap_folder.clone_from(&from.imap_folder),
                            "smtp" => into.smtp = replaced_server(into.smtp.take(), from.smtp.as_ref()),
                            "imap" => into.imap = replaced_server(into.imap.take(), from.imap.as_ref()),
                            "smtp.password" => set_password(&mut into.smtp, from.smtp.as_ref()),
                            _ => set_password(&mut into.imap, from.imap.as_ref()),
                        }
                    }
                    _ => return Err(mismatch()),
                }
            }
        }
    }
    Ok(stored)
}

/// `changes` (or nothing when it is unset), keeping the stored password.
fn replaced_server(stored: Option<MailServer>, changes: Option<&MailServer>) -> Option<MailServer> {
    let changes = changes?;
    let password = stored.map(|stored| stored.password).unwrap_or_default();
    Some(MailServer { password, ..changes.clone() })
}

fn set_password(stored: &mut Option<MailServer>, changes: Option<&MailServer>) {
    let password = changes.map(|changes| changes.password.clone()).unwrap_or_default();
    stored.get_or_insert_with(MailServer::default).password = password;
}

/// Which protocol a mail server is spoken to in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailProtocol {
    Smtp,
    Imap,
}

/// How a connection to a mail server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailTls {
    /// TLS from the first byte.
    Implicit,
    /// STARTTLS, which must succeed.
    StartTls,
    /// None: a trusted network only.
    Plain,
}

/// A mail server as the connectors dial it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailEndpoint {
    pub host: String,
    pub port: u16,
    pub tls: MailTls,
    /// Empty: no authentication.
    pub username: String,
    pub password: String,
}

/// The endpoint of a validated `server`, its port defaulted by protocol
/// and security.
pub fn mail_endpoint(server: &MailServer, protocol: MailProtocol) -> MailEndpoint {
    let tls = match MailSecurity::try_from(server.security) {
        Ok(MailSecurity::Starttls) => MailTls::StartTls,
        Ok(MailSecurity::None) => MailTls::Plain,
        Ok(MailSecurity::Tls | MailSecurity::Unspecified) | Err(_) => MailTls::Implicit,
    };
    let default_port = match (protocol, tls) {
        (MailProtocol::Smtp, MailTls::Implicit) => 465,
        (MailProtocol::Smtp, MailTls::StartTls) => 587,
        (MailProtocol::Smtp, MailTls::Plain) => 25,
        (MailProtocol::Imap, MailTls::Implicit) => 993,
        (MailProtocol::Imap, MailTls::StartTls | MailTls::Plain) => 143,
    };
    MailEndpoint {
        host: server.host.clone(),
        port: u16::try_from(server.port).ok().filter(|port| *port != 0).unwrap_or(default_port),
        tls,
        username: server.username.clone(),
        password: server.password.clone(),
    }
}

fn or_default(url: &str, default: &str) -> String {
    if url.is_empty() { default.to_owned() } else { url.trim_end_matches('/').to_owned() }
}

pub fn twilio_account(twilio: &TwilioSettings) -> TwilioAccount {
    TwilioAccount {
        account_sid: twilio.account_sid.clone(),
        auth_token: twilio.auth_token.clone(),
        from: twilio.from.clone(),
        api_base_url: or_default(&twilio.api_base_url, TWILIO_API),
    }
}

pub fn meta_account(meta: &MetaSettings) -> MetaAccount {
    let product = match MetaProduct::try_from(meta.product) {
        Ok(MetaProduct::Whatsapp) => MetaKind::WhatsApp { phone_number_id: meta.phone_number_id.clone() },
        Ok(MetaProduct::Instagram) => MetaKind::Instagram,
        _ => MetaKind::Messenger,
    };
    MetaAccount {
        product,
        app_secret: meta.app_secret.clone(),
        verify_token: meta.verify_token.clone(),
        access_token: meta.access_token.clone(),
        api_base_url: or_default(&meta.api_base_url, META_GRAPH_API),
    }
}

pub fn telegram_bot(telegram: &TelegramSettings) -> TelegramBot {
    TelegramBot {
        bot_token: telegram.bot_token.clone(),
        webhook_secret: telegram.webhook_secret.clone(),
        api_base_url: or_default(&telegram.api_base_url, TELEGRAM_BOT_API),
    }
}
