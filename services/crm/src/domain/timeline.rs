//! One contact in a customer's history, and how the events that describe it
//! merge into one entry.
//!
//! Events arrive at least once and, across topics, in any order. The merge
//! is therefore built so that the final entry depends only on the set of
//! events seen, never on their order or repetition:
//! - the status only moves forward by rank, and a terminal status is final;
//! - each text field keeps its first non-empty value (all events of one
//!   contact agree on queue, channel, subject, the handling agent and the
//!   disposition, so "first" is "the");
//! - each time keeps the earliest non-zero value, so two producers whose
//!   clocks disagree by a few milliseconds still converge;
//! - `resolved` is true once any completion said so;
//! - the transfer shown is the latest one (by the instant routing reported
//!   it, then by target queue name), so redelivered and reordered
//!   transfers converge too.

use std::cmp::Reverse;

use switchboard_core::{ContactId, CustomerId, TenantId};

/// Where a contact is in its life, as far as the timeline knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryStatus {
    Received,
    Queued,
    Offered,
    Answered,
    Completed,
    Abandoned,
}

impl EntryStatus {
    pub const ALL: [EntryStatus; 6] = [
        EntryStatus::Received,
        EntryStatus::Queued,
        EntryStatus::Offered,
        EntryStatus::Answered,
        EntryStatus::Completed,
        EntryStatus::Abandoned,
    ];

    /// The order a contact's statuses follow; both terminal statuses share
    /// the highest rank.
    pub fn rank(self) -> u8 {
        match self {
            EntryStatus::Received => 0,
            EntryStatus::Queued => 1,
            EntryStatus::Offered => 2,
            EntryStatus::Answered => 3,
            EntryStatus::Completed | EntryStatus::Abandoned => 4,
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, EntryStatus::Completed | EntryStatus::Abandoned)
    }

    /// The stable spelling used in storage and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryStatus::Received => "received",
            EntryStatus::Queued => "queued",
            EntryStatus::Offered => "offered",
            EntryStatus::Answered => "answered",
            EntryStatus::Completed => "completed",
            EntryStatus::Abandoned => "abandoned",
        }
    }

    /// The inverse of [`EntryStatus::as_str`].
    pub fn parse(value: &str) -> Option<EntryStatus> {
        EntryStatus::ALL.into_iter().find(|status| status.as_str() == value)
    }
}

/// One contact of a customer. Zero times and empty strings are unset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    pub tenant: TenantId,
    pub contact: ContactId,
    /// `None` until an event names the customer: routing's events can
    /// arrive before the contact's creation, whose customer CRM may still
    /// have to resolve (ingestion took the contact while CRM was down). An
    /// entry is listed on a customer's timeline once it has one.
    pub customer: Option<CustomerId>,
    pub status: EntryStatus,
    /// The `switchboard.common.v1.Channel` number; 0 is unset.
    pub channel: i32,
    /// `tenants/{tenant}/queues/{queue}`.
    pub queue: String,
    /// `agents/{agent}` that answered the contact.
    pub agent: String,
    pub subject: String,
    pub disposition: String,
    pub resolved: bool,
    pub create_time_millis: i64,
    pub answer_time_millis: i64,
    pub end_time_millis: i64,
    /// `tenants/{tenant}/queues/{queue}` the contact was last transferred
    /// or overflowed to; empty if it never was.
    pub transferred_to: String,
    /// When routing reported that transfer.
    pub transfer_time_millis: i64,
    /// The number the customer asked to be called back at (a queued
    /// callback); empty if none.
    pub callback_number: String,
    /// `tenants/{tenant}/conversations/{conversation}` the contact was
    /// opened for; empty if none.
    pub conversation: String,
}

/// What one event says about a contact: a partial timeline entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineUpdate {
    pub tenant: TenantId,
    pub contact: ContactId,
    /// `None` when the event does not name the customer; such an update only
    /// changes an entry that already exists.
    pub customer: Option<CustomerId>,
    /// `None` when the event says nothing about the status.
    pub status: Option<EntryStatus>,
    pub channel: i32,
    pub queue: String,
    pub agent: String,
    pub subject: String,
    pub disposition: String,
    pub resolved: bool,
    pub create_time_millis: i64,
    pub answer_time_millis: i64,
    pub end_time_millis: i64,
    pub transferred_to: String,
    pub transfer_time_millis: i64,
    pub callback_number: String,
    pub conversation: String,
}

impl TimelineUpdate {
    /// An update about `contact` that says nothing yet.
    pub fn new(tenant: TenantId, contact: ContactId, customer: Option<CustomerId>) -> TimelineUpdate {
        TimelineUpdate {
            tenant,
            contact,
            customer,
            status: None,
            channel: 0,
            queue: String::new(),
            agent: String::new(),
            subject: String::new(),
            disposition: String::new(),
            resolved: false,
            create_time_millis: 0,
            answer_time_millis: 0,
            end_time_millis: 0,
            transferred_to: String::new(),
            transfer_time_millis: 0,
            callback_number: String::new(),
            conversation: String::new(),
        }
    }
}

/// The entry after `update`, given the entry stored for the same (tenant,
/// contact), if any. An update that names no customer still makes or
/// updates the entry (its customer stays unknown until an update names it),
/// so no event is lost to the order the topics deliver them in.
///
/// Applying an update twice equals applying it once, and as long as a
/// contact reaches at most one terminal status, any order of its updates
/// gives the same entry. Should a producer ever report both terminal
/// statuses, the first one seen wins and the other is ignored whole.
pub fn apply_update(existing: Option<&TimelineEntry>, update: &TimelineUpdate) -> TimelineEntry {
    let base = match existing {
        Some(existing) => existing.clone(),
        None => TimelineEntry {
            tenant: update.tenant.clone(),
            contact: update.contact.clone(),
            customer: None,
            status: EntryStatus::Received,
            channel: 0,
            queue: String::new(),
            agent: String::new(),
            subject: String::new(),
            disposition: String::new(),
            resolved: false,
            create_time_millis: 0,
            answer_time_millis: 0,
            end_time_millis: 0,
            transferred_to: String::new(),
            transfer_time_millis: 0,
            callback_number: String::new(),
            conversation: String::new(),
        },
    };
    merge(base, update)
}

fn merge(mut entry: TimelineEntry, update: &TimelineUpdate) -> TimelineEntry {
    // The customer is set once, by the first event that names it.
    if entry.customer.is_none() {
        entry.customer.clone_from(&update.customer);
    }
    if let Some(status) = update.status {
        // A customer leaving can race the answer (ingestion publishes the
        // abandon, routing ignores it because the agent already answered).
        // The contact was served, so a completion outranks an abandon in
        // whichever order the two topics deliver them, with the
        // completion's end time.
        match (entry.status, status) {
            (EntryStatus::Completed, EntryStatus::Abandoned) => return entry,
            (EntryStatus::Abandoned, EntryStatus::Completed) => {
                entry.status = EntryStatus::Completed;
                entry.end_time_millis = 0;
            }
            // Any other terminal pair cannot occur; keep the first seen.
            (current, reported) if current.is_terminal() && reported.is_terminal() && current != reported => {
                return entry;
            }
            (current, reported) if !current.is_terminal() && reported.rank() > current.rank() => {
                entry.status = reported
            }
            // Late or repeated events still fill fields the entry lacks.
            _ => {}
        }
    }
    if entry.channel == 0 {
        entry.channel = update.channel;
    }
    keep_first_non_empty(&mut entry.queue, &update.queue);
    keep_first_non_empty(&mut entry.agent, &update.agent);
    keep_first_non_empty(&mut entry.subject, &update.subject);
    keep_first_non_empty(&mut entry.disposition, &update.disposition);
    entry.resolved |= update.resolved;
    keep_earliest(&mut entry.create_time_millis, update.create_time_millis);
    keep_earliest(&mut entry.answer_time_millis, update.answer_time_millis);
    keep_earliest(&mut entry.end_time_millis, update.end_time_millis);
    keep_first_non_empty(&mut entry.callback_number, &update.callback_number);
    keep_first_non_empty(&mut entry.conversation, &update.conversation);
    let reported = (update.transfer_time_millis, update.transferred_to.as_str());
    if !update.transferred_to.is_empty() && reported > (entry.transfer_time_millis, entry.transferred_to.as_str()) {
        update.transferred_to.clone_into(&mut entry.transferred_to);
        entry.transfer_time_millis = update.transfer_time_millis;
    }
    entry
}

fn keep_first_non_empty(field: &mut String, candidate: &str) {
    if field.is_empty() && !candidate.is_empty() {
        candidate.clone_into(field);
    }
}

fn keep_earliest(field: &mut i64, candidate: i64) {
    if candidate > 0 && (*field == 0 || candidate < *field) {
        *field = candidate;
    }
}

/// A position in a customer's timeline, which is listed newest first: by
/// create time descending, then contact id descending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineCursor {
    pub create_time_millis: i64,
    pub contact: ContactId,
}

impl TimelineCursor {
    pub fn of(entry: &TimelineEntry) -> TimelineCursor {
        TimelineCursor { create_time_millis: entry.create_time_millis, contact: entry.contact.clone() }
    }

    /// True when `entry` is listed after this position.
    pub fn precedes(&self, entry: &TimelineEntry) -> bool {
        (entry.create_time_millis, &entry.contact) < (self.create_time_millis, &self.contact)
    }

    /// Sort key that lists entries newest first.
    pub fn newest_first_key(entry: &TimelineEntry) -> (Reverse<i64>, Reverse<ContactId>) {
        (Reverse(entry.create_time_millis), Reverse(entry.contact.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tenant() -> TenantId {
        TenantId::parse("acme", "tenant").expect("tenant")
    }

    fn update(contact: &ContactId, customer: &CustomerId, status: Option<EntryStatus>) -> TimelineUpdate {
        let mut update = TimelineUpdate::new(tenant(), contact.clone(), Some(customer.clone()));
        update.status = status;
        update
    }

    /// The updates one contact's events produce, in the order they happen.
    fn lifecycle(contact: &ContactId, customer: &CustomerId, completed: bool, offers: usize) -> Vec<TimelineUpdate> {
        let mut created = update(contact, customer, Some(EntryStatus::Received));
        created.channel = 2;
        created.queue = "tenants/acme/queues/support".to_owned();
        created.subject = "where is my order".to_owned();
        created.create_time_millis = 1_000;
        let mut queued = update(contact, customer, Some(EntryStatus::Queued));
        queued.queue = created.queue.clone();
        queued.channel = 2;
        queued.create_time_millis = 1_005;
        let mut updates = vec![created, queued];
        // Offers name the offered agent, which is not the entry's agent (it
        // may reject): offers carry no agent into the update.
        for _ in 0..offers {
            let mut offered = update(contact, customer, Some(EntryStatus::Offered));
            offered.subject = "where is my order".to_owned();
            offered.queue = "tenants/acme/queues/support".to_owned();
            updates.push(offered);
        }
        let mut callback = update(contact, customer, Some(EntryStatus::Offered));
        callback.callback_number = "+15550100".to_owned();
        updates.push(callback);
        // Overflowed to billing, then transferred on to escalations. (A
        // transfer names no customer; routing publishes the enqueue, which
        // does, before it on the contact's partition, so the entry exists.)
        for (time, target) in [(1_500, "billing"), (2_000, "escalations")] {
            let mut transferred = update(contact, customer, None);
            transferred.transferred_to = format!("tenants/acme/queues/{target}");
            transferred.transfer_time_millis = time;
            updates.push(transferred);
        }
        if completed {
            let mut answered = update(contact, customer, Some(EntryStatus::Answered));
            answered.agent = "agents/bob".to_owned();
            answered.answer_time_millis = 3_000;
            answered.create_time_millis = 1_005;
            let mut done = update(contact, customer, Some(EntryStatus::Completed));
            done.agent = "agents/bob".to_owned();
            done.disposition = "order-status".to_owned();
            done.resolved = true;
            done.answer_time_millis = 3_000;
            done.end_time_millis = 9_000;
            updates.extend([answered, done]);
        } else {
            let mut abandoned = update(contact, customer, Some(EntryStatus::Abandoned));
            abandoned.end_time_millis = 4_000;
            abandoned.create_time_millis = 1_005;
            updates.push(abandoned);
        }
        updates
    }

    fn fold(updates: &[TimelineUpdate]) -> Option<TimelineEntry> {
        updates.iter().fold(None, |entry, update| Some(apply_update(entry.as_ref(), update)))
    }

    #[test]
    fn a_completion_outranks_an_abandon_that_raced_the_answer_in_either_order() {
        let contact = ContactId::generate();
        let customer = CustomerId::generate();
        let served = lifecycle(&contact, &customer, true, 1);
        let mut left = update(&contact, &customer, Some(EntryStatus::Abandoned));
        left.end_time_millis = 2_500;
        let mut abandon_first = vec![left.clone()];
        abandon_first.extend(served.iter().cloned());
        let mut abandon_last = served.clone();
        abandon_last.push(left);
        for order in [abandon_first, abandon_last] {
            let entry = fold(&order).expect("entry");
            assert_eq!(entry.status, EntryStatus::Completed);
            assert_eq!((entry.disposition.as_str(), entry.end_time_millis), ("order-status", 9_000));
        }
    }

    #[test]
    fn a_completed_contact_carries_its_outcome() {
        let contact = ContactId::generate();
        let customer = CustomerId::generate();
        let entry = fold(&lifecycle(&contact, &customer, true, 2)).expect("entry");
        assert_eq!(entry.status, EntryStatus::Completed);
        assert_eq!(entry.agent, "agents/bob");
        assert_eq!(entry.disposition, "order-status");
        assert!(entry.resolved);
        assert_eq!((entry.create_time_millis, entry.answer_time_millis, entry.end_time_millis), (1_000, 3_000, 9_000));
        assert_eq!(entry.channel, 2);
        assert_eq!(entry.queue, "tenants/acme/queues/support");
        assert_eq!(
            (entry.transferred_to.as_str(), entry.transfer_time_millis),
            ("tenants/acme/queues/escalations", 2_000)
        );
        assert_eq!(entry.callback_number, "+15550100");
    }

    #[test]
    fn terminal_statuses_are_final_except_that_completion_outranks_abandon() {
        let contact = ContactId::generate();
        let customer = CustomerId::generate();
        let abandoned = fold(&[update(&contact, &customer, Some(EntryStatus::Abandoned))]).expect("entry");
        let queued_late = apply_update(Some(&abandoned), &update(&contact, &customer, Some(EntryStatus::Queued)));
        assert_eq!(queued_late.status, EntryStatus::Abandoned, "nothing moves back");
        let mut late_completion = update(&contact, &customer, Some(EntryStatus::Completed));
        late_completion.disposition = "sale".to_owned();
        let completed = apply_update(Some(&abandoned), &late_completion);
        assert_eq!((completed.status, completed.disposition.as_str()), (EntryStatus::Completed, "sale"));
        let mut late_abandon = update(&contact, &customer, Some(EntryStatus::Abandoned));
        late_abandon.end_time_millis = 1;
        let after = apply_update(Some(&completed), &late_abandon);
        assert_eq!(after, completed, "an abandon after a completion is ignored whole");
    }

    #[test]
    fn updates_without_customer_wait_in_the_entry_for_the_one_that_names_it() {
        let contact = ContactId::generate();
        let customer = CustomerId::generate();
        let mut orphan = TimelineUpdate::new(tenant(), contact.clone(), None);
        orphan.status = Some(EntryStatus::Completed);
        orphan.end_time_millis = 7;
        let early = apply_update(None, &orphan);
        assert_eq!((early.status, early.customer.as_ref()), (EntryStatus::Completed, None));
        let named = apply_update(Some(&early), &update(&contact, &customer, Some(EntryStatus::Received)));
        assert_eq!((named.status, named.end_time_millis), (EntryStatus::Completed, 7), "nothing moves back");
        assert_eq!(named.customer, Some(customer.clone()));
        let other = apply_update(Some(&named), &update(&contact, &CustomerId::generate(), None));
        assert_eq!(other.customer, Some(customer), "the first customer named stays");
    }

    #[test]
    fn cursor_orders_newest_first() {
        let customer = CustomerId::generate();
        let mut entries: Vec<TimelineEntry> = [5, 9, 5, 1]
            .into_iter()
            .map(|time| {
                let mut created = update(&ContactId::generate(), &customer, None);
                created.create_time_millis = time;
                fold(&[created]).expect("entry")
            })
            .collect();
        entries.sort_by_key(TimelineCursor::newest_first_key);
        let times: Vec<i64> = entries.iter().map(|entry| entry.create_time_millis).collect();
        assert_eq!(times, vec![9, 5, 5, 1]);
        assert!(entries[1].contact > entries[2].contact, "ties list the newer contact first");
        for (index, entry) in entries.iter().enumerate() {
            let cursor = TimelineCursor::of(entry);
            let following: Vec<bool> = entries.iter().map(|other| cursor.precedes(other)).collect();
            let expected: Vec<bool> = (0..entries.len()).map(|other| other > index).collect();
            assert_eq!(following, expected);
        }
    }

    #[test]
    fn statuses_round_trip_their_storage_spelling() {
        for status in EntryStatus::ALL {
            assert_eq!(EntryStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(EntryStatus::parse("lost"), None);
    }

    fn any_lifecycle() -> impl Strategy<Value = Vec<TimelineUpdate>> {
        (any::<bool>(), 0..3usize).prop_map(|(completed, offers)| {
            lifecycle(&ContactId::generate(), &CustomerId::generate(), completed, offers)
        })
    }

    /// A lifecycle, and the same updates shuffled with some repeated.
    fn lifecycle_and_redelivery() -> impl Strategy<Value = (Vec<TimelineUpdate>, Vec<TimelineUpdate>)> {
        (any_lifecycle(), proptest::collection::vec(any::<proptest::sample::Index>(), 0..8)).prop_flat_map(
            |(in_order, repeated)| {
                let mut delivered = in_order.clone();
                delivered.extend(repeated.iter().map(|index| in_order[index.index(in_order.len())].clone()));
                (Just(in_order), Just(delivered).prop_shuffle())
            },
        )
    }

    proptest! {
        #[test]
        fn any_delivery_order_with_duplicates_gives_the_same_entry((in_order, delivered) in lifecycle_and_redelivery()) {
            prop_assert_eq!(fold(&delivered), fold(&in_order));
        }

        #[test]
        fn applying_an_update_twice_equals_once((in_order, delivered) in lifecycle_and_redelivery()) {
            let mut entry = None;
            for update in &delivered {
                let once = Some(apply_update(entry.as_ref(), update));
                let twice = Some(apply_update(once.as_ref(), update));
                prop_assert_eq!(&once, &twice);
                if let (Some(before), Some(after)) = (&entry, &once) {
                    let before: &TimelineEntry = before;
                    prop_assert!(after.status.rank() >= before.status.rank(), "status never moves back");
                    if before.status.is_terminal() {
                        prop_assert_eq!(after.status, before.status);
                    }
                }
                entry = once;
            }
            prop_assert!(in_order.len() <= delivered.len());
        }
    }
}
