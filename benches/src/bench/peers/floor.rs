//! The no-op gRPC floor as a peer: one `grpc-floor` process (built next to
//! the harness) serving Holdfast's own `Inventory` service with the same
//! tonic stack, answering at once. What a load reaches against it is the
//! most the transport allows on this machine.

use super::{wait_for_port, PeerProcess};
use crate::local::{free_port, sibling_binary};
use std::path::Path;
use std::process::Command;

/// A running floor.
pub struct Floor {
    /// Where it listens on 127.0.0.1.
    pub port: u16,
    _process: PeerProcess,
}

impl Floor {
    /// Starts `grpc-floor` on a free port and waits until it listens; its
    /// output goes to `log_dir/floor.log`.
    pub fn start(log_dir: &Path) -> Result<Floor, String> {
        let binary = sibling_binary("grpc-floor");
        if !binary.is_file() {
            return Err(format!(
                "{} is missing (cargo build -p holdfast-bench builds it)",
                binary.display()
            ));
        }
        let port = free_port();
        let mut process = PeerProcess::spawn(
            Command::new(&binary).args(["--listen", &format!("127.0.0.1:{port}")]),
            &log_dir.join("floor.log"),
            libc::SIGKILL,
        )?;
        wait_for_port(port, &mut process, "grpc-floor")?;
        Ok(Floor {
            port,
            _process: process,
        })
    }
}
