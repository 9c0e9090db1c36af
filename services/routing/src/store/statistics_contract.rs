//! The part of the routing-state contract about statistics the stores
//! keep beside the contacts: answer paces and fair-share tags.

use switchboard_core::{Error, QueueId, TenantId};

use super::RoutingState;
use super::contract::check;
use crate::domain::CHANNEL_VOICE;
use crate::domain::fair_share::FairShares;

const CHAT: i32 = 3;

fn id<T>(parsed: Result<T, Error>) -> Result<T, Error> {
    parsed
}

/// The answer pace of a waiting line: recorded per queue and channel, and
/// what estimates are made of; answers recorded at once all count.
pub async fn answer_pace_contract(state: &dyn RoutingState) -> Result<(), Error> {
    let acme = id(TenantId::parse("acme", "t"))?;
    let queue = id(QueueId::parse("paced", "q"))?;
    check(state.answer_pace(&acme, &queue, CHAT).await?.estimated_wait_ms(1).is_none(), "no history, no estimate")?;
    for answer_ms in [10_000, 14_000, 22_000] {
        state.record_answer(&acme, &queue, CHAT, answer_ms).await?;
    }
    let pace = state.answer_pace(&acme, &queue, CHAT).await?;
    check(
        pace == crate::domain::AnswerPace::default().after_answer(10_000).after_answer(14_000).after_answer(22_000),
        "the pace follows the domain rule",
    )?;
    check(pace.estimated_wait_ms(2) == Some(2 * 5_000), "position times the average interval")?;
    check(state.answer_pace(&acme, &queue, CHANNEL_VOICE).await?.interval_ms == 0, "each channel has its own pace")?;

    // Answers recorded at once (replicas answering together) all count:
    // the latest is the pace's last answer whatever order they land in.
    let busy = id(QueueId::parse("busy", "q"))?;
    let answers: Vec<i64> = (1..=16).rev().map(|second| 100_000 + second * 1_000).collect();
    let recorded =
        futures::future::join_all(answers.iter().map(|answer_ms| state.record_answer(&acme, &busy, CHAT, *answer_ms)))
            .await;
    recorded.into_iter().collect::<Result<Vec<()>, Error>>()?;
    let latest = answers.iter().copied().max().unwrap_or_default();
    let pace = state.answer_pace(&acme, &busy, CHAT).await?;
    check(pace.last_answer_ms == latest, "no answer recorded at once is lost")?;
    Ok(())
}

/// Fair-share tags: even before any sharing, and charges add up, also
/// when two replicas charge from the same view.
pub async fn fair_shares_contract(state: &dyn RoutingState) -> Result<(), Error> {
    let acme = id(TenantId::parse("acme", "t"))?;
    let globex = id(TenantId::parse("globex", "t"))?;
    check(state.fair_shares().await? == FairShares::default(), "even before any sharing")?;
    let one_replica = std::collections::BTreeMap::from([(acme.clone(), 0.5), (globex.clone(), 1.0)]);
    let another_replica = std::collections::BTreeMap::from([(acme.clone(), 0.5)]);
    state.advance_fair_shares(&one_replica).await?;
    state.advance_fair_shares(&another_replica).await?;
    let shares = state.fair_shares().await?;
    check(shares.tag(&acme) == 1.0 && shares.tag(&globex) == 1.0, "both replicas' charges count")?;
    Ok(())
}
