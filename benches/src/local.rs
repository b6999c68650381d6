//! A local cluster of real `holdfast-server` processes on 127.0.0.1, for
//! the demo and the load tools: starting, killing and restarting nodes,
//! and waiting for leaders.
//!
//! The server binary is looked up next to the running binary (both are
//! built into the same `target/<profile>/` directory), so a tool works from
//! wherever cargo put it.

use holdfast_server::pb::internal::admin_client::AdminClient;
use holdfast_server::pb::internal::{ClusterStatusRequest, ClusterStatusResponse};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// How long a cluster may take to elect its leaders.
pub const START_DEADLINE: Duration = Duration::from_secs(30);
/// Pause between two polls of a cluster's status.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Makes the process `command` starts die with the tool that started it,
/// even when the tool is killed (`kill -9`, a panic that aborts): the
/// kernel sends it SIGKILL when its parent thread dies. Set after any
/// `uid`/`gid` change of the command (std runs `pre_exec` hooks after
/// those), since a change of credentials clears the setting.
pub fn die_with_parent(command: &mut Command) {
    // SAFETY: prctl(2) is async-signal-safe; nothing else runs between
    // fork and exec here.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// A binary built next to the running one.
pub fn sibling_binary(name: &str) -> PathBuf {
    let me = std::env::current_exe().expect("own path");
    me.with_file_name(name)
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A lazily connecting channel to a local node (no delay on small writes).
pub fn channel(port: u16) -> Channel {
    Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("uri")
        .tcp_nodelay(true)
        .connect_lazy()
}

/// N server processes and where they keep their data.
pub struct LocalCluster {
    /// One child per node (index = node id - 1); `None` while killed.
    children: Vec<Option<Child>>,
    /// Each node's port.
    pub ports: Vec<u16>,
    peers: String,
    shards: u32,
    binary: PathBuf,
    data_root: PathBuf,
    /// Where the servers' logs go (`None`: discarded).
    log_dir: Option<PathBuf>,
}

impl LocalCluster {
    /// Starts `ports.len()` nodes of a cluster with `shards` shards, each
    /// with its data under `data_root/n<id>`.
    pub fn start(ports: Vec<u16>, shards: u32, data_root: &Path, log_dir: Option<&Path>) -> Self {
        let peers = ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = LocalCluster {
            children: Vec::new(),
            peers,
            shards,
            binary: sibling_binary("holdfast-server"),
            data_root: data_root.to_path_buf(),
            log_dir: log_dir.map(Path::to_path_buf),
            ports,
        };
        cluster.children = (0..cluster.ports.len())
            .map(|i| Some(cluster.spawn(i)))
            .collect();
        cluster
    }

    /// Data directory of node `i` (0-based).
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.data_root.join(format!("n{}", i + 1))
    }

    fn spawn(&self, i: usize) -> Child {
        let stderr = match &self.log_dir {
            Some(dir) => std::fs::File::create(dir.join(format!("n{}.log", i + 1)))
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
            None => Stdio::null(),
        };
        let mut command = Command::new(&self.binary);
        die_with_parent(&mut command);
        command
            .args(["--id", &(i + 1).to_string()])
            .args(["--listen", &format!("127.0.0.1:{}", self.ports[i])])
            .args(["--peers", &self.peers])
            .args(["--shards", &self.shards.to_string()])
            .arg("--data-dir")
            .arg(self.data_dir(i))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e} (build it with cargo build --release -p holdfast-server)",
                    self.binary.display()
                )
            })
    }

    /// `kill -9` of node `i` (0-based); waits for the process to end.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again on its data directory.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.children[i] = Some(self.spawn(i));
    }

    /// Sends SIGTERM to every node and waits for each to exit (a clean
    /// stop); a node still running after `grace` is killed.
    pub fn stop(&mut self, grace: Duration) {
        for child in self.children.iter().flatten() {
            // std offers only SIGKILL; a clean stop is SIGTERM.
            // SAFETY: kill(2) on a pid this process spawned and has not
            // reaped, so it cannot name another process.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + grace;
        for slot in &mut self.children {
            if let Some(mut child) = slot.take() {
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = child.try_wait() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20)); // polling interval
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// The status of the cluster as node `i` sees it, if it answers.
    pub async fn status(&self, i: usize) -> Option<ClusterStatusResponse> {
        AdminClient::new(channel(self.ports[i]))
            .cluster_status(ClusterStatusRequest { with_digest: false })
            .await
            .ok()
            .map(|r| r.into_inner())
    }

    /// Leader port of every shard, once node 1 (or, if it is down, the
    /// first live node) knows a leader for each.
    pub async fn leaders(&self) -> Vec<u16> {
        let start = Instant::now();
        loop {
            for i in 0..self.ports.len() {
                if self.children[i].is_none() {
                    continue;
                }
                if let Some(status) = self.status(i).await {
                    if status.shards.iter().all(|s| s.leader != 0) {
                        return status
                            .shards
                            .iter()
                            .map(|s| self.ports[s.leader as usize - 1])
                            .collect();
                    }
                }
                break;
            }
            assert!(
                start.elapsed() < START_DEADLINE,
                "the cluster elected no leaders in time"
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Leader port of every shard once leaders have settled where the
    /// cluster's leader balance puts them (shard `s` on node `s mod n + 1`)
    /// and every node agrees: work that starts before that would see
    /// leaders move under it, and its requests forwarded or refused.
    pub async fn balanced_leaders(&self) -> Vec<u16> {
        let start = Instant::now();
        let n = self.ports.len() as u64;
        'poll: loop {
            assert!(
                start.elapsed() < START_DEADLINE,
                "shard leaders did not settle on their preferred nodes in time"
            );
            for i in 0..self.ports.len() {
                let settled = self.status(i).await.is_some_and(|status| {
                    status
                        .shards
                        .iter()
                        .all(|s| s.leader == u64::from(s.shard) % n + 1)
                });
                if !settled {
                    tokio::time::sleep(POLL_INTERVAL).await;
                    continue 'poll;
                }
            }
            return (0..self.shards)
                .map(|s| self.ports[(u64::from(s) % n) as usize])
                .collect();
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
