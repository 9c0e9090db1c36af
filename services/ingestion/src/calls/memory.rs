//! [`CallStore`] in memory (`dev` mode, tests).

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use switchboard_core::sync::lock_unpoisoned;
use switchboard_core::{AgentId, ChannelId, Error, TenantId};

use super::{CallRecord, CallStore, StoredCall};

type CallKey = (TenantId, ChannelId, String);

#[derive(Default)]
pub struct MemoryCallStore {
    calls: Mutex<HashMap<CallKey, StoredCall>>,
    endpoints: Mutex<HashMap<AgentId, String>>,
}

fn key(call: &CallRecord) -> CallKey {
    (call.tenant.clone(), call.channel_id.clone(), call.call_id.clone())
}

#[async_trait]
impl CallStore for MemoryCallStore {
    async fn erase_tenant(&self, tenant: &TenantId) -> Result<(), Error> {
        lock_unpoisoned(&self.calls).retain(|(owner, _, _), _| owner != tenant);
        Ok(())
    }

    async fn insert(&self, call: &CallRecord) -> Result<bool, Error> {
        let mut calls = lock_unpoisoned(&self.calls);
        if calls.contains_key(&key(call)) {
            return Ok(false);
        }
        calls.insert(key(call), StoredCall { call: call.clone(), revision: 1 });
        Ok(true)
    }

    async fn get(&self, tenant: &TenantId, channel_id: &ChannelId, call_id: &str) -> Result<Option<StoredCall>, Error> {
        let calls = lock_unpoisoned(&self.calls);
        Ok(calls.get(&(tenant.clone(), channel_id.clone(), call_id.to_owned())).cloned())
    }

    async fn update(&self, call: &CallRecord, revision: i64) -> Result<bool, Error> {
        let mut calls = lock_unpoisoned(&self.calls);
        match calls.get_mut(&key(call)) {
            Some(stored) if stored.revision == revision => {
                *stored = StoredCall { call: call.clone(), revision: revision + 1 };
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn set_endpoint(&self, agent: &AgentId, endpoint: &str) -> Result<(), Error> {
        let mut endpoints = lock_unpoisoned(&self.endpoints);
        if endpoint.is_empty() {
            endpoints.remove(agent);
        } else {
            endpoints.insert(agent.clone(), endpoint.to_owned());
        }
        Ok(())
    }

    async fn endpoint(&self, agent: &AgentId) -> Result<String, Error> {
        Ok(lock_unpoisoned(&self.endpoints).get(agent).cloned().unwrap_or_default())
    }
}
