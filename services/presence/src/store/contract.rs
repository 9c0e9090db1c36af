//! The contract both pairs of presence stores pass (memory in unit tests,
//! PostgreSQL and Redis in `tests/backends.rs`).

use switchboard_core::{AgentId, Error, ErrorCode, TenantId};
use switchboard_platform::pagination::PageRequest;
use switchboard_proto::common::v1::ContactStatus;
use switchboard_proto::presence::v1::{ActiveContact, Agent, AgentState};

use super::{AgentStore, LiveState, LiveStateStore};

fn check(condition: bool, what: &str) -> Result<(), Error> {
    if condition { Ok(()) } else { Err(Error::internal(format!("presence store contract broken: {what}"))) }
}

fn agent(id: &str, tenants: &[&str]) -> Agent {
    Agent {
        name: format!("agents/{id}"),
        display_name: id.to_owned(),
        tenants: tenants.iter().map(|tenant| format!("tenants/{tenant}")).collect(),
        ..Agent::default()
    }
}

pub async fn agent_store_contract(store: &dyn AgentStore) -> Result<(), Error> {
    for (id, tenants) in [("alice", &["acme"][..]), ("bob", &["acme", "globex"][..]), ("carol", &["globex"][..])] {
        store.create_agent(&AgentId::parse(id, "a")?, &agent(id, tenants)).await?;
    }
    let alice = AgentId::parse("alice", "a")?;
    let duplicate = store.create_agent(&alice, &agent("alice", &["acme"])).await.err();
    check(duplicate.is_some_and(|error| error.code == ErrorCode::AlreadyExists), "duplicate is ALREADY_EXISTS")?;
    check(store.get_agent(&alice).await?.is_some_and(|found| found.display_name == "alice"), "get returns it")?;
    let acme = TenantId::parse("acme", "t")?;
    let acme_agents = store.list_agents(Some(&acme), &PageRequest::resume_after(10, None)).await?;
    let names: Vec<&str> = acme_agents.iter().map(|agent| agent.name.as_str()).collect();
    check(names == ["agents/alice", "agents/bob"], "listing by tenant shows only agents serving it")?;
    let first = store.list_agents(None, &PageRequest::resume_after(1, None)).await?;
    check(first.len() == 2, "a page of one returns two to detect more")?;
    let after_alice = PageRequest::resume_after(1, Some("alice"));
    let second = store.list_agents(None, &after_alice).await?;
    check(second.first().is_some_and(|agent| agent.name == "agents/bob"), "pages continue after the token")?;
    let moved = Agent { display_name: "Alice".to_owned(), ..agent("alice", &["globex"]) };
    check(store.update_agent(&alice, &moved).await?, "update")?;
    check(store.get_agent(&alice).await? == Some(moved), "an update replaces the definition")?;
    let acme_agents = store.list_agents(Some(&acme), &PageRequest::resume_after(10, None)).await?;
    let names: Vec<&str> = acme_agents.iter().map(|agent| agent.name.as_str()).collect();
    check(names == ["agents/bob"], "the tenant index follows an update")?;
    let nobody = AgentId::parse("nobody", "a")?;
    check(!store.update_agent(&nobody, &agent("nobody", &["acme"])).await?, "an update of nobody reports absence")?;
    check(store.get_agent(&nobody).await?.is_none(), "and makes nobody")?;
    check(store.delete_agent(&alice).await?, "delete")?;
    check(!store.delete_agent(&alice).await?, "second delete reports absence")?;
    check(store.get_agent(&alice).await?.is_none(), "deleted agents are gone")?;
    Ok(())
}

pub async fn live_state_contract(store: &dyn LiveStateStore) -> Result<(), Error> {
    let dave = AgentId::parse("dave", "a")?;
    check(store.get_state(&dave).await?.state == AgentState::Offline, "unknown agents are offline")?;
    let available = LiveState::new(AgentState::Available, "", 10);
    let previous = store.set_state(&dave, &available).await?;
    check(previous.state == AgentState::Offline, "first set returns offline as previous")?;
    check(store.online_agents().await?.contains(&dave), "available agents are online")?;
    let away = LiveState::new(AgentState::Away, "lunch", 20);
    check(store.set_state(&dave, &away).await? == available, "set returns the previous state exactly")?;
    check(store.get_state(&dave).await? == away, "get returns the state with its reason")?;
    let offline = LiveState::new(AgentState::Offline, "", 30);
    store.set_state(&dave, &offline).await?;
    check(!store.online_agents().await?.contains(&dave), "offline agents are not online")?;

    check(store.session_of(&dave).await?.is_empty(), "no session claimed yet")?;
    store.claim_session(&dave, "s1", 100).await?;
    store.set_state(&dave, &available).await?;
    store.claim_session(&dave, "s2", 100).await?;
    check(!store.renew_lease(&dave, "s1", 1_000).await?, "a replaced session cannot renew")?;
    check(
        store.expired_leases(150, 10).await? == vec![(dave.clone(), "s2".to_owned())],
        "a lapsed lease is found with its session",
    )?;
    check(store.renew_lease(&dave, "s2", 1_000).await?, "the owner renews")?;
    check(store.expired_leases(150, 10).await?.is_empty(), "a renewed lease has not lapsed")?;
    check(store.session_of(&dave).await? == "s2", "the newest claim owns the agent")?;
    let stale = store.set_state_if_session(&dave, "s1", &offline).await?;
    check(stale.is_none(), "an ended older session cannot take the agent offline")?;
    check(store.get_state(&dave).await?.state == AgentState::Available, "a refused change changes nothing")?;
    let current = store.set_state_if_session(&dave, "s2", &offline).await?;
    check(current.is_some_and(|previous| previous.state == AgentState::Available), "the owner's change applies")?;
    check(!store.online_agents().await?.contains(&dave), "and takes the agent offline")?;
    check(store.expired_leases(i64::MAX, 10).await?.is_empty(), "going offline ends the lease")?;
    let erin = AgentId::parse("erin-lost", "a")?;
    check(store.renew_lease(&erin, "s9", 1_000).await?, "a session whose record was lost claims the agent again")?;
    check(store.session_of(&erin).await? == "s9", "and owns it")?;
    check(!store.renew_lease(&erin, "s8", 1_000).await?, "while another session cannot")?;
    erasure_contract(store).await?;
    wrap_up_contract(store).await?;
    missed_offers_contract(store).await?;
    active_contacts_contract(store).await?;
    online_states_contract(store).await
}

/// Counting agents by state (the gauge), as a difference: other cases left
/// agents online.
async fn online_states_contract(store: &dyn LiveStateStore) -> Result<(), Error> {
    let before = store.online_states().await?;
    let count = |counts: &std::collections::BTreeMap<AgentState, i64>, state| counts.get(&state).copied().unwrap_or(0);
    let (ivan, judy, ken) = (AgentId::parse("ivan", "a")?, AgentId::parse("judy", "a")?, AgentId::parse("ken", "a")?);
    store.set_state(&ivan, &LiveState::new(AgentState::Away, "lunch", 10)).await?;
    store.set_state(&judy, &LiveState::new(AgentState::Away, "", 10)).await?;
    store.set_state(&ken, &LiveState::new(AgentState::Available, "", 10)).await?;
    store.set_state(&ken, &LiveState::new(AgentState::Offline, "", 20)).await?;
    let after = store.online_states().await?;
    check(count(&after, AgentState::Away) == count(&before, AgentState::Away) + 2, "two more away")?;
    check(count(&after, AgentState::Available) == count(&before, AgentState::Available), "one came and went")?;
    check(!after.contains_key(&AgentState::Offline), "offline agents are not counted")?;
    Ok(())
}

async fn active_contacts_contract(store: &dyn LiveStateStore) -> Result<(), Error> {
    let heidi = AgentId::parse("heidi", "a")?;
    check(store.active_contacts(&heidi).await?.is_empty(), "an agent starts with no work")?;
    let ringing = |contact: &str| ActiveContact {
        contact: format!("tenants/acme/contacts/{contact}"),
        subject: "refund".to_owned(),
        status: ContactStatus::Offered as i32,
        ..ActiveContact::default()
    };
    store.put_active_contact(&heidi, &ringing("c2")).await?;
    store.put_active_contact(&heidi, &ringing("c1")).await?;
    let answered = ActiveContact { status: ContactStatus::Answered as i32, ..ringing("c2") };
    store.put_active_contact(&heidi, &answered).await?;
    check(store.active_contacts(&heidi).await? == vec![ringing("c1"), answered.clone()], "by contact, latest version")?;
    check(
        store.active_contact(&heidi, "tenants/acme/contacts/c2").await? == Some(answered.clone()),
        "one contact, latest version",
    )?;
    check(store.active_contact(&heidi, "tenants/acme/contacts/c9").await?.is_none(), "one the agent does not hold")?;
    check(store.holder_of("tenants/acme/contacts/c2").await? == Some(heidi.clone()), "the holder is known")?;
    check(store.remove_active_contact(&heidi, "tenants/acme/contacts/c1").await?, "removal reports presence")?;
    check(store.holder_of("tenants/acme/contacts/c1").await?.is_none(), "a removed contact has no holder")?;
    let judy = AgentId::parse("judy", "a")?;
    store.put_active_contact(&judy, &ringing("c2")).await?;
    check(store.holder_of("tenants/acme/contacts/c2").await? == Some(judy.clone()), "the last to take it holds it")?;
    store.remove_active_contact(&heidi, "tenants/acme/contacts/c2").await?;
    check(
        store.holder_of("tenants/acme/contacts/c2").await? == Some(judy.clone()),
        "the previous holder's removal keeps it",
    )?;
    store.remove_active_contact(&judy, "tenants/acme/contacts/c2").await?;
    check(store.holder_of("tenants/acme/contacts/c2").await?.is_none(), "the holder's removal clears it")?;
    store.hold(&judy, "tenants/acme/contacts/c3").await?;
    check(store.holder_of("tenants/acme/contacts/c3").await? == Some(judy.clone()), "an accept holds at once")?;
    store.put_active_contact(&judy, &ringing("c3")).await?;
    store.remove_active_contact(&judy, "tenants/acme/contacts/c3").await?;
    check(store.holder_of("tenants/acme/contacts/c3").await?.is_none(), "and the contact's end releases it")?;
    store.put_active_contact(&heidi, &answered).await?;
    check(!store.remove_active_contact(&heidi, "tenants/acme/contacts/c1").await?, "a second removal does not")?;
    check(store.active_contacts(&AgentId::parse("ivan", "a")?).await?.is_empty(), "work is per agent")?;
    store.remove_active_contact(&heidi, "tenants/acme/contacts/c2").await?;
    check(store.active_contacts(&heidi).await?.is_empty(), "all work done")?;
    Ok(())
}

async fn missed_offers_contract(store: &dyn LiveStateStore) -> Result<(), Error> {
    let frank = AgentId::parse("frank", "a")?;
    check(store.record_missed_offer(&frank, "e1").await? == 1, "the first miss counts one")?;
    check(store.record_missed_offer(&frank, "e2").await? == 2, "misses add up")?;
    check(store.record_missed_offer(&frank, "e2").await? == 2, "a redelivered miss counts once")?;
    store.clear_missed_offers(&frank).await?;
    check(store.record_missed_offer(&frank, "e1").await? == 1, "clearing starts the count again")?;
    let grace = AgentId::parse("grace", "a")?;
    check(store.record_missed_offer(&grace, "e1").await? == 1, "each agent has its own count")?;
    let contact = "tenants/acme/contacts/ct_seen";
    check(!store.take_offer_seen(&frank, contact).await?, "an offer never sent was not seen")?;
    store.mark_offer_seen(&frank, contact).await?;
    check(!store.take_offer_seen(&grace, contact).await?, "seen by its own agent only")?;
    check(store.take_offer_seen(&frank, contact).await?, "a sent offer was seen")?;
    check(!store.take_offer_seen(&frank, contact).await?, "taking forgets it")?;

    store.mark_offer_seen(&frank, contact).await?;
    let answered = ActiveContact { contact: contact.to_owned(), ..ActiveContact::default() };
    store.offer_answered(&frank, &answered).await?;
    check(store.active_contacts(&frank).await? == vec![answered], "an answered offer is work held")?;
    check(!store.take_offer_seen(&frank, contact).await?, "its seen mark is gone")?;
    check(store.record_missed_offer(&frank, "e3").await? == 1, "its agent's misses start over")?;
    Ok(())
}

/// Erasing a deleted tenant forgets the contacts of it the agents hold,
/// were offered or were seen holding, and keeps every other tenant's.
async fn erasure_contract(store: &dyn LiveStateStore) -> Result<(), Error> {
    let olga = AgentId::parse("olga", "a")?;
    let erased = "tenants/erased-tenant/contacts/ct_gone";
    let kept = "tenants/kept-tenant/contacts/ct_kept";
    for contact in [erased, kept] {
        store
            .put_active_contact(&olga, &ActiveContact { contact: contact.to_owned(), ..ActiveContact::default() })
            .await?;
        store.mark_offer_seen(&olga, contact).await?;
    }
    store.erase_tenant(&TenantId::parse("erased-tenant", "t")?).await?;
    store.erase_tenant(&TenantId::parse("erased-tenant", "t")?).await?;
    let held: Vec<String> = store.active_contacts(&olga).await?.into_iter().map(|contact| contact.contact).collect();
    check(held == [kept], "only the other tenant's contact is held")?;
    check(store.holder_of(erased).await?.is_none(), "the erased contact has no holder")?;
    check(store.holder_of(kept).await? == Some(olga.clone()), "the other one keeps its holder")?;
    check(!store.take_offer_seen(&olga, erased).await?, "its seen mark is gone")?;
    check(store.take_offer_seen(&olga, kept).await?, "the other's stays")?;
    store.remove_active_contact(&olga, kept).await?;
    Ok(())
}

/// Wrap-up: compare-and-set transitions and the timers they keep.
async fn wrap_up_contract(store: &dyn LiveStateStore) -> Result<(), Error> {
    let erin = AgentId::parse("erin", "a")?;
    let wrap_up = LiveState::wrap_up(120, 400);
    let refused = store.set_state_if(&erin, AgentState::Available, 100, &wrap_up).await?;
    check(refused.is_none(), "an offline agent does not start wrap-up")?;
    store.set_state(&erin, &LiveState::new(AgentState::Available, "", 110)).await?;
    let refused = store.set_state_if(&erin, AgentState::Available, 100, &wrap_up).await?;
    check(refused.is_none(), "a state chosen after the deciding event wins")?;
    let started = store.set_state_if(&erin, AgentState::Available, 115, &wrap_up).await?;
    check(started.is_some_and(|previous| previous.state == AgentState::Available), "wrap-up starts from available")?;
    check(store.get_state(&erin).await? == wrap_up, "the wrap-up end is stored with the state")?;
    check(store.online_agents().await?.contains(&erin), "an agent in wrap-up is online")?;
    check(store.expired_wrap_ups(400, 10).await?.is_empty(), "a wrap-up is not over before its end")?;
    check(store.expired_wrap_ups(401, 10).await? == vec![(erin.clone(), 400)], "an ended wrap-up is listed")?;
    let available = LiveState::new(AgentState::Available, "", 500);
    check(store.set_state_if(&erin, AgentState::WrapUp, 400, &available).await?.is_some(), "its end applies")?;
    check(store.expired_wrap_ups(i64::MAX, 10).await?.is_empty(), "an ended wrap-up is no longer listed")?;
    check(store.get_state(&erin).await?.wrap_up_until_ms == 0, "and no longer has an end")?;
    let again = store.set_state_if(&erin, AgentState::WrapUp, 400, &available).await?;
    check(again.is_none(), "ending it twice changes nothing")?;

    // Ended early by the agent: the timer goes with it, and a stale end
    // cannot touch a newer wrap-up.
    store.set_state_if(&erin, AgentState::Available, 600, &LiveState::wrap_up(600, 900)).await?;
    store.set_state(&erin, &LiveState::new(AgentState::Away, "break", 650)).await?;
    check(store.expired_wrap_ups(i64::MAX, 10).await?.is_empty(), "a wrap-up ended early has no timer")?;
    store.set_state(&erin, &LiveState::new(AgentState::Available, "", 700)).await?;
    store.set_state_if(&erin, AgentState::Available, 1_000, &LiveState::wrap_up(1_000, 1_300)).await?;
    let stale = store.set_state_if(&erin, AgentState::WrapUp, 900, &available).await?;
    check(stale.is_none(), "the end of an earlier wrap-up leaves a newer one alone")?;
    check(store.get_state(&erin).await?.state == AgentState::WrapUp, "the newer wrap-up holds")?;
    store.set_state(&erin, &LiveState::new(AgentState::Offline, "", 1_100)).await?;
    check(store.expired_wrap_ups(i64::MAX, 10).await?.is_empty(), "going offline ends wrap-up")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::{MemoryAgentStore, MemoryLiveStateStore};

    #[tokio::test]
    async fn memory_stores_pass_the_contract() {
        agent_store_contract(&MemoryAgentStore::default()).await.expect("agent store");
        live_state_contract(&MemoryLiveStateStore::default()).await.expect("live state");
    }
}
