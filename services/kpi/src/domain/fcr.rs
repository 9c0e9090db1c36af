//! First-contact resolution: how a customer's contacts are linked (each
//! contact's next contact, among all of the customer's and among those on
//! the same topic) and when a resolved contact counts as resolved at first
//! contact. Every store links the same way ([`next_after`] and
//! [`previous_before`] contact by contact, [`link_customer_contacts`] in
//! batch).

use switchboard_core::{ContactId, CustomerId, QueueId};

use super::facts::{ContactFacts, FactsUpdate, merge};
use super::settings::FcrScope;

/// How long after a resolved contact its customer must stay away for it to
/// count as resolved at first contact: 7 days.
pub const FCR_WINDOW_MS: i64 = 7 * 24 * 60 * 60 * 1_000;

impl ContactFacts {
    /// Resolved at first contact: completed as resolved, and its customer
    /// made no other contact (on any channel; with a narrower
    /// [`FcrScope`] only one on the same topic) within its window
    /// ([`ContactFacts::fcr_window_ms`], by default [`FCR_WINDOW_MS`])
    /// after it (as far as known: until the window closes, a later contact
    /// may still take it back).
    pub fn resolved_at_first_contact(&self) -> bool {
        let resolved = self.completed_ms.is_some() && self.resolved == Some(true);
        let came_back = match (self.next_contact_in(self.fcr_scope.unwrap_or_default()), self.created_ms) {
            (Some(next_ms), Some(created_ms)) => next_ms - created_ms <= self.fcr_window_ms.unwrap_or(FCR_WINDOW_MS),
            _ => false,
        };
        resolved && !came_back
    }

    /// Who and when it was created, once both are known: what links the
    /// contact to its customer's others. The creation instant, not the
    /// arrival: only the contact's creation reports it, so it never moves
    /// once known (an arrival known from the enqueue moves earlier when the
    /// creation comes), and the links never need taking back.
    pub fn customer_arrival(&self) -> Option<(&CustomerId, i64)> {
        Some((self.customer.as_ref()?, self.created_ms?))
    }

    /// The queue the contact entered, once an entry report said it.
    pub fn entered_queue(&self) -> Option<&QueueId> {
        self.queue.as_ref().filter(|_| self.queue_entered)
    }

    /// The contact's topic within `scope`, once known: the contacts of one
    /// customer with the same topic are linked in that scope. Every contact
    /// shares the one topic of [`FcrScope::AnyContact`].
    pub fn topic(&self, scope: FcrScope) -> Option<&str> {
        match scope {
            FcrScope::AnyContact => Some(""),
            FcrScope::SameQueue => self.entered_queue().map(QueueId::as_str),
            FcrScope::SameDisposition => self.disposition.as_deref(),
        }
    }

    /// Its customer's next contact on the same topic within `scope`.
    pub fn next_contact_in(&self, scope: FcrScope) -> Option<i64> {
        match scope {
            FcrScope::AnyContact => self.next_contact_ms,
            FcrScope::SameQueue => self.next_same_queue_contact_ms,
            FcrScope::SameDisposition => self.next_same_disposition_contact_ms,
        }
    }

    /// What links the contact to its customer's others: its customer and
    /// creation, and its topics. The contact is linked again whenever
    /// this changes (it only ever becomes more known).
    pub fn link_key(&self) -> Option<(&CustomerId, i64, [Option<&str>; 3])> {
        let (customer, created_ms) = self.customer_arrival()?;
        Some((customer, created_ms, FcrScope::ALL.map(|scope| self.topic(scope))))
    }

    /// Whether the change from `before` (`None`: not stored yet) to these
    /// facts calls for linking them to their customer's other contacts.
    pub fn needs_linking_since(&self, before: Option<&ContactFacts>) -> bool {
        self.link_key().is_some() && before.and_then(ContactFacts::link_key) != self.link_key()
    }
}

impl FactsUpdate {
    /// An update saying the contact's next contact within `scope` came at
    /// `next_ms`.
    pub fn next_contact_in(scope: FcrScope, next_ms: i64) -> FactsUpdate {
        let next_ms = Some(next_ms);
        match scope {
            FcrScope::AnyContact => FactsUpdate { next_contact_ms: next_ms, ..FactsUpdate::default() },
            FcrScope::SameQueue => FactsUpdate { next_same_queue_contact_ms: next_ms, ..FactsUpdate::default() },
            FcrScope::SameDisposition => {
                FactsUpdate { next_same_disposition_contact_ms: next_ms, ..FactsUpdate::default() }
            }
        }
    }
}

/// Links one customer's contacts (of one tenant): in each scope, each
/// one's next contact is the earliest creation after its own among those
/// of the same topic. The live stores reach the same facts contact by
/// contact ([`next_after`] and [`previous_before`]).
pub fn link_customer_contacts(contacts: &mut [&mut ContactFacts]) {
    for scope in FcrScope::ALL {
        let arrivals: Vec<(i64, String)> =
            contacts.iter().filter_map(|facts| Some((facts.created_ms?, facts.topic(scope)?.to_owned()))).collect();
        for facts in contacts.iter_mut() {
            let (Some(arrival_ms), Some(topic)) = (facts.created_ms, facts.topic(scope)) else { continue };
            let same_topic = arrivals.iter().filter(|(_, other)| other == topic).map(|(at, _)| *at);
            if let Some(next_ms) = next_after(arrival_ms, same_topic) {
                merge(facts, &FactsUpdate::next_contact_in(scope, next_ms));
            }
        }
    }
}

/// The earliest of `arrivals` after `arrival_ms`: a new contact's next
/// contact among its customer's others.
pub fn next_after(arrival_ms: i64, arrivals: impl IntoIterator<Item = i64>) -> Option<i64> {
    arrivals.into_iter().filter(|other| *other > arrival_ms).min()
}

/// Of `mates` (a customer's other contacts, with their arrivals), the one
/// that arrived last before `arrival_ms` (ties: the larger id): the one a
/// new contact becomes the next contact of. Contacts before it already
/// have a next contact no later than it.
pub fn previous_before<'a>(
    arrival_ms: i64,
    mates: impl IntoIterator<Item = (&'a ContactId, i64)>,
) -> Option<&'a ContactId> {
    mates.into_iter().filter(|(_, other)| *other < arrival_ms).max_by_key(|(id, other)| (*other, *id)).map(|(id, _)| id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::TenantId;

    fn queue(name: &str) -> QueueId {
        QueueId::parse(name, "queue").expect("queue")
    }

    /// A resolved contact of customer `cu_1` created at `created_ms`,
    /// entered into `entered` (`None`: no entry report yet).
    fn resolved_contact(id: &str, created_ms: i64, entered: Option<&str>) -> ContactFacts {
        let mut facts = ContactFacts::empty(
            TenantId::parse("acme", "tenant").expect("tenant"),
            ContactId::parse(id, "contact").expect("contact"),
        );
        let update = FactsUpdate {
            queue: entered.map(queue),
            queue_entered: entered.is_some(),
            customer: Some(CustomerId::parse("cu_1", "customer").expect("customer")),
            created_ms: Some(created_ms),
            completed_ms: Some(created_ms + 60_000),
            resolved: Some(true),
            ..FactsUpdate::default()
        };
        merge(&mut facts, &update);
        facts
    }

    #[test]
    fn a_repeat_contact_takes_a_resolution_back_within_the_scope() {
        let mut support = resolved_contact("ct_0001", 0, Some("support"));
        let mut sales = resolved_contact("ct_0002", 3_600_000, Some("sales"));
        let mut support_again = resolved_contact("ct_0003", 7_200_000, Some("support"));
        let mut unknown_queue = resolved_contact("ct_0004", 1_000, None);
        link_customer_contacts(&mut [&mut support, &mut sales, &mut support_again, &mut unknown_queue]);
        assert_eq!((support.next_contact_ms, support.next_same_queue_contact_ms), (Some(1_000), Some(7_200_000)));
        assert_eq!((sales.next_contact_ms, sales.next_same_queue_contact_ms), (Some(7_200_000), None));
        assert_eq!(unknown_queue.next_same_queue_contact_ms, None, "no queue entered: no topic to repeat");
        assert!(!support.resolved_at_first_contact(), "the default scope: any contact takes it back");
        for facts in [&mut support, &mut sales] {
            merge(facts, &FactsUpdate { fcr_scope: Some(FcrScope::SameQueue), ..FactsUpdate::default() });
        }
        assert!(!support.resolved_at_first_contact(), "support came back to support within the window");
        assert!(sales.resolved_at_first_contact(), "sales never came back to sales");
        support.fcr_window_ms = Some(3_600_000);
        assert!(support.resolved_at_first_contact(), "back to support after its window");
    }

    #[test]
    fn a_repeat_with_the_same_disposition_takes_a_resolution_back_whatever_the_queue() {
        let disposed = |id: &str, created_ms: i64, entered: &str, disposition: &str| {
            let mut facts = resolved_contact(id, created_ms, Some(entered));
            let update = FactsUpdate {
                disposition: Some(disposition.to_owned()),
                fcr_scope: Some(FcrScope::SameDisposition),
                ..FactsUpdate::default()
            };
            merge(&mut facts, &update);
            facts
        };
        let mut refund = disposed("ct_0001", 0, "billing", "refund");
        let mut status = disposed("ct_0002", 1_000, "billing", "order-status");
        let mut refund_again = disposed("ct_0003", 2_000, "sales", "refund");
        let mut never_completed = resolved_contact("ct_0004", 3_000, Some("billing"));
        link_customer_contacts(&mut [&mut refund, &mut status, &mut refund_again, &mut never_completed]);
        assert_eq!(refund.next_same_disposition_contact_ms, Some(2_000), "in another queue");
        assert_eq!(status.next_same_disposition_contact_ms, None);
        assert!(!refund.resolved_at_first_contact());
        assert!(status.resolved_at_first_contact(), "a repeat about something else");
        assert_eq!(never_completed.topic(FcrScope::SameDisposition), None, "no disposition: no topic");
    }

    #[test]
    fn a_contact_is_linked_again_when_its_entered_queue_becomes_known() {
        let stand_in = resolved_contact("ct_0001", 0, None);
        assert!(stand_in.needs_linking_since(None), "customer and creation known");
        assert!(!stand_in.needs_linking_since(Some(&stand_in)), "nothing new");
        let entered = resolved_contact("ct_0001", 0, Some("support"));
        assert!(entered.needs_linking_since(Some(&stand_in)), "its queue became known");
        let unlinked = ContactFacts::empty(stand_in.tenant.clone(), stand_in.contact.clone());
        assert!(!unlinked.needs_linking_since(None), "no customer: nothing to link");
    }
}
