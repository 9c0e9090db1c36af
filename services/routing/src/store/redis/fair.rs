//! The fair-share tags of the pool's tenants (`domain::fair_share`): one
//! hash, `v` the virtual time and `t:<tenant>` each tenant's finish tag.
//! Losing it (a Redis flush) only restarts the sharing from even.

use std::collections::HashMap;

use switchboard_core::{Error, TenantId};
use switchboard_platform::redis::redis_error;

use super::RedisRoutingState;
use crate::domain::fair_share::FairShares;
use crate::store::codec::corrupt;

const VIRTUAL_TIME_FIELD: &str = "v";
const TENANT_FIELD_PREFIX: &str = "t:";

impl RedisRoutingState {
    pub(super) async fn read_fair_shares(&self) -> Result<FairShares, Error> {
        let mut connection = self.connection.clone();
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.fair_shares_key())
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        let mut shares = FairShares::default();
        for (field, value) in fields {
            let value: f64 = value.parse().map_err(|_| corrupt("fair-share tag"))?;
            if field == VIRTUAL_TIME_FIELD {
                shares.virtual_time = value;
            } else if let Some(tenant) = field.strip_prefix(TENANT_FIELD_PREFIX) {
                let tenant = TenantId::parse(tenant, "tenant").map_err(|_| corrupt("fair-share tenant"))?;
                shares.finish_by_tenant.insert(tenant, value);
            }
        }
        Ok(shares)
    }

    pub(super) async fn write_fair_shares(&self, shares: &FairShares) -> Result<(), Error> {
        let mut invocation = self.fair_shares.key(self.fair_shares_key());
        // `{:?}` prints the shortest text that reads back as the same f64.
        invocation.arg(VIRTUAL_TIME_FIELD).arg(format!("{:?}", shares.virtual_time));
        for (tenant, finish) in &shares.finish_by_tenant {
            invocation.arg(format!("{TENANT_FIELD_PREFIX}{tenant}")).arg(format!("{finish:?}"));
        }
        let mut connection = self.connection.clone();
        let _: i64 = invocation.invoke_async(&mut connection).await.map_err(redis_error)?;
        Ok(())
    }
}
