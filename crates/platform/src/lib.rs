//! Switchboard's platform layer: what every service shares and nothing a
//! service decides. Configuration, telemetry, the gRPC server bootstrap,
//! authentication, the event bus (Kafka and in-process), Redis and
//! PostgreSQL access, readiness and shutdown.

pub mod audit;
pub mod auth;
pub mod bus;
pub mod config;
pub mod credentials;
pub mod group_commit;
pub mod grpc;
mod grpc_metrics;
pub mod held_contact;
pub mod message_limit;
pub mod metrics;
pub mod oidc;
pub mod pagination;
pub mod postgres;
pub mod quota;
pub mod rate_limit;
pub mod readiness;
pub mod redis;
pub mod service;
pub mod shutdown;
pub mod status;
pub mod stream_limit;
pub mod telemetry;
pub mod tls;
pub mod ttl_cache;

pub use config::Config;
