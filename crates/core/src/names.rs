//! Resource names in Google API style: `tenants/{tenant}`,
//! `tenants/{tenant}/queues/{queue}`, `tenants/{tenant}/contacts/{contact}`,
//! `tenants/{tenant}/customers/{customer}`, `agents/{agent}`.

use crate::error::Error;
use crate::ids::{AgentId, ChannelId, ContactId, ConversationId, CustomerId, MessageId, QueueId, TenantId};

fn segments<'a>(name: &'a str, field: &str, pattern: &str, expected: usize) -> Result<Vec<&'a str>, Error> {
    let parts: Vec<&str> = name.split('/').collect();
    if name.is_empty() {
        return Err(Error::missing_field(field));
    }
    if parts.len() != expected {
        return Err(Error::invalid_field(field, format!("must look like `{pattern}`")));
    }
    Ok(parts)
}

/// Parses `tenants/{tenant}`.
pub fn parse_tenant(name: &str, field: &str) -> Result<TenantId, Error> {
    let parts = segments(name, field, "tenants/{tenant}", 2)?;
    if parts[0] != "tenants" {
        return Err(Error::invalid_field(field, "must look like `tenants/{tenant}`"));
    }
    TenantId::parse(parts[1], field)
}

fn parse_child<'a>(name: &'a str, field: &str, collection: &str) -> Result<(TenantId, &'a str), Error> {
    let pattern = format!("tenants/{{tenant}}/{collection}/{{id}}");
    let parts = segments(name, field, &pattern, 4)?;
    if parts[0] != "tenants" || parts[2] != collection {
        return Err(Error::invalid_field(field, format!("must look like `{pattern}`")));
    }
    Ok((TenantId::parse(parts[1], field)?, parts[3]))
}

pub fn parse_queue(name: &str, field: &str) -> Result<(TenantId, QueueId), Error> {
    let (tenant, id) = parse_child(name, field, "queues")?;
    Ok((tenant, QueueId::parse(id, field)?))
}

pub fn parse_channel(name: &str, field: &str) -> Result<(TenantId, ChannelId), Error> {
    let (tenant, id) = parse_child(name, field, "channels")?;
    Ok((tenant, ChannelId::parse(id, field)?))
}

pub fn parse_conversation(name: &str, field: &str) -> Result<(TenantId, ConversationId), Error> {
    let (tenant, id) = parse_child(name, field, "conversations")?;
    Ok((tenant, ConversationId::parse(id, field)?))
}

pub fn parse_contact(name: &str, field: &str) -> Result<(TenantId, ContactId), Error> {
    let (tenant, id) = parse_child(name, field, "contacts")?;
    Ok((tenant, ContactId::parse(id, field)?))
}

pub fn parse_customer(name: &str, field: &str) -> Result<(TenantId, CustomerId), Error> {
    let (tenant, id) = parse_child(name, field, "customers")?;
    Ok((tenant, CustomerId::parse(id, field)?))
}

pub fn parse_agent(name: &str, field: &str) -> Result<AgentId, Error> {
    let parts = segments(name, field, "agents/{agent}", 2)?;
    if parts[0] != "agents" {
        return Err(Error::invalid_field(field, "must look like `agents/{agent}`"));
    }
    AgentId::parse(parts[1], field)
}

pub fn tenant_name(tenant: &TenantId) -> String {
    format!("tenants/{tenant}")
}

pub fn queue_name(tenant: &TenantId, queue: &QueueId) -> String {
    format!("tenants/{tenant}/queues/{queue}")
}

pub fn channel_name(tenant: &TenantId, channel: &ChannelId) -> String {
    format!("tenants/{tenant}/channels/{channel}")
}

pub fn conversation_name(tenant: &TenantId, conversation: &ConversationId) -> String {
    format!("tenants/{tenant}/conversations/{conversation}")
}

pub fn message_name(tenant: &TenantId, conversation: &ConversationId, message: &MessageId) -> String {
    format!("tenants/{tenant}/conversations/{conversation}/messages/{message}")
}

pub fn contact_name(tenant: &TenantId, contact: &ContactId) -> String {
    format!("tenants/{tenant}/contacts/{contact}")
}

pub fn customer_name(tenant: &TenantId, customer: &CustomerId) -> String {
    format!("tenants/{tenant}/customers/{customer}")
}

pub fn agent_name(agent: &AgentId) -> String {
    format!("agents/{agent}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let tenant = TenantId::parse("acme", "t").expect("tenant");
        let queue = QueueId::parse("support", "q").expect("queue");
        assert_eq!(parse_queue(&queue_name(&tenant, &queue), "name"), Ok((tenant.clone(), queue)));
        let contact = ContactId::generate();
        assert_eq!(parse_contact(&contact_name(&tenant, &contact), "name"), Ok((tenant, contact)));
    }

    #[test]
    fn malformed_names_name_the_field() {
        for bad in [
            "",
            "tenants",
            "tenants/acme/queues",
            "tenant/acme/queues/x",
            "tenants/acme/agents/x",
            "tenants/ACME/queues/x",
        ] {
            let error = parse_queue(bad, "queue.name").expect_err(bad);
            assert_eq!(error.field_violations[0].field, "queue.name", "{bad}");
        }
    }
}
