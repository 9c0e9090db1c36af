//! Presence's gauge, refreshed on a timer: agents by live state (those not
//! offline; the agent store holds how many agents exist at all).

use std::time::Duration;

use switchboard_core::Error;
use switchboard_platform::metrics::{labels, metrics};
use switchboard_proto::presence::v1::AgentState;

use crate::sessions::PresenceCore;

/// How often the gauge is read from the live store.
pub const GAUGES_INTERVAL: Duration = Duration::from_secs(5);

/// Every state the gauge shows, zero included.
const SHOWN: [AgentState; 4] = [AgentState::Available, AgentState::Away, AgentState::WrapUp, AgentState::NotResponding];

impl PresenceCore {
    /// One refresh of `switchboard_agents{state}`.
    pub async fn report_gauges(&self) -> Result<(), Error> {
        let counts = self.live.online_states().await?;
        for state in SHOWN {
            let count = counts.get(&state).copied().unwrap_or(0);
            metrics().agents_by_state.get_or_create(&labels([("state", state.as_str_name())])).set(count);
        }
        Ok(())
    }
}
