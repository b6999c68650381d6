//! Load generation and measurement for Holdfast. The cluster load harness
//! (`holdfast-bench`) lands with the load-harness issue; for now this crate
//! holds the engine demo.
#![deny(missing_docs)]
