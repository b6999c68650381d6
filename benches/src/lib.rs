//! Load generation and measurement for Holdfast: the engine demo, the
//! cluster demo, the cluster load (`cluster-load`, beside the no-op gRPC
//! floor `grpc-floor`) and the restart-time bench (`recovery-time`). The
//! full harness with PostgreSQL and Redis peers is the load-harness issue.
#![deny(missing_docs)]

pub mod local;
