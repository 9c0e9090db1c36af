//! The ingestion API through a real tonic client, against the service on
//! in-memory deps with fake routing and CRM servers.

// Test code: a broken expectation panics, which is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// Shared by the test binaries of this crate; each uses a part of it.
#[allow(dead_code)]
mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use switchboard_platform::bus::EventBus;

use support::*;
use switchboard_core::event::{CONTACTS_TOPIC, envelope};
use switchboard_core::names::parse_contact;
use switchboard_core::{ContactId, TenantId};
use switchboard_ingestion::store::postgres::{MIGRATIONS, PostgresContactStore};
use switchboard_platform::config::PostgresConfig;
use switchboard_platform::postgres::{migrate, pool};
use switchboard_proto::common::v1::{ContactStatus, Direction};
use switchboard_proto::events::v1::event_envelope::Payload;
use switchboard_proto::ingestion::v1::{
    AbandonContactRequest, Contact, ContactEvent, CustomerResolved, GetContactRequest, ListContactsRequest,
    contact_event,
};
use switchboard_proto::ingestion::v1::{ContactAbandoned, ContactCreated};
use switchboard_test_support::{backend_url, fresh_database};
use tonic::{Code, Request};
use tonic_types::StatusExt;

fn created_payload(event: &switchboard_proto::events::v1::EventEnvelope) -> ContactCreated {
    match &event.payload {
        Some(Payload::Contact(contact_event)) => match &contact_event.kind {
            Some(contact_event::Kind::Created(created)) => created.clone(),
            other => panic!("not a ContactCreated: {other:?}"),
        },
        other => panic!("not a contact event: {other:?}"),
    }
}

fn abandoned_payload(event: &switchboard_proto::events::v1::EventEnvelope) -> ContactAbandoned {
    match &event.payload {
        Some(Payload::Contact(contact_event)) => match &contact_event.kind {
            Some(contact_event::Kind::Abandoned(abandoned)) => abandoned.clone(),
            other => panic!("not a ContactAbandoned: {other:?}"),
        },
        other => panic!("not a contact event: {other:?}"),
    }
}

async fn create(harness: &mut Harness, request_id: &str) -> Contact {
    harness.client.create_contact(authed(create_request(request_id), ACME_ADMIN_KEY)).await.unwrap().into_inner()
}

#[tokio::test]
async fn create_publishes_once_and_a_retry_returns_the_same_contact() {
    let mut harness = Harness::start().await;
    let contact = create(&mut harness, "req-1").await;

    let (tenant, contact_id) = parse_contact(&contact.name, "name").unwrap();
    assert_eq!(tenant.as_str(), "acme");
    assert!(contact.customer.starts_with("tenants/acme/customers/cu_"), "{}", contact.customer);
    assert!(contact.create_time.is_some() && contact.abandon_time.is_none());
    assert_eq!(contact.from.as_ref().unwrap().value, "ann@example.com");
    assert_eq!(contact.direction, Direction::Inbound as i32);

    let event = harness.next_event().await;
    assert_eq!(event.tenant, "acme");
    assert_eq!(event.subject, contact_id.as_str());
    assert_eq!(created_payload(&event).contact.as_ref(), Some(&contact));
    harness.assert_no_more_events().await;

    // A retry of the same request answers with the first contact.
    let retried =
        harness.client.create_contact(authed(create_request("req-1"), ACME_ADMIN_KEY)).await.unwrap().into_inner();
    assert_eq!(retried, contact);
    harness.assert_no_more_events().await;

    // The same request id with another body is refused, naming the field,
    // and changes nothing: not even a customer for its other sender.
    let mut reused = create_request("req-1");
    reused.contact.as_mut().unwrap().body = "a different question".to_owned();
    reused.contact.as_mut().unwrap().from.as_mut().unwrap().value = "bob@example.com".to_owned();
    let status = harness.client.create_contact(authed(reused, ACME_ADMIN_KEY)).await.unwrap_err();
    assert_status(&status, Code::FailedPrecondition, Some("request_id"));
    assert_eq!(status.get_error_details().error_info().map(|info| info.reason.as_str()), Some("REQUEST_ID_REUSED"));
    harness.assert_no_more_events().await;
    assert_eq!(harness.crm.customer_by_identity.lock().unwrap().len(), 1, "only the first sender is a customer");

    let fetched = harness
        .client
        .get_contact(authed(GetContactRequest { name: contact.name.clone() }, ACME_READER_KEY))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched, contact);

    // Routing and CRM were asked with the caller's own credential.
    let expected = [format!("Bearer {ACME_ADMIN_KEY}")].into_iter().collect();
    assert_eq!(seen(&harness.routing.authorizations), expected);
    assert_eq!(seen(&harness.crm.authorizations), expected);
    harness.stop().await;
}

#[tokio::test]
async fn intake_stays_open_while_routing_and_crm_restart() {
    let mut harness = Harness::start().await;
    harness.routing.down.store(true, Ordering::SeqCst);
    harness.crm.down.store(true, Ordering::SeqCst);
    let created = harness
        .client
        .create_contact(authed(create_request("while-down"), ACME_ADMIN_KEY))
        .await
        .expect("a contact is taken while routing and CRM are down")
        .into_inner();
    assert!(created.customer.is_empty(), "CRM resolves the sender from the event later");
    let event = harness.next_event().await;
    assert_eq!(created_payload(&event).contact.as_ref(), Some(&created), "the contact is published for routing");
    // A request that is wrong is still refused, whoever is down.
    let mut bad = create_request("bad-while-down");
    bad.contact.as_mut().unwrap().subject = "nul\0".to_owned();
    let status = harness.client.create_contact(authed(bad, ACME_ADMIN_KEY)).await.unwrap_err();
    assert_status(&status, Code::InvalidArgument, Some("contact.subject"));
    // Back up, a contact is checked and resolved at intake again.
    harness.routing.down.store(false, Ordering::SeqCst);
    harness.crm.down.store(false, Ordering::SeqCst);
    let checked =
        harness.client.create_contact(authed(create_request("after"), ACME_ADMIN_KEY)).await.unwrap().into_inner();
    assert!(!checked.customer.is_empty());
    // CRM's resolution of the first contact's sender reaches its record;
    // one naming another tenant's customer does not.
    let resolved = |customer: &str| {
        let kind = contact_event::Kind::CustomerResolved(CustomerResolved {
            contact: created.name.clone(),
            customer: customer.to_owned(),
        });
        let subject = created.name.rsplit('/').next().unwrap();
        envelope(
            Some(&TenantId::parse("acme", "t").unwrap()),
            subject,
            Payload::Contact(ContactEvent { kind: Some(kind) }),
        )
    };
    harness.bus.inner.publish(CONTACTS_TOPIC, &resolved("tenants/globex/customers/cu_other")).await.unwrap();
    harness.bus.inner.publish(CONTACTS_TOPIC, &resolved("tenants/acme/customers/cu_late")).await.unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let request = GetContactRequest { name: created.name.clone() };
        let fetched = harness.client.get_contact(authed(request, ACME_READER_KEY)).await.unwrap().into_inner();
        if !fetched.customer.is_empty() {
            assert_eq!(fetched.customer, "tenants/acme/customers/cu_late");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the resolved customer never reached the record");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    harness.stop().await;
}

#[tokio::test]
async fn a_provider_redelivery_returns_the_stored_contact() {
    let mut harness = Harness::start().await;
    let mut first = create_request("webhook-1");
    first.contact.as_mut().unwrap().provider_message_id = "mail-123".to_owned();
    let mut redelivery = first.clone();
    redelivery.request_id = "webhook-2".to_owned();
    let contact = harness.client.create_contact(authed(first, ACME_ADMIN_KEY)).await.unwrap().into_inner();
    harness.next_event().await;
    let again = harness.client.create_contact(authed(redelivery, ACME_ADMIN_KEY)).await.unwrap().into_inner();
    assert_eq!(again, contact);
    harness.assert_no_more_events().await;
}

#[tokio::test]
async fn concurrent_creates_with_one_request_id_make_one_contact() {
    let mut harness = Harness::start().await;
    let calls = (0..6).map(|_| {
        let mut client = harness.client.clone();
        tokio::spawn(async move { client.create_contact(authed(create_request("same"), ACME_ADMIN_KEY)).await })
    });
    let mut names = Vec::new();
    for call in calls.collect::<Vec<_>>() {
        names.push(call.await.unwrap().unwrap().into_inner().name);
    }
    assert!(names.iter().all(|name| name == &names[0]), "{names:?}");
    let event = harness.next_event().await;
    assert_eq!(created_payload(&event).contact.unwrap().name, names[0]);
    harness.assert_no_more_events().await;
}

#[tokio::test]
async fn invalid_requests_name_the_field_and_store_nothing() {
    let mut harness = Harness::start().await;
    let max_message_bytes = harness.config.grpc.max_message_bytes;
    type Change = Box<dyn Fn(&mut switchboard_proto::ingestion::v1::CreateContactRequest)>;
    let cases: Vec<(&str, Change)> = vec![
        ("parent", Box::new(|request| request.parent = "acme".to_owned())),
        ("request_id", Box::new(|request| request.request_id.clear())),
        ("contact", Box::new(|request| request.contact = None)),
        ("contact.channel", Box::new(|request| request.contact.as_mut().unwrap().channel = 0)),
        ("contact.from", Box::new(|request| request.contact.as_mut().unwrap().from = None)),
        (
            "contact.from.value",
            Box::new(|request| request.contact.as_mut().unwrap().from.as_mut().unwrap().value.clear()),
        ),
        (
            "contact.queue",
            Box::new(|request| request.contact.as_mut().unwrap().queue = "tenants/globex/queues/support".to_owned()),
        ),
        ("contact.priority", Box::new(|request| request.contact.as_mut().unwrap().priority = 101)),
        // Over the 64 KiB body rule but under the message limit.
        ("contact.body", Box::new(|request| request.contact.as_mut().unwrap().body = "b".repeat(64 * 1024 + 1))),
    ];
    for (field, change) in cases {
        let mut request = create_request("req-1");
        change(&mut request);
        let status = harness.client.create_contact(authed(request, ACME_ADMIN_KEY)).await.unwrap_err();
        assert_status(&status, Code::InvalidArgument, Some(field));
    }

    let mut oversized = create_request("req-1");
    oversized.contact.as_mut().unwrap().body = "b".repeat(max_message_bytes + 1);
    let status = harness.client.create_contact(authed(oversized, ACME_ADMIN_KEY)).await.unwrap_err();
    assert_status(&status, Code::ResourceExhausted, None);

    let mut unknown_queue = create_request("req-1");
    unknown_queue.contact.as_mut().unwrap().queue = "tenants/acme/queues/nope".to_owned();
    let status = harness.client.create_contact(authed(unknown_queue, ACME_ADMIN_KEY)).await.unwrap_err();
    assert_status(&status, Code::NotFound, Some("contact.queue"));
    let resource = status.get_error_details().resource_info().map(|info| info.resource_name.clone());
    assert_eq!(resource.as_deref(), Some("tenants/acme/queues/nope"));

    let mut wrong_channel = create_request("req-1");
    wrong_channel.contact.as_mut().unwrap().queue = VOICE_QUEUE.to_owned();
    let status = harness.client.create_contact(authed(wrong_channel, ACME_ADMIN_KEY)).await.unwrap_err();
    assert_status(&status, Code::FailedPrecondition, None);

    for key in [GLOBEX_ADMIN_KEY, ACME_READER_KEY] {
        let status = harness.client.create_contact(authed(create_request("req-1"), key)).await.unwrap_err();
        assert_status(&status, Code::PermissionDenied, None);
        // A key without the right learns nothing about the request's shape.
        let mut empty = create_request("req-1");
        empty.contact = Some(Contact::default());
        let status = harness.client.create_contact(authed(empty, key)).await.unwrap_err();
        assert_status(&status, Code::PermissionDenied, None);
    }
    let status = harness.client.create_contact(Request::new(create_request("req-1"))).await.unwrap_err();
    assert_status(&status, Code::Unauthenticated, None);
    let status = harness.client.create_contact(authed(create_request("req-1"), "not-a-key")).await.unwrap_err();
    assert_status(&status, Code::Unauthenticated, None);

    harness.assert_store_empty().await;
    harness.assert_no_more_events().await;
    // The request still works once it is right: nothing was left half-done.
    let contact = create(&mut harness, "req-1").await;
    assert_eq!(created_payload(&harness.next_event().await).contact.unwrap(), contact);
}

#[tokio::test]
async fn a_failed_publish_is_unavailable_and_the_retry_publishes() {
    let mut harness = Harness::start().await;
    harness.bus.failing.store(true, Ordering::SeqCst);
    let status = harness.client.create_contact(authed(create_request("req-1"), ACME_ADMIN_KEY)).await.unwrap_err();
    assert_status(&status, Code::Unavailable, None);
    harness.assert_no_more_events().await;

    harness.bus.failing.store(false, Ordering::SeqCst);
    let contact = create(&mut harness, "req-1").await;
    assert_eq!(created_payload(&harness.next_event().await).contact.unwrap(), contact);
    // Published now, so another retry publishes nothing.
    assert_eq!(create(&mut harness, "req-1").await, contact);
    harness.assert_no_more_events().await;
    let listed = harness
        .client
        .list_contacts(authed(
            ListContactsRequest { parent: "tenants/acme".to_owned(), ..Default::default() },
            ACME_ADMIN_KEY,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.contacts, vec![contact]);
}

#[tokio::test]
async fn a_republished_event_is_the_same_event() {
    let mut harness = Harness::start().await;
    // The broker takes the event but its acknowledgement is lost.
    harness.bus.losing_acks.store(true, Ordering::SeqCst);
    let status = harness.client.create_contact(authed(create_request("req-1"), ACME_ADMIN_KEY)).await.unwrap_err();
    assert_status(&status, Code::Unavailable, None);
    let first_copy = harness.next_event().await;

    harness.bus.losing_acks.store(false, Ordering::SeqCst);
    let contact = create(&mut harness, "req-1").await;
    let second_copy = harness.next_event().await;
    assert_eq!(second_copy, first_copy, "same event id, occurred-at and payload: consumers dedupe it");
    assert_eq!(created_payload(&second_copy).contact.unwrap(), contact);
    create(&mut harness, "req-1").await;
    harness.assert_no_more_events().await;

    // Abandons too: the failed call recorded the abandonment, the retry
    // publishes it once, with the first call's time.
    harness.bus.failing.store(true, Ordering::SeqCst);
    let request = AbandonContactRequest { name: contact.name.clone(), reason: "caller hung up".to_owned() };
    let status = harness.client.abandon_contact(authed(request.clone(), ACME_ADMIN_KEY)).await.unwrap_err();
    assert_status(&status, Code::Unavailable, None);
    harness.assert_no_more_events().await;
    let (tenant, contact_id) = parse_contact(&contact.name, "name").unwrap();
    let stored = harness.store.get(&tenant, &contact_id).await.unwrap().unwrap();
    let recorded = stored.abandonment.clone().unwrap();
    assert!(!recorded.published);

    harness.bus.failing.store(false, Ordering::SeqCst);
    let abandoned = harness.client.abandon_contact(authed(request, ACME_ADMIN_KEY)).await.unwrap().into_inner();
    assert_eq!(abandoned.abandon_time, stored.contact.abandon_time);
    let event = harness.next_event().await;
    assert_eq!(event.event_id, recorded.event_id);
    assert_eq!(abandoned_payload(&event).abandon_time, abandoned.abandon_time);
    harness.assert_no_more_events().await;
}

#[tokio::test]
async fn reads_are_scoped_to_the_tenant_and_paginate_newest_first() {
    let mut harness = Harness::start().await;
    let mut created = Vec::new();
    for index in 0..3 {
        created.push(create(&mut harness, &format!("req-{index}")).await.name);
    }
    let mut listed = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = ListContactsRequest { parent: "tenants/acme".to_owned(), page_size: 2, page_token };
        let page = harness.client.list_contacts(authed(request, ACME_READER_KEY)).await.unwrap().into_inner();
        assert!(page.contacts.len() <= 2);
        listed.extend(page.contacts.into_iter().map(|contact| contact.name));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    created.reverse();
    assert_eq!(listed, created);

    let acme_contact = GetContactRequest { name: created[0].clone() };
    let status = harness.client.get_contact(authed(acme_contact.clone(), GLOBEX_ADMIN_KEY)).await.unwrap_err();
    assert_status(&status, Code::PermissionDenied, None);
    let status = harness
        .client
        .list_contacts(authed(
            ListContactsRequest { parent: "tenants/acme".to_owned(), ..Default::default() },
            GLOBEX_ADMIN_KEY,
        ))
        .await
        .unwrap_err();
    assert_status(&status, Code::PermissionDenied, None);
    assert!(harness.client.get_contact(authed(acme_contact, OPERATOR_KEY)).await.is_ok());

    let unknown = GetContactRequest { name: format!("tenants/acme/contacts/{}", ContactId::generate()) };
    let status = harness.client.get_contact(authed(unknown, ACME_ADMIN_KEY)).await.unwrap_err();
    assert_status(&status, Code::NotFound, None);
    let malformed = GetContactRequest { name: "tenants/acme/contacts/nope".to_owned() };
    let status = harness.client.get_contact(authed(malformed, ACME_ADMIN_KEY)).await.unwrap_err();
    assert_status(&status, Code::InvalidArgument, Some("name"));
    let bad_token =
        ListContactsRequest { parent: "tenants/acme".to_owned(), page_size: 2, page_token: "zz".to_owned() };
    let status = harness.client.list_contacts(authed(bad_token, ACME_ADMIN_KEY)).await.unwrap_err();
    assert_status(&status, Code::InvalidArgument, Some("page_token"));
}

#[tokio::test]
async fn abandoning_twice_publishes_one_event() {
    let mut harness = Harness::start().await;
    let contact = create(&mut harness, "req-1").await;
    harness.next_event().await;

    let request = AbandonContactRequest { name: contact.name.clone(), reason: "caller hung up".to_owned() };
    let abandoned = harness.client.abandon_contact(authed(request.clone(), ACME_ADMIN_KEY)).await.unwrap().into_inner();
    assert!(abandoned.abandon_time.is_some());
    assert_eq!(Contact { abandon_time: None, ..abandoned.clone() }, contact);
    let event = harness.next_event().await;
    let payload = abandoned_payload(&event);
    assert_eq!(payload.contact, contact.name);
    assert_eq!(payload.reason, "caller hung up");
    assert_eq!(payload.abandon_time, abandoned.abandon_time);
    assert_eq!(event.subject, parse_contact(&contact.name, "name").unwrap().1.as_str());

    let again = AbandonContactRequest { name: contact.name.clone(), reason: "again".to_owned() };
    let unchanged = harness.client.abandon_contact(authed(again, ACME_ADMIN_KEY)).await.unwrap().into_inner();
    assert_eq!(unchanged, abandoned);
    harness.assert_no_more_events().await;

    let status = harness.client.abandon_contact(authed(request, GLOBEX_ADMIN_KEY)).await.unwrap_err();
    assert_status(&status, Code::PermissionDenied, None);
}

#[tokio::test]
async fn answered_contacts_cannot_be_abandoned() {
    let mut harness = Harness::start().await;
    let contact = create(&mut harness, "req-1").await;
    harness.next_event().await;
    for status in [ContactStatus::Answered, ContactStatus::Completed] {
        harness.routing.assignment_status_by_contact.lock().unwrap().insert(contact.name.clone(), status);
        let request = AbandonContactRequest { name: contact.name.clone(), reason: String::new() };
        let error = harness.client.abandon_contact(authed(request, ACME_ADMIN_KEY)).await.unwrap_err();
        assert_status(&error, Code::FailedPrecondition, None);
    }
    // Queued contacts can.
    harness.routing.assignment_status_by_contact.lock().unwrap().insert(contact.name.clone(), ContactStatus::Queued);
    let request = AbandonContactRequest { name: contact.name.clone(), reason: String::new() };
    let abandoned = harness.client.abandon_contact(authed(request, ACME_ADMIN_KEY)).await.unwrap().into_inner();
    assert!(abandoned.abandon_time.is_some());
    abandoned_payload(&harness.next_event().await);

    let unknown = AbandonContactRequest {
        name: format!("tenants/acme/contacts/{}", ContactId::generate()),
        reason: String::new(),
    };
    let status = harness.client.abandon_contact(authed(unknown, ACME_ADMIN_KEY)).await.unwrap_err();
    assert_status(&status, Code::NotFound, None);
    let long_reason = AbandonContactRequest { name: contact.name, reason: "r".repeat(1025) };
    let status = harness.client.abandon_contact(authed(long_reason, ACME_ADMIN_KEY)).await.unwrap_err();
    assert_status(&status, Code::InvalidArgument, Some("reason"));
    harness.assert_no_more_events().await;
}

#[tokio::test]
async fn the_api_works_the_same_on_postgres() {
    let Some(admin_url) = backend_url("SWITCHBOARD_TEST_POSTGRES") else { return };
    let url = fresh_database(&admin_url).await.unwrap();
    let pool = pool(&PostgresConfig { url, pool_size: 4, ca_file: None }).unwrap();
    migrate(&pool, "ingestion", MIGRATIONS).await.unwrap();
    let mut harness = Harness::start_with_store(Some(Arc::new(PostgresContactStore::new(pool)))).await;

    let contact = create(&mut harness, "req-1").await;
    assert_eq!(created_payload(&harness.next_event().await).contact.unwrap(), contact);
    assert_eq!(create(&mut harness, "req-1").await, contact);
    harness.assert_no_more_events().await;

    let mut oversized_body = create_request("req-2");
    oversized_body.contact.as_mut().unwrap().body = "b".repeat(64 * 1024 + 1);
    let status = harness.client.create_contact(authed(oversized_body, ACME_ADMIN_KEY)).await.unwrap_err();
    assert_status(&status, Code::InvalidArgument, Some("contact.body"));

    let request = AbandonContactRequest { name: contact.name.clone(), reason: "caller hung up".to_owned() };
    let abandoned = harness.client.abandon_contact(authed(request.clone(), ACME_ADMIN_KEY)).await.unwrap().into_inner();
    abandoned_payload(&harness.next_event().await);
    let again = harness.client.abandon_contact(authed(request, ACME_ADMIN_KEY)).await.unwrap().into_inner();
    assert_eq!(again, abandoned);
    harness.assert_no_more_events().await;

    let listed = harness
        .client
        .list_contacts(authed(
            ListContactsRequest { parent: "tenants/acme".to_owned(), ..Default::default() },
            ACME_READER_KEY,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.contacts, vec![abandoned]);
    harness.stop().await;
}

#[tokio::test]
async fn a_page_of_heavy_contacts_stays_under_its_byte_bound_and_the_rest_follows() {
    let mut harness = Harness::start().await;
    // 40 bodies of ~60 KB weigh ~2.4 MB: more than one page may.
    let body = "a line of a long e-mail\n".repeat(2_600);
    for index in 0..40 {
        let mut request = create_request(&format!("heavy-{index}"));
        if let Some(contact) = request.contact.as_mut() {
            contact.body.clone_from(&body);
        }
        harness.client.create_contact(authed(request, ACME_ADMIN_KEY)).await.unwrap();
    }
    let mut seen = 0;
    let mut pages = 0;
    let mut page_token = String::new();
    loop {
        let request = ListContactsRequest { parent: "tenants/acme".to_owned(), page_size: 1000, page_token };
        let response = harness.client.list_contacts(authed(request, ACME_ADMIN_KEY)).await.unwrap().into_inner();
        assert!(
            prost::Message::encoded_len(&response) <= switchboard_platform::pagination::MAX_PAGE_BYTES + 64 * 1024,
            "a page is bounded in bytes, not only in items"
        );
        seen += response.contacts.len();
        pages += 1;
        if response.next_page_token.is_empty() {
            break;
        }
        page_token = response.next_page_token;
    }
    assert_eq!(seen, 40, "every contact, once");
    assert!(pages >= 2, "the list went on in a second page: {pages}");
}
