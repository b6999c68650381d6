//! The Rust client of Holdfast: leader discovery, retries that reuse the
//! request id, deadlines. Empty until the API issue lands.
#![deny(missing_docs)]
