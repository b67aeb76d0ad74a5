//! Kernel audit records of denials (seccomp, SELinux, AppArmor): where they come from, their
//! parsing, their enrichment with process, container and pod, and the log enricher that reads,
//! filters, aggregates and prints them (`enricher`).

pub mod avc_trace;
pub mod enrich;
pub mod enricher;
pub mod fair;
pub mod filter;
pub mod follow;
pub mod metrics;
pub mod netlink;
pub mod op_metrics;
pub mod output;
pub mod parse;
pub mod pipeline;
pub mod source;
pub mod tap;
pub mod text;
