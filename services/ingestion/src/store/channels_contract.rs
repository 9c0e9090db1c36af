//! The behaviour every [`ChannelStore`] must have: run on memory as a unit
//! test and on PostgreSQL in `tests/postgres_store.rs`. Each check uses
//! tenants of its own.

use anyhow::{Context, ensure};
use switchboard_core::{ChannelId, ErrorCode, TenantId};
use switchboard_platform::pagination::PageRequest;
use switchboard_proto::ingestion::v1::channel::Provider;
use switchboard_proto::ingestion::v1::{Channel, EmailSettings, MailServer, TelegramSettings};

use super::channels::ChannelStore;
use super::contract::fresh_tenant;

/// Runs every check against `store`.
pub async fn run_channel_contract(store: &dyn ChannelStore) -> anyhow::Result<()> {
    channels_round_trip_with_their_secrets(store).await.context("channels_round_trip_with_their_secrets")?;
    ids_are_unique_per_tenant(store).await.context("ids_are_unique_per_tenant")?;
    updates_name_the_revision_they_read(store).await.context("updates_name_the_revision_they_read")?;
    lists_page_by_id(store).await.context("lists_page_by_id")?;
    tenants_are_isolated(store).await.context("tenants_are_isolated")?;
    erasing_a_tenant_leaves_the_others(store).await.context("erasing_a_tenant_leaves_the_others")?;
    mailboxes_are_the_enabled_mail_channels_with_imap(store)
        .await
        .context("mailboxes_are_the_enabled_mail_channels_with_imap")?;
    one_replica_holds_a_mailbox_at_a_time(store).await.context("one_replica_holds_a_mailbox_at_a_time")?;
    Ok(())
}

/// A Telegram channel of `tenant` with a secret, as the API stores it.
pub fn sample_channel(tenant: &TenantId, channel_id: &str) -> Channel {
    Channel {
        name: format!("tenants/{tenant}/channels/{channel_id}"),
        display_name: format!("bot {channel_id}"),
        queue: format!("tenants/{tenant}/queues/support"),
        provider: Some(Provider::Telegram(TelegramSettings {
            api_base_url: String::new(),
            bot_token: "123:secret-token".to_owned(),
            webhook_secret: "hook_secret".to_owned(),
        })),
        ..Channel::default()
    }
}

fn id(value: &str) -> anyhow::Result<ChannelId> {
    Ok(ChannelId::parse(value, "channel_id")?)
}

async fn channels_round_trip_with_their_secrets(store: &dyn ChannelStore) -> anyhow::Result<()> {
    let tenant = fresh_tenant("channels-round-trip")?;
    let channel = sample_channel(&tenant, "telegram-bot");
    store.create(&tenant, &id("telegram-bot")?, &channel).await?;
    let stored = store.get(&tenant, &id("telegram-bot")?).await?.context("created channel is found")?;
    ensure!(stored.channel == channel, "the channel comes back whole, secrets included: {stored:?}");
    ensure!(stored.revision == 1, "a new channel is at revision 1");
    ensure!(store.get(&tenant, &id("other")?).await?.is_none(), "an unknown id is absent");
    ensure!(store.delete(&tenant, &id("telegram-bot")?).await?, "delete finds it");
    ensure!(!store.delete(&tenant, &id("telegram-bot")?).await?, "a second delete finds nothing");
    ensure!(store.get(&tenant, &id("telegram-bot")?).await?.is_none(), "a deleted channel is gone");
    Ok(())
}

async fn ids_are_unique_per_tenant(store: &dyn ChannelStore) -> anyhow::Result<()> {
    let tenant = fresh_tenant("channels-unique")?;
    store.create(&tenant, &id("sms")?, &sample_channel(&tenant, "sms")).await?;
    let again = store.create(&tenant, &id("sms")?, &sample_channel(&tenant, "sms")).await;
    ensure!(again.is_err_and(|error| error.code == ErrorCode::AlreadyExists), "a second create is ALREADY_EXISTS");
    Ok(())
}

async fn updates_name_the_revision_they_read(store: &dyn ChannelStore) -> anyhow::Result<()> {
    let tenant = fresh_tenant("channels-update")?;
    let channel_id = id("chat")?;
    store.create(&tenant, &channel_id, &sample_channel(&tenant, "chat")).await?;
    let renamed = Channel { display_name: "renamed".to_owned(), ..sample_channel(&tenant, "chat") };
    store.update(&tenant, &channel_id, 1, &renamed).await?;
    let stored = store.get(&tenant, &channel_id).await?.context("still there")?;
    ensure!(stored.channel == renamed && stored.revision == 2, "the update replaced it: {stored:?}");
    let stale = store.update(&tenant, &channel_id, 1, &sample_channel(&tenant, "chat")).await;
    ensure!(stale.is_err_and(|error| error.code == ErrorCode::Aborted), "an update of an older revision is ABORTED");
    let kept = store.get(&tenant, &channel_id).await?.context("still there")?;
    ensure!(kept.channel.display_name == "renamed", "the stale update changed nothing");
    let missing = store.update(&tenant, &id("missing")?, 1, &renamed).await;
    ensure!(missing.is_err_and(|error| error.code == ErrorCode::NotFound), "an update of nothing is NOT_FOUND");
    Ok(())
}

async fn lists_page_by_id(store: &dyn ChannelStore) -> anyhow::Result<()> {
    let tenant = fresh_tenant("channels-list")?;
    for channel_id in ["c", "a", "d", "b"] {
        store.create(&tenant, &id(channel_id)?, &sample_channel(&tenant, channel_id)).await?;
    }
    let names = |page: Vec<super::channels::StoredChannel>| {
        page.into_iter().map(|stored| stored.channel.display_name).collect::<Vec<_>>()
    };
    let first = store.list(&tenant, &PageRequest::resume_after(2, None)).await?;
    ensure!(names(first) == ["bot a", "bot b", "bot c"], "a page and one more, by id");
    let rest = store.list(&tenant, &PageRequest::resume_after(2, Some("b"))).await?;
    ensure!(names(rest) == ["bot c", "bot d"], "the next page starts after the key");
    Ok(())
}

async fn tenants_are_isolated(store: &dyn ChannelStore) -> anyhow::Result<()> {
    let acme = fresh_tenant("channels-acme")?;
    let globex = fresh_tenant("channels-globex")?;
    store.create(&acme, &id("shared-name")?, &sample_channel(&acme, "shared-name")).await?;
    ensure!(store.get(&globex, &id("shared-name")?).await?.is_none(), "another tenant's channel is absent");
    ensure!(store.list(&globex, &PageRequest::resume_after(10, None)).await?.is_empty(), "lists are per tenant");
    ensure!(!store.delete(&globex, &id("shared-name")?).await?, "another tenant cannot delete it");
    let update = store.update(&globex, &id("shared-name")?, 1, &sample_channel(&globex, "shared-name")).await;
    ensure!(update.is_err_and(|error| error.code == ErrorCode::NotFound), "nor update it");
    store.create(&globex, &id("shared-name")?, &sample_channel(&globex, "shared-name")).await?;
    let acme_copy = store.get(&acme, &id("shared-name")?).await?.context("acme's is kept")?;
    ensure!(acme_copy.channel.name.starts_with(&format!("tenants/{acme}/")), "each tenant has its own");
    Ok(())
}

async fn mailboxes_are_the_enabled_mail_channels_with_imap(store: &dyn ChannelStore) -> anyhow::Result<()> {
    let tenant = fresh_tenant("channels-mailboxes")?;
    let mail = |imap: bool, disabled: bool| Channel {
        queue: format!("tenants/{tenant}/queues/support"),
        disabled,
        provider: Some(Provider::Email(EmailSettings {
            address: "support@example.com".to_owned(),
            signing_secret: "relay".to_owned(),
            imap: imap.then(|| MailServer {
                host: "imap.example.com".to_owned(),
                username: "support".to_owned(),
                password: "secret".to_owned(),
                ..MailServer::default()
            }),
            ..EmailSettings::default()
        })),
        ..Channel::default()
    };
    store.create(&tenant, &id("polled")?, &mail(true, false)).await?;
    store.create(&tenant, &id("relayed")?, &mail(false, false)).await?;
    store.create(&tenant, &id("paused")?, &mail(true, true)).await?;
    store.create(&tenant, &id("bot")?, &sample_channel(&tenant, "bot")).await?;
    let polled = |mailboxes: Vec<(TenantId, ChannelId, Channel)>| -> Vec<String> {
        mailboxes
            .into_iter()
            .filter(|(owner, ..)| *owner == tenant)
            .map(|(_, channel_id, _)| channel_id.to_string())
            .collect()
    };
    let mailboxes = store.mailboxes().await?;
    ensure!(polled(mailboxes.clone()) == ["polled"], "only the enabled channel with IMAP: {mailboxes:?}");
    ensure!(mailboxes.iter().any(|(_, _, channel)| *channel == mail(true, false)), "with its settings and secrets");

    store.update(&tenant, &id("polled")?, 1, &mail(true, true)).await?;
    store.update(&tenant, &id("paused")?, 1, &mail(true, false)).await?;
    ensure!(polled(store.mailboxes().await?) == ["paused"], "updates change which are polled");
    ensure!(store.delete(&tenant, &id("paused")?).await?, "delete finds it");
    ensure!(polled(store.mailboxes().await?).is_empty(), "a deleted channel is not polled");
    Ok(())
}

async fn one_replica_holds_a_mailbox_at_a_time(store: &dyn ChannelStore) -> anyhow::Result<()> {
    let tenant = fresh_tenant("channels-leases")?;
    let mailbox = id("support-mail")?;
    ensure!(store.lease_mailbox(&tenant, &mailbox, "replica-a", 1_000, 15_000).await?, "a free mailbox is taken");
    ensure!(!store.lease_mailbox(&tenant, &mailbox, "replica-b", 2_000, 15_000).await?, "not by another meanwhile");
    ensure!(store.lease_mailbox(&tenant, &mailbox, "replica-a", 10_000, 15_000).await?, "its holder renews it");
    ensure!(!store.lease_mailbox(&tenant, &mailbox, "replica-b", 24_000, 15_000).await?, "the renewal counts");
    ensure!(store.lease_mailbox(&tenant, &mailbox, "replica-b", 25_001, 15_000).await?, "a lapsed lease is taken over");
    ensure!(!store.lease_mailbox(&tenant, &mailbox, "replica-a", 26_000, 15_000).await?, "and the old holder is out");
    ensure!(store.lease_mailbox(&tenant, &id("other-mail")?, "replica-a", 26_000, 15_000).await?, "per mailbox");
    Ok(())
}

/// Erasing a tenant removes its channels (secrets included) and mailbox
/// leases, and no other tenant's; erasing again changes nothing.
async fn erasing_a_tenant_leaves_the_others(store: &dyn ChannelStore) -> anyhow::Result<()> {
    let erased = fresh_tenant("channels-erased")?;
    let kept = fresh_tenant("channels-kept")?;
    for tenant in [&erased, &kept] {
        store.create(tenant, &id("telegram-bot")?, &sample_channel(tenant, "telegram-bot")).await?;
    }
    store.erase_tenant(&erased).await?;
    store.erase_tenant(&erased).await?;
    ensure!(store.get(&erased, &id("telegram-bot")?).await?.is_none(), "the erased tenant's channel is gone");
    ensure!(store.list(&erased, &PageRequest::first(10)).await?.is_empty(), "it lists none");
    ensure!(store.get(&kept, &id("telegram-bot")?).await?.is_some(), "the other tenant's channel stays");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::channels::MemoryChannelStore;

    #[tokio::test]
    async fn memory_channel_store_passes_the_contract() {
        super::run_channel_contract(&MemoryChannelStore::default()).await.expect("contract");
    }
}
