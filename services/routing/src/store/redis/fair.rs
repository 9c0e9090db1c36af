//! The fair-share tags of the pool's tenants (`domain::fair_share`): one
//! hash, `t:<tenant>` each tenant's tag, charged with `HINCRBYFLOAT` so
//! replicas charging at once each count theirs. Losing it (a Redis flush)
//! only restarts the sharing from even.

use std::collections::{BTreeMap, HashMap};

use switchboard_core::{Error, TenantId};
use switchboard_platform::redis::redis_error;

use super::RedisRoutingState;
use crate::domain::fair_share::FairShares;
use crate::store::codec::corrupt;

const TENANT_FIELD_PREFIX: &str = "t:";

impl RedisRoutingState {
    pub(super) async fn read_fair_shares(&self) -> Result<FairShares, Error> {
        let mut connection = self.connection.clone();
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.fair_shares_key())
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        decode_fair_shares(fields)
    }

    pub(super) async fn add_fair_share_charges(&self, charges: &BTreeMap<TenantId, f64>) -> Result<(), Error> {
        let mut pipeline = redis::pipe();
        for (tenant, charge) in charges {
            pipeline
                .cmd("HINCRBYFLOAT")
                .arg(self.fair_shares_key())
                .arg(format!("{TENANT_FIELD_PREFIX}{tenant}"))
                .arg(format!("{charge:?}"))
                .ignore();
        }
        let mut connection = self.connection.clone();
        let _: () = pipeline.query_async(&mut connection).await.map_err(redis_error)?;
        Ok(())
    }

    pub(super) async fn forget_fair_share(&self, tenant: &TenantId) -> Result<(), Error> {
        let mut connection = self.connection.clone();
        let _: () = redis::cmd("HDEL")
            .arg(self.fair_shares_key())
            .arg(format!("{TENANT_FIELD_PREFIX}{tenant}"))
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(())
    }
}

/// The tags of the fair-share hash's fields.
pub(super) fn decode_fair_shares(fields: impl IntoIterator<Item = (String, String)>) -> Result<FairShares, Error> {
    let mut shares = FairShares::default();
    for (field, value) in fields {
        let Some(tenant) = field.strip_prefix(TENANT_FIELD_PREFIX) else { continue };
        let tenant = TenantId::parse(tenant, "tenant").map_err(|_| corrupt("fair-share tenant"))?;
        let tag: f64 = value.parse().map_err(|_| corrupt("fair-share tag"))?;
        shares.tag_by_tenant.insert(tenant, tag);
    }
    Ok(shares)
}
