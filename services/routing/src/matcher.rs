//! The matcher: passes that plan offers for the head contacts of every
//! waiting line on the available agents (the pure planner in
//! `domain::matching`) and reserve them, run whenever a change asks for one.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::time::Duration;

use switchboard_core::{Error, TenantId};
use switchboard_platform::credentials::DEFAULT_ROUTING_WEIGHT;

use crate::domain::matching::{plan_offers, room_left_unplanned};
use crate::engine::Engine;
use crate::events;
use crate::store::Reservation;

/// Head contacts per waiting line a pass reads first: more than the room a
/// backlog's pass usually finds (the slots freed during one
/// [`BACKLOG_PASS_PAUSE`]), far fewer than a deep pass.
const SHALLOW_PASS_HEADS: usize = 8;
/// Head contacts per waiting line a deep pass reads.
const DEEP_PASS_HEADS: usize = 64;
/// A safety net: match even when no event asked for it.
pub const MATCH_TICK: Duration = Duration::from_secs(1);
/// How long the matcher pauses after a pass that left contacts waiting for
/// room: the answers and completions that free room meanwhile are matched
/// in one pass, not one pass each (a pass reads every head contact and
/// the available agents, so under a backlog one per freed slot cost more
/// than the offers). A backlog's contacts wait far longer than this.
const BACKLOG_PASS_PAUSE: Duration = Duration::from_millis(5);

/// What one matching pass did.
#[derive(Debug, Default)]
struct MatchingPass {
    offered: usize,
    /// Whether another pass right away may offer more.
    worth_another: bool,
    /// Whether contacts were left waiting with no agent to take them: the
    /// next offer needs room that only ending work (or an agent arriving)
    /// makes.
    left_waiting: bool,
    /// Whether a line held more than the pass read while an agent kept
    /// room for a contact it read and could not take: a deeper pass may
    /// find one that agent can take.
    deeper_may_offer: bool,
}

impl Engine {
    /// One matching pass reading [`DEEP_PASS_HEADS`] contacts per line;
    /// returns how many offers were made.
    pub async fn match_once(&self) -> Result<usize, Error> {
        Ok(self.matching_pass(DEEP_PASS_HEADS).await?.offered)
    }

    /// One pass over the first `heads` contacts of every waiting line.
    async fn matching_pass(&self, heads: usize) -> Result<MatchingPass, Error> {
        let mut snapshot = self.state.snapshot(heads).await?;
        let read_all = snapshot.waiting.len() < heads;
        // A suspended or deleted tenant's contacts wait unoffered (a deleted
        // one's are ended by its erasure).
        if let Some(access) = &self.access {
            snapshot.waiting.retain(|record| access.routes_tenant(&record.tenant));
        }
        if snapshot.waiting.is_empty() || snapshot.agents.is_empty() {
            return Ok(MatchingPass { left_waiting: !snapshot.waiting.is_empty(), ..MatchingPass::default() });
        }
        // Read once per pass: the planner asks for a weight at every turn.
        let mut weights: HashMap<&TenantId, u32> = HashMap::new();
        let tenants = snapshot.waiting.iter().map(|record| &record.tenant);
        for tenant in tenants.chain(snapshot.agents.iter().flat_map(|agent| &agent.profile.tenants)) {
            weights.entry(tenant).or_insert_with(|| self.tenant_policy(tenant).routing_weight);
        }
        let weight_of = |tenant: &TenantId| weights.get(tenant).copied().unwrap_or(DEFAULT_ROUTING_WEIGHT);
        let planned =
            plan_offers(&snapshot.waiting, &snapshot.agents, self.clock.now_millis(), &snapshot.shares, &weight_of);
        let offer_time = self.clock.now_millis();
        let reservations: Vec<Reservation<'_>> = planned
            .iter()
            .map(|planned| {
                let record = &snapshot.waiting[planned.contact_index];
                let agent = &snapshot.agents[planned.agent_index];
                let expire_ms = offer_time + record.offer_timeout_ms;
                let event = events::offered(record, &agent.profile.agent, offer_time, expire_ms);
                Reservation { record, agent, expire_ms, events: vec![event] }
            })
            .collect();
        let reserved = self.state.reserve_batch(&reservations).await?;
        let mut offered = 0;
        // Only offers made are charged to their tenants' shares; the store
        // adds the charges, so concurrent replicas each count theirs.
        let mut charges: BTreeMap<TenantId, f64> = BTreeMap::new();
        for ((reservation, planned), _) in
            reservations.iter().zip(&planned).zip(reserved).filter(|(_, reserved)| *reserved)
        {
            let (record, agent) = (reservation.record, &reservation.agent.profile.agent);
            offered += 1;
            if planned.share_charge > 0.0 {
                *charges.entry(record.tenant.clone()).or_insert(0.0) += planned.share_charge;
            }
            tracing::info!(tenant = %record.tenant, contact = %record.contact, agent = %agent, "contact offered");
        }
        if !charges.is_empty() {
            self.state.advance_fair_shares(&charges).await?;
        }
        if offered > 0 {
            self.changed();
        }
        // Another pass can offer more only after progress, and only if a
        // reservation lost a race or a line held more than this pass read;
        // any other change that frees an agent or adds a contact asks for
        // a pass itself.
        let lost_races = planned.len() > offered;
        Ok(MatchingPass {
            offered,
            worth_another: offered > 0 && (lost_races || !read_all),
            left_waiting: planned.len() < snapshot.waiting.len(),
            deeper_may_offer: !read_all && room_left_unplanned(&snapshot.waiting, &snapshot.agents, &planned),
        })
    }

    /// Matching passes while one may offer more: run whenever asked (and
    /// on a slow tick); then, if contacts wait for room, a short pause
    /// before the next (see [`BACKLOG_PASS_PAUSE`]).
    ///
    /// Wakes the relay for the changes that asked for these passes (see
    /// [`Engine::changed_then_match`]) whether or not the passes succeed: a
    /// change asking later has its own pass, since its request is kept.
    ///
    /// A pass reads [`SHALLOW_PASS_HEADS`] contacts per line, and
    /// [`DEEP_PASS_HEADS`] only when one left an agent's room unused while
    /// a line held more than it read (the heads it read wanted skills or
    /// agents the free ones do not have), so the matcher stays
    /// work-conserving as far as a deep pass sees.
    pub async fn match_until_idle(&self) -> Result<(), Error> {
        let passes = async {
            let mut heads = SHALLOW_PASS_HEADS;
            loop {
                let pass = self.matching_pass(heads).await?;
                if pass.worth_another {
                    continue;
                }
                if pass.deeper_may_offer && heads < DEEP_PASS_HEADS {
                    heads = DEEP_PASS_HEADS;
                    continue;
                }
                return Ok::<_, Error>(pass);
            }
        }
        .await;
        if self.relay_after_match.swap(false, Ordering::AcqRel) {
            self.changed();
        }
        if passes?.left_waiting {
            tokio::time::sleep(BACKLOG_PASS_PAUSE).await;
        }
        Ok(())
    }
}
