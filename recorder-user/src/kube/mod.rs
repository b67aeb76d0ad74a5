//! Everything that touches kube: the custom resources, the pod index, the reconcilers.

pub mod crd;
pub mod daemon;
pub mod index;
pub mod publish;
pub mod recordings;
