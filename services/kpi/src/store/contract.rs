//! The contract every [`KpiStore`] passes, run by the unit tests against
//! the in-memory store and by `tests/postgres_store.rs` against a real
//! PostgreSQL. Each check returns an error naming what broke.

use switchboard_core::{ContactId, CustomerId, Error, QueueId, TenantId};
use switchboard_proto::common::v1::Channel;
use switchboard_proto::events::v1::EventEnvelope;

pub use super::stories::{ContactStory, StoryOutcome, random_stories, shuffled_with_duplicates};
use super::{KpiStore, apply_event, apply_events};
use crate::domain::buckets::split_range;
use crate::domain::{
    AbandonStage, ContactFacts, FactsFilter, FactsUpdate, INTERVAL_MS, ServiceLevelVariant, intervals, recompute,
    summarize,
};

fn broken(what: &str) -> Error {
    Error::internal(format!("kpi store contract broken: {what}"))
}

pub(super) fn expect_equal<T: PartialEq + std::fmt::Debug>(actual: &T, expected: &T, what: &str) -> Result<(), Error> {
    if actual == expected {
        return Ok(());
    }
    Err(broken(&format!("{what}\n  actual:   {actual:?}\n  expected: {expected:?}")))
}

/// Compares facts row by row and names only the first difference, so a
/// failure on hundreds of contacts stays readable.
fn expect_same_facts(actual: &[ContactFacts], expected: &[ContactFacts], what: &str) -> Result<(), Error> {
    for (actual_facts, expected_facts) in actual.iter().zip(expected) {
        expect_equal(actual_facts, expected_facts, &format!("{what}: first differing contact"))?;
    }
    let actual_ids: Vec<&str> = actual.iter().map(|facts| facts.contact.as_str()).collect();
    let expected_ids: Vec<&str> = expected.iter().map(|facts| facts.contact.as_str()).collect();
    expect_equal(&actual_ids, &expected_ids, &format!("{what}: contacts"))
}

fn tenant(name: &str) -> Result<TenantId, Error> {
    TenantId::parse(name, "tenant")
}

fn contact(id: &str) -> Result<ContactId, Error> {
    ContactId::parse(id, "contact")
}

fn queue(id: &str) -> Result<QueueId, Error> {
    QueueId::parse(id, "queue")
}

/// Attributes are first-write-wins, instants earliest-wins, and every
/// column survives a round trip.
pub async fn merges_like_the_domain(store: &dyn KpiStore) -> Result<(), Error> {
    let tenant = tenant("contract-merge")?;
    let contact = contact("ct_merge0001")?;
    let updates = [
        FactsUpdate {
            queue: Some(queue("sales")?),
            queued_ms: Some(2_000),
            short_abandon_threshold_ms: Some(0),
            ..FactsUpdate::default()
        },
        FactsUpdate {
            queue: Some(queue("support")?),
            channel: Some(Channel::Voice),
            inbound: Some(true),
            queued_ms: Some(1_000),
            answered_ms: Some(9_000),
            ..FactsUpdate::default()
        },
        FactsUpdate {
            customer: Some(CustomerId::parse("cu_merge0001", "customer")?),
            created_ms: Some(900),
            queued_ms: Some(3_000),
            answered_ms: Some(8_000),
            abandoned_ms: Some(8_500),
            abandon_stage: Some(AbandonStage::Offered),
            routing_ended_ms: Some(70_000),
            completed_ms: Some(60_000),
            resolved: Some(true),
            service_level_threshold_ms: Some(15_000),
            short_abandon_threshold_ms: Some(7_000),
            ..FactsUpdate::default()
        },
        FactsUpdate { inbound: Some(false), resolved: Some(false), ..FactsUpdate::default() },
        FactsUpdate { routing_ended_ms: Some(65_000), ..FactsUpdate::default() },
    ];
    let mut expected = ContactFacts::empty(tenant.clone(), contact.clone());
    for update in &updates {
        store.apply(&tenant, &contact, update.clone()).await?;
        crate::domain::merge(&mut expected, update);
    }
    let loaded = store.load(&tenant, &FactsFilter::default()).await?;
    expect_equal(&loaded, &vec![expected.clone()], "facts after five merges")?;
    expect_equal(&expected.queue, &Some(queue("sales")?), "of two later reports, the smaller queue name")?;
    expect_equal(&expected.routing_ended_ms, &Some(65_000), "routing's end is earliest-wins")?;
    expect_equal(&expected.queued_ms, &Some(1_000), "enqueue instant is earliest-wins")?;
    expect_equal(&expected.inbound, &Some(true), "direction is first-write-wins")?;
    Ok(())
}

/// The queue a contact entered beats any queue reported later (after a
/// transfer), in either order; later reports only stand in, smaller name
/// first (bytewise, whatever the database's collation); queue filters
/// select by the entered queue.
pub async fn keeps_the_entered_queue(store: &dyn KpiStore) -> Result<(), Error> {
    let tenant = tenant("contract-entered-queue")?;
    let later = |name: &str| -> Result<FactsUpdate, Error> {
        Ok(FactsUpdate { queue: Some(queue(name)?), answered_ms: Some(9_000), ..FactsUpdate::default() })
    };
    let entered = FactsUpdate { queue: Some(queue("support")?), queue_entered: true, ..FactsUpdate::default() };
    let stories = [
        ("ct_entered0001", vec![entered.clone(), later("billing")?, later("queuea")?]),
        ("ct_entered0002", vec![later("billing")?, later("queuea")?, entered.clone(), later("alpha")?]),
        // Bytewise "queue-b" < "queuea"; most locales ignore the hyphen and
        // order them the other way.
        ("ct_entered0003", vec![later("queuea")?, later("queue-b")?]),
    ];
    let mut expected = Vec::new();
    for (contact_id, updates) in stories {
        let contact = contact(contact_id)?;
        let mut facts = ContactFacts::empty(tenant.clone(), contact.clone());
        for update in updates {
            store.apply(&tenant, &contact, update.clone()).await?;
            crate::domain::merge(&mut facts, &update);
        }
        expected.push(facts);
    }
    expect_same_facts(&store.load(&tenant, &FactsFilter::default()).await?, &expected, "entered queues")?;
    let queues: Vec<(Option<QueueId>, bool)> =
        expected.iter().map(|facts| (facts.queue.clone(), facts.queue_entered)).collect();
    let want = vec![(Some(queue("support")?), true), (Some(queue("support")?), true), (Some(queue("queue-b")?), false)];
    expect_equal(&queues, &want, "entered queue wins; stand-ins are bytewise smallest")?;
    let billing = FactsFilter { queue: Some(queue("billing")?), ..FactsFilter::default() };
    expect_equal(&store.load(&tenant, &billing).await?, &Vec::new(), "a transfer target selects nothing")
}

/// A tenant sees only its own contacts, even under the same contact id.
pub async fn isolates_tenants(store: &dyn KpiStore) -> Result<(), Error> {
    let acme = tenant("contract-acme")?;
    let globex = tenant("contract-globex")?;
    let shared_contact = contact("ct_shared0001")?;
    store.apply(&acme, &shared_contact, FactsUpdate { queued_ms: Some(1_000), ..FactsUpdate::default() }).await?;
    store.apply(&globex, &shared_contact, FactsUpdate { queued_ms: Some(2_000), ..FactsUpdate::default() }).await?;
    let acme_facts = store.load(&acme, &FactsFilter::default()).await?;
    let globex_facts = store.load(&globex, &FactsFilter::default()).await?;
    expect_equal(&acme_facts.len(), &1, "acme has one contact")?;
    expect_equal(&acme_facts[0].tenant, &acme, "acme's facts are acme's")?;
    expect_equal(&acme_facts[0].queued_ms, &Some(1_000), "acme's update stays acme's")?;
    expect_equal(&globex_facts.len(), &1, "globex has one contact")?;
    expect_equal(&globex_facts[0].queued_ms, &Some(2_000), "globex's update stays globex's")?;
    let unknown = store.load(&tenant("contract-initech")?, &FactsFilter::default()).await?;
    expect_equal(&unknown, &Vec::new(), "a tenant without events has no facts")
}

/// Erasing a tenant removes all its facts, keeps every other tenant's, and
/// erasing again (or a tenant without facts) changes nothing.
pub async fn erasing_a_tenant_leaves_the_others(store: &dyn KpiStore) -> Result<(), Error> {
    let erased = tenant("contract-erased")?;
    let kept = tenant("contract-kept")?;
    for index in 0..3 {
        let contact = contact(&format!("ct_erase{index:06}"))?;
        let update = FactsUpdate { queued_ms: Some(1_000 + index), ..FactsUpdate::default() };
        store.apply(&erased, &contact, update.clone()).await?;
        store.apply(&kept, &contact, update).await?;
    }
    // Three days, so a store that sums whole days shows what it kept of them.
    let days =
        FactsFilter { arrival_start_ms: Some(0), arrival_end_ms: Some(3 * 86_400_000), ..FactsFilter::default() };
    let kept_periods = store.bucket_periods(&kept, &days, &split_range(&days)).await?;
    store.erase_tenant(&erased).await?;
    expect_equal(&store.load(&erased, &FactsFilter::default()).await?.len(), &0, "the erased tenant has no facts")?;
    let erased_periods = store.bucket_periods(&erased, &days, &split_range(&days)).await?;
    expect_equal(&erased_periods, &Vec::new(), "the erased tenant has no buckets, by interval or by day")?;
    expect_equal(&store.load(&kept, &FactsFilter::default()).await?.len(), &3, "the other tenant keeps its facts")?;
    let after = store.bucket_periods(&kept, &days, &split_range(&days)).await?;
    expect_equal(&after, &kept_periods, "the other tenant keeps its buckets")?;
    store.erase_tenant(&erased).await?;
    store.erase_tenant(&tenant("contract-never-seen")?).await?;
    expect_equal(&store.load(&kept, &FactsFilter::default()).await?.len(), &3, "erasing again changes nothing")
}

/// Queue, channel and half-open arrival ranges select like
/// [`FactsFilter::matches`]; arrival follows a late creation instant.
pub async fn filters_by_queue_channel_and_arrival(store: &dyn KpiStore) -> Result<(), Error> {
    let tenant = tenant("contract-filter")?;
    let rows = [
        ("ct_filter0001", Some("sales"), Some(Channel::Voice), Some(1_000), None),
        ("ct_filter0002", Some("support"), Some(Channel::Chat), Some(2_000), None),
        ("ct_filter0003", Some("sales"), Some(Channel::Chat), None, Some(3_000)),
        ("ct_filter0004", None, None, None, None),
    ];
    for (contact_id, queue_id, channel, created_ms, queued_ms) in rows {
        let update = FactsUpdate {
            queue: queue_id.map(queue).transpose()?,
            channel,
            created_ms,
            queued_ms,
            answered_ms: Some(10_000),
            ..FactsUpdate::default()
        };
        store.apply(&tenant, &contact(contact_id)?, update).await?;
    }
    let tenant = &tenant;
    let selected = |filter: FactsFilter| async move {
        let facts = store.load(tenant, &filter).await?;
        Ok::<Vec<String>, Error>(facts.iter().map(|facts| facts.contact.as_str().to_owned()).collect())
    };
    let ids = |numbers: &[u32]| numbers.iter().map(|number| format!("ct_filter{number:04}")).collect::<Vec<_>>();
    let range = |start, end| FactsFilter { arrival_start_ms: start, arrival_end_ms: end, ..FactsFilter::default() };
    expect_equal(&selected(FactsFilter::default()).await?, &ids(&[1, 2, 3, 4]), "no filter")?;
    let sales = FactsFilter { queue: Some(queue("sales")?), ..FactsFilter::default() };
    expect_equal(&selected(sales.clone()).await?, &ids(&[1, 3]), "queue sales")?;
    let chat = FactsFilter { channel: Some(Channel::Chat), ..FactsFilter::default() };
    expect_equal(&selected(chat).await?, &ids(&[2, 3]), "channel chat")?;
    let sales_chat = FactsFilter { channel: Some(Channel::Chat), ..sales };
    expect_equal(&selected(sales_chat).await?, &ids(&[3]), "queue sales on chat")?;
    expect_equal(&selected(range(Some(2_000), None)).await?, &ids(&[2, 3]), "from 2000")?;
    expect_equal(&selected(range(None, Some(2_000))).await?, &ids(&[1]), "before 2000")?;
    expect_equal(&selected(range(Some(1_000), Some(3_000))).await?, &ids(&[1, 2]), "[1000, 3000)")?;
    let created_earlier = FactsUpdate { created_ms: Some(500), ..FactsUpdate::default() };
    store.apply(tenant, &contact("ct_filter0003")?, created_earlier).await?;
    expect_equal(&selected(range(Some(1_000), None)).await?, &ids(&[1, 2]), "arrival moves to creation")?;
    expect_equal(&selected(range(None, Some(1_000))).await?, &ids(&[3]), "arrival is now 500")
}

/// Replaying every event, in another order, changes no facts.
pub async fn replays_change_nothing(store: &dyn KpiStore) -> Result<(), Error> {
    let tenant = tenant("contract-replay")?;
    let events: Vec<EventEnvelope> =
        random_stories(&tenant, 30, 7).iter().flat_map(ContactStory::events).map(|(_, envelope)| envelope).collect();
    for envelope in &events {
        apply_event(store, envelope).await?;
    }
    let first = store.load(&tenant, &FactsFilter::default()).await?;
    for envelope in events.iter().rev() {
        apply_event(store, envelope).await?;
    }
    let replayed = store.load(&tenant, &FactsFilter::default()).await?;
    expect_same_facts(&replayed, &first, "facts after a reversed replay")?;
    let recomputed: Vec<ContactFacts> = recompute(&events).into_values().collect();
    expect_same_facts(&first, &recomputed, "live facts vs batch recompute")
}

/// Every check above, each on its own tenants.
pub async fn run_all(store: &dyn KpiStore) -> Result<(), Error> {
    merges_like_the_domain(store).await?;
    keeps_the_entered_queue(store).await?;
    isolates_tenants(store).await?;
    erasing_a_tenant_leaves_the_others(store).await?;
    filters_by_queue_channel_and_arrival(store).await?;
    replays_change_nothing(store).await?;
    bounded_loads_say_there_is_more(store).await?;
    batches_merge_like_single_events(store).await?;
    for seed in [3, 11] {
        buckets_add_up_to_the_recomputed_facts(store, seed).await?;
    }
    live_figures_follow_agents_and_waiting_contacts(store).await?;
    a_customer_coming_back_within_the_window_takes_first_contact_resolution_away(store).await?;
    usage_is_the_sum_of_the_months_contacts(store).await?;
    for seed in [5, 23] {
        super::contract_agents::agent_figures_equal_the_sorted_timelines(store, seed).await?;
    }
    super::contract_settings::each_contact_takes_its_tenants_first_contact_window(store).await?;
    super::contract_settings::each_contact_takes_its_tenants_first_contact_scope(store).await?;
    super::contract_messages::outbound_messages_count_once_per_month_and_tenant(store).await?;
    summaries_over_days_equal_the_facts(store).await
}

/// Contacts spread over four days: a summary over whole days (which a
/// store may read from day sums), over days with ragged ends and over less
/// than a day equals the KPIs of the facts the filter selects.
pub async fn summaries_over_days_equal_the_facts(store: &dyn KpiStore) -> Result<(), Error> {
    const DAY_MS: i64 = 86_400_000;
    let tenant = tenant(&format!("days-{}", switchboard_test_support::unique_suffix()))?;
    let first_day_ms = 1_764_547_200_000; // 2025-12-01T00:00:00Z
    for number in 0..120_i64 {
        let created_ms = first_day_ms + number * 2_903_117 % (4 * DAY_MS);
        let update = FactsUpdate {
            queue: Some(queue(["sales", "support"][usize::try_from(number % 2).unwrap_or(0)])?),
            queue_entered: true,
            channel: Some([Channel::Voice, Channel::Chat, Channel::Email][usize::try_from(number % 3).unwrap_or(0)]),
            inbound: Some(true),
            created_ms: Some(created_ms),
            queued_ms: Some(created_ms + 100),
            answered_ms: (number % 4 != 0).then_some(created_ms + 9_000),
            abandoned_ms: (number % 4 == 0).then_some(created_ms + 40_000),
            ..FactsUpdate::default()
        };
        store.apply(&tenant, &contact(&format!("ct_days{number:05}"))?, update).await?;
    }
    let all = store.load(&tenant, &FactsFilter::default()).await?;
    let range = |start_ms: i64, end_ms: i64| FactsFilter {
        arrival_start_ms: Some(start_ms),
        arrival_end_ms: Some(end_ms),
        ..FactsFilter::default()
    };
    let filters = [
        FactsFilter::default(),
        range(first_day_ms, first_day_ms + 4 * DAY_MS),
        range(first_day_ms + DAY_MS, first_day_ms + 3 * DAY_MS),
        range(first_day_ms + 3_600_000 + 17, first_day_ms + 3 * DAY_MS - 900_000 - 5),
        range(first_day_ms + DAY_MS + 900_000, first_day_ms + DAY_MS + 7_200_000),
        FactsFilter { channel: Some(Channel::Chat), ..range(first_day_ms - DAY_MS, first_day_ms + 2 * DAY_MS + 1) },
        FactsFilter { queue: Some(queue("sales")?), ..range(first_day_ms + 5, first_day_ms + 4 * DAY_MS) },
    ];
    for filter in &filters {
        let (total, _) = super::summary_counts(store, &tenant, filter, usize::MAX - 1, first_day_ms).await?;
        let expected = summarize(all.iter().filter(|facts| filter.matches(facts)), ServiceLevelVariant::default());
        expect_equal(&total, &expected.counts, &format!("summary, filter {filter:?}"))?;
    }
    Ok(())
}

/// A month's usage per channel equals the sums over the contacts that
/// arrived in it, counted from the facts recomputed from the log: contacts,
/// answered, handled and handle time; the total is the channels' sum.
pub async fn usage_is_the_sum_of_the_months_contacts(store: &dyn KpiStore) -> Result<(), Error> {
    let tenant = tenant(&format!("usage-{}", switchboard_test_support::unique_suffix()))?;
    let events: Vec<EventEnvelope> =
        random_stories(&tenant, 60, 5).iter().flat_map(ContactStory::events).map(|(_, envelope)| envelope).collect();
    for batch in shuffled_with_duplicates(&events, 5).chunks(9) {
        apply_events(store, &batch.iter().collect::<Vec<_>>()).await?;
    }
    // The stories' month.
    let month = crate::usage::Month::parse("2025-11", "month")?;
    let usage = crate::usage::usage(store, &tenant, month).await?;
    let recomputed: Vec<ContactFacts> = recompute(&events).into_values().collect();
    let mut expected: std::collections::BTreeMap<i32, (i64, i64, i64, i64)> = std::collections::BTreeMap::new();
    for facts in &recomputed {
        let in_month = facts.arrival_ms().is_some_and(|at| at >= month.start_ms() && at < month.end_ms());
        let (Some(channel), true) = (facts.channel, in_month) else { continue };
        let row = expected.entry(channel as i32).or_default();
        row.0 += 1;
        row.1 += i64::from(facts.answered_ms.is_some());
        if let (Some(answered), Some(completed)) = (facts.answered_ms, facts.completed_ms) {
            row.2 += 1;
            row.3 += (completed - answered).max(0) + facts.wrap_up_ms.unwrap_or(0);
        }
    }
    let millis = |usage: &switchboard_proto::kpi::v1::ChannelUsage| {
        usage.handle_time.as_ref().map_or(0, |time| time.seconds * 1_000 + i64::from(time.nanos) / 1_000_000)
    };
    let actual: std::collections::BTreeMap<i32, (i64, i64, i64, i64)> = usage
        .channels
        .iter()
        .map(|channel| (channel.channel, (channel.contacts, channel.answered, channel.handled, millis(channel))))
        .collect();
    expect_equal(&actual, &expected, "usage per channel vs the recomputed facts")?;
    let total = usage.total.as_ref().ok_or_else(|| broken("a total"))?;
    let summed =
        expected.values().fold((0, 0, 0, 0), |sum, row| (sum.0 + row.0, sum.1 + row.1, sum.2 + row.2, sum.3 + row.3));
    expect_equal(&(total.contacts, total.answered, total.handled, millis(total)), &summed, "the total")?;
    expect_equal(&total.handle_minutes, &((summed.3 + 59_999) / 60_000), "minutes rounded up")
}

/// Contacts of one customer on different channels, delivered out of
/// order: a resolved contact the customer came back after within 7 days is
/// not resolved at first contact; one they came back after later, or not
/// at all, is; contacts of another customer do not count.
pub async fn a_customer_coming_back_within_the_window_takes_first_contact_resolution_away(
    store: &dyn KpiStore,
) -> Result<(), Error> {
    use crate::domain::fcr::FCR_WINDOW_MS;
    let tenant = tenant(&format!("fcr-{}", switchboard_test_support::unique_suffix()))?;
    let customer = |id: &str| CustomerId::parse(id, "customer");
    let day_ms = FCR_WINDOW_MS / 7;
    let resolved = |customer: CustomerId, arrival_ms: i64, channel: Channel| FactsUpdate {
        customer: Some(customer),
        channel: Some(channel),
        inbound: Some(true),
        created_ms: Some(arrival_ms),
        answered_ms: Some(arrival_ms + 1_000),
        completed_ms: Some(arrival_ms + 60_000),
        resolved: Some(true),
        ..FactsUpdate::default()
    };
    // Ann: by e-mail, then back two days later by phone (delivered first).
    store.apply(&tenant, &contact("ct_fcrann0002")?, resolved(customer("cu_ann")?, 2 * day_ms, Channel::Voice)).await?;
    store.apply(&tenant, &contact("ct_fcrann0001")?, resolved(customer("cu_ann")?, 0, Channel::Email)).await?;
    // Bob: back only eight days later.
    store.apply(&tenant, &contact("ct_fcrbob0001")?, resolved(customer("cu_bob")?, 0, Channel::Chat)).await?;
    store.apply(&tenant, &contact("ct_fcrbob0002")?, resolved(customer("cu_bob")?, 8 * day_ms, Channel::Chat)).await?;
    // Cleo: once, resolved; her arrival known only after her customer.
    store
        .apply(
            &tenant,
            &contact("ct_fcrcleo001")?,
            FactsUpdate { customer: Some(customer("cu_cleo")?), ..FactsUpdate::default() },
        )
        .await?;
    store.apply(&tenant, &contact("ct_fcrcleo001")?, resolved(customer("cu_cleo")?, day_ms, Channel::Sms)).await?;
    let facts = store.load(&tenant, &FactsFilter::default()).await?;
    let first_contact: Vec<(&str, bool)> =
        facts.iter().map(|facts| (facts.contact.as_str(), facts.resolved_at_first_contact())).collect();
    expect_equal(
        &first_contact,
        &vec![
            ("ct_fcrann0001", false),
            ("ct_fcrann0002", true),
            ("ct_fcrbob0001", true),
            ("ct_fcrbob0002", true),
            ("ct_fcrcleo001", true),
        ],
        "resolved at first contact",
    )?;
    let counts = super::counts_by_interval(store, &tenant, &FactsFilter::default(), usize::MAX - 1).await?;
    let mut total = crate::domain::KpiCounts::default();
    counts.values().for_each(|interval| total.add(interval));
    expect_equal(&(total.resolved, total.resolved_first_contact), &(5, 4), "the buckets count it too")
}

/// Agents' states: the latest wins whatever the order, offline agents are
/// left out, an agent counts for each tenant it serves, and a deleted
/// tenant leaves them. Waiting contacts: counted with the earliest
/// enqueue, until answered or ended.
pub async fn live_figures_follow_agents_and_waiting_contacts(store: &dyn KpiStore) -> Result<(), Error> {
    use crate::domain::live::AgentStateUpdate;
    use switchboard_proto::presence::v1::AgentState;
    let acme = tenant(&format!("live-acme-{}", switchboard_test_support::unique_suffix()))?;
    let globex = tenant(&format!("live-globex-{}", switchboard_test_support::unique_suffix()))?;
    let agent = |name: &str| switchboard_core::AgentId::parse(&format!("{name}-{}", acme.as_str()), "agent");
    let update =
        |name: &str, tenants: &[&TenantId], state: AgentState, at_ms: i64| -> Result<AgentStateUpdate, Error> {
            Ok(AgentStateUpdate {
                agent: agent(name)?,
                tenants: tenants.iter().map(|t| (*t).clone()).collect(),
                state,
                reason: String::new(),
                at_ms,
            })
        };
    store
        .apply_agent_states(&[
            update("ann", &[&acme, &globex], AgentState::Available, 10)?,
            update("ann", &[&acme, &globex], AgentState::Away, 5)?,
            update("bob", &[&acme], AgentState::Available, 1)?,
        ])
        .await?;
    store.apply_agent_states(&[update("bob", &[&acme], AgentState::Offline, 2)?]).await?;
    store.apply_agent_states(&[update("ann", &[&acme, &globex], AgentState::Away, 5)?]).await?;
    let available = std::collections::BTreeMap::from([(AgentState::Available as i32, 1)]);
    expect_equal(&store.agents_by_state(&acme).await?, &available, "ann available; bob offline; late away ignored")?;
    expect_equal(&store.agents_by_state(&globex).await?, &available, "a shared agent counts for each tenant")?;
    store.erase_tenant(&globex).await?;
    expect_equal(&store.agents_by_state(&globex).await?, &Default::default(), "a deleted tenant has no agents")?;
    expect_equal(&store.agents_by_state(&acme).await?, &available, "the others keep theirs")?;

    let queued = |at_ms| FactsUpdate { queued_ms: Some(at_ms), ..FactsUpdate::default() };
    store.apply(&acme, &contact("ct_waiting0001")?, queued(300)).await?;
    store.apply(&acme, &contact("ct_waiting0002")?, queued(100)).await?;
    store.apply(&acme, &contact("ct_waiting0003")?, queued(50)).await?;
    store
        .apply(&acme, &contact("ct_waiting0003")?, FactsUpdate { answered_ms: Some(60), ..FactsUpdate::default() })
        .await?;
    expect_equal(&store.waiting_now(&acme).await?, &(2, Some(100)), "two wait, the longest since 100")?;
    let ended = FactsUpdate { routing_ended_ms: Some(400), ..FactsUpdate::default() };
    store.apply(&acme, &contact("ct_waiting0002")?, ended).await?;
    expect_equal(&store.waiting_now(&acme).await?, &(1, Some(300)), "an ended contact no longer waits")?;
    expect_equal(&store.waiting_now(&globex).await?, &(0, None), "nothing waits elsewhere")
}

/// Random stories delivered in batches, shuffled, with duplicates: for
/// every filter (ranges aligned to 15 minutes or not, by queue, by
/// channel), the KPIs the buckets give (with the partial ends from facts)
/// equal those of the facts recomputed from the log, in total and per
/// interval.
pub async fn buckets_add_up_to_the_recomputed_facts(store: &dyn KpiStore, seed: u64) -> Result<(), Error> {
    let tenant = tenant(&format!("buckets-{seed}"))?;
    let events: Vec<EventEnvelope> =
        random_stories(&tenant, 80, seed).iter().flat_map(ContactStory::events).map(|(_, envelope)| envelope).collect();
    let delivered = shuffled_with_duplicates(&events, seed);
    for batch in delivered.chunks(7) {
        let batch: Vec<&EventEnvelope> = batch.iter().collect();
        apply_events(store, &batch).await?;
    }
    let recomputed: Vec<ContactFacts> = recompute(&events).into_values().collect();
    let first_ms = recomputed.iter().filter_map(ContactFacts::arrival_ms).min().unwrap_or(0);
    let range = |start_ms: i64, end_ms: i64| FactsFilter {
        arrival_start_ms: Some(start_ms),
        arrival_end_ms: Some(end_ms),
        ..FactsFilter::default()
    };
    let filters = [
        FactsFilter::default(),
        FactsFilter { queue: Some(queue("sales")?), ..FactsFilter::default() },
        FactsFilter { channel: Some(Channel::Chat), ..FactsFilter::default() },
        range(first_ms - first_ms % INTERVAL_MS, first_ms - first_ms % INTERVAL_MS + 2 * INTERVAL_MS),
        range(first_ms + 61_000, first_ms + 3 * INTERVAL_MS + 7_000),
        range(first_ms + 1_000, first_ms + 2_000),
        FactsFilter { queue: Some(queue("support")?), ..range(first_ms + 5, first_ms + 4 * INTERVAL_MS) },
    ];
    for filter in &filters {
        let by_interval = super::counts_by_interval(store, &tenant, filter, usize::MAX - 1).await?;
        let selected: Vec<&ContactFacts> = recomputed.iter().filter(|facts| filter.matches(facts)).collect();
        let mut total = crate::domain::KpiCounts::default();
        by_interval.values().for_each(|counts| total.add(counts));
        let what = format!("seed {seed}, filter {filter:?}");
        expect_equal(
            &total,
            &summarize(selected.iter().copied(), ServiceLevelVariant::default()).counts,
            &format!("total, {what}"),
        )?;
        let from_buckets: Vec<(i64, crate::domain::KpiCounts)> =
            by_interval.iter().filter_map(|(start, counts)| start.map(|start_ms| (start_ms, *counts))).collect();
        let from_facts: Vec<(i64, crate::domain::KpiCounts)> =
            intervals(selected.iter().copied(), ServiceLevelVariant::default())
                .into_iter()
                .map(|interval| (interval.start_ms, interval.summary.counts))
                .collect();
        expect_equal(&from_buckets, &from_facts, &format!("intervals, {what}"))?;
    }
    Ok(())
}

/// A bounded load returns at most one fact more than its limit, so a
/// query learns the selection is larger without loading all of it.
pub async fn bounded_loads_say_there_is_more(store: &dyn KpiStore) -> Result<(), Error> {
    let tenant = tenant("contract-bounded")?;
    for index in 0..5 {
        let update = FactsUpdate { queued_ms: Some(1_000 + index), ..FactsUpdate::default() };
        store.apply(&tenant, &contact(&format!("ct_bounded{index:04}"))?, update).await?;
    }
    let filter = FactsFilter::default();
    expect_equal(&store.load_at_most(&tenant, &filter, 2).await?.len(), &3, "two and one more")?;
    expect_equal(&store.load_at_most(&tenant, &filter, 5).await?.len(), &5, "all when they fit")?;
    expect_equal(&store.load_at_most(&tenant, &filter, 0).await?.len(), &1, "none and one more")
}

/// Events applied in batches (several of one contact in a batch, a batch
/// replayed) give the facts applying them one by one gives.
pub async fn batches_merge_like_single_events(store: &dyn KpiStore) -> Result<(), Error> {
    let tenant = tenant("contract-batches")?;
    let events: Vec<EventEnvelope> =
        random_stories(&tenant, 20, 11).iter().flat_map(ContactStory::events).map(|(_, envelope)| envelope).collect();
    let envelopes: Vec<&EventEnvelope> = events.iter().collect();
    for batch in envelopes.chunks(7) {
        apply_events(store, batch).await?;
    }
    apply_events(store, &envelopes[..5]).await?;
    let recomputed: Vec<ContactFacts> = recompute(&events).into_values().collect();
    expect_same_facts(&store.load(&tenant, &FactsFilter::default()).await?, &recomputed, "facts applied in batches")
}

/// The same random event sequence (shuffled, with duplicates) applied to
/// `reference` and `candidate` gives identical facts and identical KPIs,
/// under several filters, and both equal the batch recompute of the log in
/// publish order.
pub async fn differential(reference: &dyn KpiStore, candidate: &dyn KpiStore, seed: u64) -> Result<(), Error> {
    let tenant = tenant(&format!("differential-{seed}"))?;
    let events: Vec<EventEnvelope> =
        random_stories(&tenant, 60, seed).iter().flat_map(ContactStory::events).map(|(_, envelope)| envelope).collect();
    for envelope in shuffled_with_duplicates(&events, seed) {
        apply_event(reference, &envelope).await?;
        apply_event(candidate, &envelope).await?;
    }
    let recomputed: Vec<ContactFacts> = recompute(&events).into_values().collect();
    let first_arrival_ms = recomputed.iter().filter_map(ContactFacts::arrival_ms).min().unwrap_or(0);
    let filters = [
        FactsFilter::default(),
        FactsFilter { queue: Some(queue("sales")?), ..FactsFilter::default() },
        FactsFilter { channel: Some(Channel::Voice), ..FactsFilter::default() },
        FactsFilter {
            queue: Some(queue("support")?),
            arrival_start_ms: Some(first_arrival_ms + INTERVAL_MS),
            arrival_end_ms: Some(first_arrival_ms + 3 * INTERVAL_MS),
            ..FactsFilter::default()
        },
    ];
    for filter in &filters {
        let from_reference = reference.load(&tenant, filter).await?;
        let from_candidate = candidate.load(&tenant, filter).await?;
        let what = format!("seed {seed}, filter {filter:?}");
        expect_same_facts(&from_candidate, &from_reference, &format!("facts, {what}"))?;
        let expected: Vec<ContactFacts> = recomputed.iter().filter(|facts| filter.matches(facts)).cloned().collect();
        expect_same_facts(&from_reference, &expected, &format!("live facts vs batch recompute, {what}"))?;
        for variant in [ServiceLevelVariant::AbandonsPenalise, ServiceLevelVariant::AnsweredOnly] {
            expect_equal(
                &summarize(&from_candidate, variant).to_proto(),
                &summarize(&from_reference, variant).to_proto(),
                &format!("summary, {what}"),
            )?;
            expect_equal(
                &intervals(&from_candidate, variant),
                &intervals(&from_reference, variant),
                &format!("intervals, {what}"),
            )?;
        }
    }
    Ok(())
}
