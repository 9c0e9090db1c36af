//! The `switchboard` binary's library: command line, wiring of the five
//! services on embedded or real backends, and the `dev --demo` simulator.

pub mod cli;
pub mod demo;
pub mod dev;
pub mod kpi_recompute;
pub mod operator;
pub mod wiring;
