use std::collections::HashMap;

use proptest::prelude::*;

use super::*;
use switchboard_core::ErrorCode;
use switchboard_proto::common::v1::IdentityKind;

fn valid_request() -> CreateContactRequest {
    CreateContactRequest {
        parent: "tenants/acme".to_owned(),
        contact: Some(Contact {
            channel: Channel::Email as i32,
            from: Some(CustomerIdentity { kind: IdentityKind::Email as i32, value: "Ann@Example.COM".to_owned() }),
            queue: "tenants/acme/queues/support".to_owned(),
            subject: "order 42".to_owned(),
            body: "where is my order?".to_owned(),
            attributes: HashMap::from([("order".to_owned(), "42".to_owned())]),
            priority: 10,
            provider_message_id: "msg-1".to_owned(),
            ..Contact::default()
        }),
        request_id: "req-1".to_owned(),
    }
}

fn with_contact(change: impl FnOnce(&mut Contact)) -> CreateContactRequest {
    let mut request = valid_request();
    if let Some(contact) = request.contact.as_mut() {
        change(contact);
    }
    request
}

/// The request fails with INVALID_ARGUMENT naming exactly `field`.
fn assert_rejects(request: &CreateContactRequest, field: &str) {
    let error = validate_create_contact(request).expect_err(field);
    assert_eq!(error.code, ErrorCode::InvalidArgument, "{field}: {error}");
    let fields: Vec<&str> = error.field_violations.iter().map(|violation| violation.field.as_str()).collect();
    assert_eq!(fields, vec![field], "{error}");
    assert!(error.message.contains(field), "{error}");
}

#[test]
fn a_valid_request_is_normalised() {
    let validated = validate_create_contact(&valid_request()).expect("valid");
    assert_eq!(validated.tenant.as_str(), "acme");
    assert_eq!(validated.queue.as_str(), "support");
    assert_eq!(validated.request_id, "req-1");
    let from = validated.contact.from.expect("from");
    assert_eq!(from.value, "ann@example.com");
    assert_eq!(validated.contact.direction, Direction::Inbound as i32);
}

#[test]
fn output_only_fields_are_ignored() {
    let request = with_contact(|contact| {
        contact.name = "tenants/globex/contacts/ct_forged".to_owned();
        contact.customer = "tenants/globex/customers/cu_forged".to_owned();
        contact.create_time = Some(prost_types::Timestamp { seconds: 1, nanos: 0 });
        contact.abandon_time = Some(prost_types::Timestamp { seconds: 2, nanos: 0 });
    });
    let contact = validate_create_contact(&request).expect("valid").contact;
    assert!(contact.name.is_empty() && contact.customer.is_empty());
    assert!(contact.create_time.is_none() && contact.abandon_time.is_none());
}

#[test]
fn outbound_direction_is_kept() {
    let request = with_contact(|contact| contact.direction = Direction::Outbound as i32);
    assert_eq!(validate_create_contact(&request).expect("valid").contact.direction, Direction::Outbound as i32);
    assert_rejects(&with_contact(|contact| contact.direction = 9), "contact.direction");
}

#[test]
fn parent_must_be_a_tenant() {
    for parent in ["", "acme", "tenants/", "tenants/ACME", "tenants/acme/queues/support"] {
        let mut request = valid_request();
        request.parent = parent.to_owned();
        let error = validate_create_contact(&request).expect_err(parent);
        // A malformed parent also cannot match the queue's tenant, which is
        // not reported: only `parent` is named.
        assert_eq!(error.field_violations[0].field, "parent", "{parent}: {error}");
    }
}

#[test]
fn contact_is_required() {
    let mut request = valid_request();
    request.contact = None;
    assert_rejects(&request, "contact");
}

#[test]
fn channel_must_be_specified_and_known() {
    assert_rejects(&with_contact(|contact| contact.channel = Channel::Unspecified as i32), "contact.channel");
    assert_rejects(&with_contact(|contact| contact.channel = 99), "contact.channel");
}

#[test]
fn from_is_required_with_kind_and_value() {
    assert_rejects(&with_contact(|contact| contact.from = None), "contact.from");
    assert_rejects(
        &with_contact(|contact| {
            contact.from = Some(CustomerIdentity { kind: 0, value: "ann@example.com".to_owned() });
        }),
        "contact.from.kind",
    );
    assert_rejects(
        &with_contact(|contact| contact.from = Some(CustomerIdentity { kind: 42, value: "x".to_owned() })),
        "contact.from.kind",
    );
    for value in ["", "   ", &"a".repeat(MAX_IDENTITY_VALUE_BYTES + 1)] {
        let request = with_contact(|contact| {
            contact.from = Some(CustomerIdentity { kind: IdentityKind::ChatVisitor as i32, value: value.to_owned() });
        });
        assert_rejects(&request, "contact.from.value");
    }
    let longest = with_contact(|contact| {
        contact.from = Some(CustomerIdentity {
            kind: IdentityKind::ChatVisitor as i32,
            value: "v".repeat(MAX_IDENTITY_VALUE_BYTES),
        });
    });
    assert!(validate_create_contact(&longest).is_ok());
}

#[test]
fn identities_are_normalised_by_the_rules_crm_resolves_them_by() {
    let normalised = |kind: IdentityKind, value: &str| {
        let request = with_contact(|contact| {
            contact.from = Some(CustomerIdentity { kind: kind as i32, value: value.to_owned() })
        });
        validate_create_contact(&request).map(|validated| validated.contact.from.expect("from").value)
    };
    assert_eq!(normalised(IdentityKind::Phone, "+1 (555) 010-0100"), Ok("+15550100100".to_owned()));
    assert_eq!(normalised(IdentityKind::Phone, "8 800 555 35 35"), Ok("+88005553535".to_owned()));
    assert_eq!(normalised(IdentityKind::Email, "Ann@Example.COM"), Ok("ann@example.com".to_owned()));
    assert_eq!(normalised(IdentityKind::Messenger, "telegram:12345"), Ok("telegram:12345".to_owned()));
    assert_eq!(normalised(IdentityKind::Social, "  @ann  "), Ok("@ann".to_owned()));
    for (kind, bad) in [
        (IdentityKind::Phone, "call me"),
        (IdentityKind::Phone, " no digits "),
        (IdentityKind::Email, "ann"),
        (IdentityKind::Email, "@example.com"),
        (IdentityKind::Email, "ann@"),
        (IdentityKind::ChatVisitor, "visitor\0"),
        (IdentityKind::Messenger, "tg:\u{1b}[31m"),
    ] {
        let request =
            with_contact(|contact| contact.from = Some(CustomerIdentity { kind: kind as i32, value: bad.to_owned() }));
        assert_rejects(&request, "contact.from.value");
    }
}

#[test]
fn stored_text_refuses_control_characters() {
    for (request, field) in [
        (with_contact(|contact| contact.subject = "order\0 42".to_owned()), "contact.subject"),
        (with_contact(|contact| contact.subject = "two\nlines".to_owned()), "contact.subject"),
        (with_contact(|contact| contact.body = "bell\u{7}".to_owned()), "contact.body"),
        (with_contact(|contact| contact.provider_message_id = "id\u{1b}".to_owned()), "contact.provider_message_id"),
        (
            with_contact(|contact| {
                contact.attributes.insert("k".to_owned(), "v\0".to_owned());
            }),
            "contact.attributes",
        ),
    ] {
        assert_rejects(&request, field);
    }
    let paragraphs = with_contact(|contact| contact.body = "Hello,\r\n\tthe parcel?\n".to_owned());
    assert!(validate_create_contact(&paragraphs).is_ok(), "a body keeps its line breaks");
    assert!(validate_abandon_reason("hung up\0").is_err());
}

#[test]
fn queue_must_be_a_queue_of_the_parent_tenant() {
    for queue in ["", "support", "tenants/acme", "tenants/acme/queues/Support", "tenants/acme/contacts/x"] {
        assert_rejects(&with_contact(|contact| contact.queue = queue.to_owned()), "contact.queue");
    }
    assert_rejects(
        &with_contact(|contact| contact.queue = "tenants/globex/queues/support".to_owned()),
        "contact.queue",
    );
}

#[test]
fn text_fields_are_bounded() {
    let at_limit = with_contact(|contact| {
        contact.subject = "s".repeat(MAX_SUBJECT_BYTES);
        contact.body = "b".repeat(MAX_BODY_BYTES);
        contact.provider_message_id = "p".repeat(MAX_PROVIDER_MESSAGE_ID_BYTES);
    });
    assert!(validate_create_contact(&at_limit).is_ok());
    assert_rejects(&with_contact(|contact| contact.subject = "s".repeat(MAX_SUBJECT_BYTES + 1)), "contact.subject");
    assert_rejects(&with_contact(|contact| contact.body = "b".repeat(MAX_BODY_BYTES + 1)), "contact.body");
    // Bytes, not characters: 'я' is two bytes in UTF-8.
    assert_rejects(&with_contact(|contact| contact.body = "я".repeat(MAX_BODY_BYTES / 2 + 1)), "contact.body");
    assert_rejects(
        &with_contact(|contact| contact.provider_message_id = "p".repeat(MAX_PROVIDER_MESSAGE_ID_BYTES + 1)),
        "contact.provider_message_id",
    );
}

#[test]
fn attributes_are_bounded() {
    let many = (0..=MAX_ATTRIBUTES).map(|index| (format!("k{index}"), "v".to_owned())).collect();
    assert_rejects(&with_contact(|contact| contact.attributes = many), "contact.attributes");
    let most = (0..MAX_ATTRIBUTES).map(|index| (format!("k{index}"), "v".to_owned())).collect();
    assert!(validate_create_contact(&with_contact(|contact| contact.attributes = most)).is_ok());
    let long_key = HashMap::from([("k".repeat(MAX_ATTRIBUTE_KEY_BYTES + 1), "v".to_owned())]);
    assert_rejects(&with_contact(|contact| contact.attributes = long_key), "contact.attributes");
    let empty_key = HashMap::from([(String::new(), "v".to_owned())]);
    assert_rejects(&with_contact(|contact| contact.attributes = empty_key), "contact.attributes");
    let long_value = HashMap::from([("k".to_owned(), "v".repeat(MAX_ATTRIBUTE_VALUE_BYTES + 1))]);
    assert_rejects(&with_contact(|contact| contact.attributes = long_value), "contact.attributes");
}

#[test]
fn priority_is_between_0_and_100() {
    for priority in [0, 50, MAX_PRIORITY] {
        assert!(validate_create_contact(&with_contact(|contact| contact.priority = priority)).is_ok());
    }
    for priority in [-1, MAX_PRIORITY + 1, i32::MIN, i32::MAX] {
        assert_rejects(&with_contact(|contact| contact.priority = priority), "contact.priority");
    }
}

#[test]
fn request_id_is_required_short_and_printable() {
    for request_id in ["", "tab\there", "naïve", "line\n", &"r".repeat(MAX_REQUEST_ID_BYTES + 1)] {
        let mut request = valid_request();
        request.request_id = request_id.to_owned();
        assert_rejects(&request, "request_id");
    }
    let mut request = valid_request();
    request.request_id = "0193a6c2-7e1f-7000-8000-000000000000 #2".to_owned();
    assert!(validate_create_contact(&request).is_ok());
}

#[test]
fn every_bad_field_is_reported_at_once() {
    let mut request = with_contact(|contact| {
        contact.channel = 0;
        contact.body = "b".repeat(MAX_BODY_BYTES + 1);
    });
    request.request_id.clear();
    let error = validate_create_contact(&request).expect_err("three bad fields");
    let fields: Vec<&str> = error.field_violations.iter().map(|violation| violation.field.as_str()).collect();
    assert_eq!(fields, vec!["request_id", "contact.channel", "contact.body"]);
}

#[test]
fn abandon_reason_is_bounded() {
    assert!(validate_abandon_reason("caller hung up").is_ok());
    let error = validate_abandon_reason(&"r".repeat(MAX_ABANDON_REASON_BYTES + 1)).expect_err("long");
    assert_eq!(error.field_violations[0].field, "reason");
}

fn arbitrary_request() -> impl Strategy<Value = CreateContactRequest> {
    let identity = (-1i32..7, ".{0,300}").prop_map(|(kind, value)| CustomerIdentity { kind, value });
    let contact = (
        (-1i32..10, -1i32..4, proptest::option::of(identity)),
        (".{0,80}", ".{0,40}", ".{0,40}", proptest::collection::hash_map(".{0,70}", ".{0,20}", 0..4)),
        (-5i32..110, ".{0,40}"),
    )
        .prop_map(
            |((channel, direction, from), (queue, subject, body, attributes), (priority, provider_message_id))| {
                Contact {
                    channel,
                    direction,
                    from,
                    queue,
                    subject,
                    body,
                    attributes,
                    priority,
                    provider_message_id,
                    ..Contact::default()
                }
            },
        );
    (".{0,40}", proptest::option::of(contact), ".{0,140}")
        .prop_map(|(parent, contact, request_id)| CreateContactRequest { parent, contact, request_id })
}

proptest! {
    #[test]
    fn validation_never_panics_and_is_deterministic(request in arbitrary_request()) {
        let first = validate_create_contact(&request);
        let second = validate_create_contact(&request);
        prop_assert_eq!(&first, &second);
        match first {
            Ok(validated) => {
                let from = validated.contact.from.clone().unwrap_or_default();
                prop_assert!(!from.value.is_empty() && from.value.len() <= MAX_IDENTITY_VALUE_BYTES);
                prop_assert!(validated.contact.direction != Direction::Unspecified as i32);
                prop_assert!(validated.contact.name.is_empty() && validated.contact.customer.is_empty());
                prop_assert_eq!(validated.contact.queue, names::queue_name(&validated.tenant, &validated.queue));
            }
            Err(error) => {
                prop_assert_eq!(error.code, ErrorCode::InvalidArgument);
                prop_assert!(!error.field_violations.is_empty());
            }
        }
    }

    #[test]
    fn well_formed_requests_are_accepted(
        tenant in "[a-z][a-z0-9]{0,20}",
        queue in "[a-z][a-z0-9]{0,20}",
        request_id in "[ -~]{1,128}",
        value in "[a-z0-9:]{1,200}",
        priority in 0i32..=100,
    ) {
        let request = CreateContactRequest {
            parent: format!("tenants/{tenant}"),
            contact: Some(Contact {
                channel: Channel::Chat as i32,
                from: Some(CustomerIdentity { kind: IdentityKind::ChatVisitor as i32, value: value.clone() }),
                queue: format!("tenants/{tenant}/queues/{queue}"),
                priority,
                ..Contact::default()
            }),
            request_id,
        };
        let validated = validate_create_contact(&request);
        prop_assert!(validated.is_ok(), "{:?}", validated);
    }
}

#[test]
fn only_video_contacts_carry_a_session_link_and_they_must() {
    let video = |url: &str| {
        with_contact(|contact| {
            contact.channel = Channel::Video as i32;
            contact.session_url = url.to_owned();
        })
    };
    let validated = validate_create_contact(&video("https://meet.example.com/r/abc-123")).expect("valid");
    assert_eq!(validated.contact.session_url, "https://meet.example.com/r/abc-123");
    assert_rejects(&video(""), "contact.session_url");
    assert_rejects(&video("http://meet.example.com/r/abc"), "contact.session_url");
    assert_rejects(&video("javascript:alert(1)"), "contact.session_url");
    assert_rejects(&video(&format!("https://meet.example.com/{}", "a".repeat(2100))), "contact.session_url");
    assert_rejects(
        &with_contact(|contact| contact.session_url = "https://meet.example.com/x".to_owned()),
        "contact.session_url",
    );
}
