//! Generated types and gRPC stubs of the Switchboard API v1.
//!
//! Packages follow `switchboard.<area>.v1`; [`FILE_DESCRIPTOR_SET`] is what
//! gRPC reflection serves.

#![allow(clippy::all, clippy::unwrap_used, clippy::expect_used, missing_docs)]

pub mod codec;

/// The encoded `FileDescriptorSet` of every Switchboard proto file.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/switchboard_descriptor.bin"));

pub mod common {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/switchboard.common.v1.rs"));
    }
}

pub mod ingestion {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/switchboard.ingestion.v1.rs"));
    }
}

pub mod routing {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/switchboard.routing.v1.rs"));
    }
}

pub mod presence {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/switchboard.presence.v1.rs"));
    }
}

pub mod crm {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/switchboard.crm.v1.rs"));
    }
}

pub mod kpi {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/switchboard.kpi.v1.rs"));
    }
}

pub mod access {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/switchboard.access.v1.rs"));
    }
}

pub mod events {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/switchboard.events.v1.rs"));
    }
}
