//! Kernel audit records of denials (seccomp, SELinux, AppArmor): parsing now; sources and
//! enrichment with pod metadata next (the log enricher).

pub mod avc_trace;
pub mod enrich;
pub mod fair;
pub mod filter;
pub mod follow;
pub mod metrics;
pub mod netlink;
pub mod op_metrics;
pub mod parse;
pub mod pipeline;
pub mod source;
pub mod tap;
pub mod text;
