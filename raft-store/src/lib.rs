//! Raft log and state storage on RocksDB for many Raft groups in one database.
//!
//! Empty until the Raft issue lands; the crate exists now so the workspace
//! layout (design §2) is fixed from the first commit.
#![deny(missing_docs)]
