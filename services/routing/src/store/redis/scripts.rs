//! The Lua scripts of the Redis routing store (`lua/*.lua`): each is one
//! atomic step. Every script that writes checks the pool's marker first and
//! fails with `STATE_LOST` when it is gone (Redis lost its data), so
//! nothing is written on top of a partial state until it is rebuilt.

pub(super) const ENQUEUE_SCRIPT: &str = include_str!("lua/enqueue.lua");
pub(super) const RESERVE_SCRIPT: &str = include_str!("lua/reserve.lua");
pub(super) const TRANSITION_SCRIPT: &str = include_str!("lua/transition.lua");
pub(super) const RELAY_LEASE_SCRIPT: &str = include_str!("lua/relay_lease.lua");
pub(super) const UPSERT_AGENT_SCRIPT: &str = include_str!("lua/upsert_agent.lua");
pub(super) const RESTORE_CONTACT_SCRIPT: &str = include_str!("lua/restore_contact.lua");
pub(super) const RESTORE_AGENT_SCRIPT: &str = include_str!("lua/restore_agent.lua");
pub(super) const SNAPSHOT_SCRIPT: &str = include_str!("lua/snapshot.lua");
pub(super) const RECORD_ANSWER_SCRIPT: &str = include_str!("lua/record_answer.lua");
