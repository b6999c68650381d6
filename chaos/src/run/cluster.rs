//! A cluster of real `holdfast-server` processes on 127.0.0.1 that the
//! nemesis can hurt: `kill -9`, SIGTERM and restart, SIGSTOP/SIGCONT,
//! partitions through `Admin.SetPartition`, and restarts on an empty data
//! directory.
//!
//! Every node is started with `PR_SET_PDEATHSIG = SIGKILL`, so it dies with
//! the harness even when the harness is killed; `Drop` kills and reaps the
//! rest (a panic unwinds through it). Nodes are spawned from Tokio worker
//! threads or the main thread, never from the blocking pool, whose threads
//! exit when idle (PDEATHSIG fires when the *thread* that forked exits).

use holdfast_client::pb::internal::admin_client::AdminClient;
use holdfast_client::pb::internal::{
    ClusterStatusRequest, ClusterStatusResponse, DumpShardRequest, DumpShardResponse,
    SetPartitionRequest,
};
use std::fs::OpenOptions;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// Longest a node may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Timeout of one Admin call (a paused node never answers).
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest Admin answer accepted: a shard dump holds at most the server's
/// `DUMP_ITEMS_MAX` (a million) rows plus reservations of about 100 bytes
/// each; gRPC's default of 4 MiB is reached by a 30-minute run.
const ADMIN_REPLY_BYTES_MAX: usize = 256 << 20;

/// N server processes and their data.
pub struct Cluster {
    binary: PathBuf,
    /// Each node's port (index = node id - 1).
    pub ports: Vec<u16>,
    peers: String,
    /// Shards of the cluster.
    pub shards: u32,
    data_root: PathBuf,
    log_dir: PathBuf,
    extra_args: Vec<String>,
    children: Vec<Option<Child>>,
    paused: Vec<bool>,
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Cluster {
    /// Starts `n` nodes with data under `root/data` and logs under
    /// `root/logs`; every node gets `--chaos-faults` and `extra_args`.
    pub fn start(
        binary: &Path,
        n: usize,
        shards: u32,
        root: &Path,
        extra_args: &[String],
    ) -> std::io::Result<Cluster> {
        let ports = (0..n).map(|_| free_port()).collect::<Result<Vec<_>, _>>()?;
        let peers = ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let log_dir = root.join("logs");
        std::fs::create_dir_all(&log_dir)?;
        let mut c = Cluster {
            binary: binary.to_path_buf(),
            ports,
            peers,
            shards,
            data_root: root.join("data"),
            log_dir,
            extra_args: extra_args.to_vec(),
            children: (0..n).map(|_| None).collect(),
            paused: vec![false; n],
        };
        for i in 0..n {
            c.spawn(i)?;
        }
        Ok(c)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.ports.len()
    }

    /// Client addresses of every node.
    pub fn addresses(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect()
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.data_root.join(format!("n{}", i + 1))
    }

    /// Whether node `i` has a live (possibly paused) process.
    pub fn is_up(&self, i: usize) -> bool {
        self.children[i].is_some()
    }

    /// Starts node `i` on its data directory (a no-op if it runs).
    pub fn spawn(&mut self, i: usize) -> std::io::Result<()> {
        if self.children[i].is_some() {
            return Ok(());
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_dir.join(format!("n{}.log", i + 1)))?;
        let mut command = Command::new(&self.binary);
        // SAFETY: prctl(2) is async-signal-safe; nothing else runs between
        // fork and exec here.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .args(["--id", &(i + 1).to_string()])
            .args(["--listen", &format!("127.0.0.1:{}", self.ports[i])])
            .args(["--peers", &self.peers])
            .args(["--shards", &self.shards.to_string()])
            .arg("--data-dir")
            .arg(self.data_dir(i))
            .arg("--chaos-faults")
            .args(&self.extra_args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()?;
        self.children[i] = Some(child);
        self.paused[i] = false;
        Ok(())
    }

    fn signal(&self, i: usize, signal: libc::c_int) {
        if let Some(child) = &self.children[i] {
            // SAFETY: kill(2) on a pid this process spawned and has not
            // reaped, so it cannot name another process.
            unsafe {
                libc::kill(child.id() as libc::pid_t, signal);
            }
        }
    }

    /// `kill -9` of node `i`; waits for it to end.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused[i] = false;
    }

    /// SIGTERM (a clean stop), SIGKILL after a grace period.
    pub fn stop(&mut self, i: usize) {
        self.resume(i);
        self.signal(i, libc::SIGTERM);
        if let Some(mut child) = self.children[i].take() {
            let deadline = Instant::now() + STOP_GRACE;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20)); // polling interval
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Removes node `i`'s data directory (the node must be down).
    pub fn wipe(&mut self, i: usize) -> std::io::Result<()> {
        assert!(self.children[i].is_none(), "wipe of a running node");
        match std::fs::remove_dir_all(self.data_dir(i)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// SIGSTOP.
    pub fn pause(&mut self, i: usize) {
        if self.children[i].is_some() {
            self.signal(i, libc::SIGSTOP);
            self.paused[i] = true;
        }
    }

    /// SIGCONT.
    pub fn resume(&mut self, i: usize) {
        if self.paused[i] {
            self.signal(i, libc::SIGCONT);
            self.paused[i] = false;
        }
    }

    /// The Admin API of node `i`.
    pub fn admin(&self, i: usize) -> AdminClient<Channel> {
        admin_client(self.ports[i], ADMIN_TIMEOUT)
    }

    /// Node `i`'s status, if it answers in time.
    pub async fn status(&self, i: usize) -> Option<ClusterStatusResponse> {
        status_at(self.ports[i], ADMIN_TIMEOUT).await
    }

    /// Cuts node `i`'s links to `blocked` (node ids); empty heals.
    pub async fn set_partition(&self, i: usize, blocked: &[u64]) -> Result<(), String> {
        let mut admin = self.admin(i);
        let call = admin.set_partition(SetPartitionRequest {
            blocked_nodes: blocked.to_vec(),
        });
        match tokio::time::timeout(ADMIN_TIMEOUT, call).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(s)) => Err(format!("n{}: {s}", i + 1)),
            Err(_) => Err(format!("n{}: timed out", i + 1)),
        }
    }

    /// Shard `shard` of node `i`.
    pub async fn dump(&self, i: usize, shard: u32) -> Result<DumpShardResponse, String> {
        let mut admin = self.admin(i);
        let call = admin.dump_shard(DumpShardRequest { shard });
        match tokio::time::timeout(ADMIN_TIMEOUT * 5, call).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => Err(format!("n{} shard {shard}: {s}", i + 1)),
            Err(_) => Err(format!("n{} shard {shard}: timed out", i + 1)),
        }
    }
}

/// The status of the node on 127.0.0.1:`port`, if it answers within
/// `timeout`. Needs no `Cluster`, so pollers need not hold its lock.
pub async fn status_at(port: u16, timeout: Duration) -> Option<ClusterStatusResponse> {
    let mut admin = admin_client(port, timeout);
    let call = admin.cluster_status(ClusterStatusRequest { with_digest: false });
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(r)) => Some(r.into_inner()),
        _ => None,
    }
}

/// The Admin API of the node on 127.0.0.1:`port`, every call bounded by
/// `timeout` (connecting lazily, so a node that is down costs nothing
/// until called).
pub fn admin_client(port: u16, timeout: Duration) -> AdminClient<Channel> {
    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("a valid uri")
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect_lazy();
    AdminClient::new(channel).max_decoding_message_size(ADMIN_REPLY_BYTES_MAX)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}
