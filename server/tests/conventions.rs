//! The conventions every gRPC service follows (design §6), checked on real
//! `holdfast-server` processes on 127.0.0.1: grpc.health.v1, server
//! reflection, Prometheus metrics over HTTP, JSON logs, and a graceful stop
//! on SIGTERM that lets an in-flight request finish and hands leadership
//! over.
//!
//! Every wait polls with a deadline; child processes are killed and reaped
//! on drop (a stopped one too: SIGKILL ends a SIGSTOPped process).

use holdfast_server::pb::internal::admin_client::AdminClient;
use holdfast_server::pb::internal::ClusterStatusRequest;
use holdfast_server::pb::inventory as pb;
use holdfast_server::pb::inventory::inventory_client::InventoryClient;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const DEADLINE: Duration = Duration::from_secs(30);
/// How long a node may take to exit after SIGTERM: the 5 s drain bound, the
/// 3 s hand-off bound, the 2 s runtime stop, the driver's stop, and slack
/// for a loaded host.
const EXIT_DEADLINE: Duration = Duration::from_secs(15);
const INVENTORY: &str = "holdfast.inventory.v1.Inventory";
/// Polling interval of every wait below.
const POLL: Duration = Duration::from_millis(20);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Sends `signal` to the child's process.
fn signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal})");
}

/// Waits for the child to exit, at most `deadline`.
fn wait_exit(child: &mut Child, deadline: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(POLL); // polling interval
    }
    None
}

/// Polls `f` until it yields `Some`, or panics with `what` at the deadline.
async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(POLL).await; // polling interval
    }
}

/// A cluster of `holdfast-server` processes with metrics endpoints.
struct Cluster {
    ports: Vec<u16>,
    metrics_ports: Vec<u16>,
    children: Vec<Option<Child>>,
    dir: TempDir,
    shards: u32,
    config: Option<PathBuf>,
}

impl Cluster {
    /// `n` members, none started yet; `config`: TOML every node reads.
    fn new(n: usize, shards: u32, config: Option<&str>) -> Cluster {
        let dir = TempDir::new().expect("temp dir");
        let config = config.map(|text| {
            let path = dir.path().join("holdfast.toml");
            std::fs::write(&path, text).expect("write config");
            path
        });
        Cluster {
            ports: (0..n).map(|_| free_port()).collect(),
            metrics_ports: (0..n).map(|_| free_port()).collect(),
            children: (0..n).map(|_| None).collect(),
            dir,
            shards,
            config,
        }
    }

    fn peers(&self) -> String {
        self.ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn command(&self, i: usize) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_holdfast-server"));
        cmd.args(["--id", &(i + 1).to_string()])
            .args(["--listen", &format!("127.0.0.1:{}", self.ports[i])])
            .args([
                "--metrics-listen",
                &format!("127.0.0.1:{}", self.metrics_ports[i]),
            ])
            .args(["--peers", &self.peers()])
            .args(["--shards", &self.shards.to_string()])
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("n{}", i + 1)))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(config) = &self.config {
            cmd.arg("--config").arg(config);
        }
        cmd
    }

    fn spawn(&mut self, i: usize) {
        let child = self.command(i).spawn().expect("spawn holdfast-server");
        self.children[i] = Some(child);
    }

    fn child(&self, i: usize) -> &Child {
        self.children[i].as_ref().expect("running")
    }

    fn addr(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i])
    }

    fn channel(&self, i: usize) -> Channel {
        Channel::from_shared(self.addr(i))
            .expect("uri")
            .connect_lazy()
    }

    /// Three nodes of one shard with `[raft] election_ticks` set, started,
    /// once every node knows node 1 (the shard's preferred node) leads.
    async fn three_led_by_node_1(election_ticks: usize) -> Cluster {
        let config = format!("[raft]\nelection_ticks = {election_ticks}\n");
        let mut c = Cluster::new(3, 1, Some(&config));
        for i in 0..3 {
            c.spawn(i);
        }
        for i in 0..3 {
            until(&format!("node {} to see node 1 lead", i + 1), || async {
                (c.leader(i, 0).await == Some(1)).then_some(())
            })
            .await;
        }
        c
    }

    /// Waits for node `i`, already signalled, to exit (at most
    /// [`EXIT_DEADLINE`]) and checks that it exited 0.
    fn exits_zero(&mut self, i: usize) {
        let mut child = self.children[i].take().expect("running");
        let status = wait_exit(&mut child, EXIT_DEADLINE).unwrap_or_else(|| {
            let _ = child.kill();
            panic!("node {} did not exit within {EXIT_DEADLINE:?}", i + 1)
        });
        assert_eq!(status.code(), Some(0), "a graceful stop exits 0: {status}");
    }

    /// Node `i`'s health for `service`; `None` when it does not answer.
    async fn health(&self, i: usize, service: &str) -> Option<ServingStatus> {
        let reply = HealthClient::new(self.channel(i))
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .ok()?;
        ServingStatus::try_from(reply.into_inner().status).ok()
    }

    /// Node `i`'s metrics page; `None` when it does not answer.
    async fn scrape(&self, i: usize) -> Option<String> {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.metrics_ports[i]))
            .await
            .ok()?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut page = String::new();
        stream.read_to_string(&mut page).await.ok()?;
        page.starts_with("HTTP/1.1 200").then_some(page)
    }

    /// The leader of `shard` as node `i` knows it (0: none).
    async fn leader(&self, i: usize, shard: usize) -> Option<u64> {
        let status = AdminClient::new(self.channel(i))
            .cluster_status(ClusterStatusRequest { with_digest: false })
            .await
            .ok()?
            .into_inner();
        status.shards.get(shard).map(|s| s.leader)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The value of the series `name{labels…}` on a Prometheus text page
/// (labels in any order; others may be present).
fn metric(page: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    page.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            return None;
        }
        let (series, value) = rest.rsplit_once(' ')?;
        labels
            .iter()
            .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

fn reserve_request(id: &str, quantity: i64) -> pb::ReserveRequest {
    pb::ReserveRequest {
        request_id: id.into(),
        owner_id: "cart-1".into(),
        customer_id: "cust-1".into(),
        lines: vec![pb::ReserveLine {
            sku: "SKU-1".into(),
            quantity,
            location: Some("berlin".into()),
        }],
        ttl_ms: 600_000,
        policy: 0,
        allow_split: false,
        region: None,
    }
}

/// Creates the location and stocks SKU-1 through node `i` (retrying while
/// leaders are being elected).
async fn stock(c: &Cluster, i: usize) {
    let inventory = InventoryClient::new(c.channel(i));
    until("the location", || {
        let mut inv = inventory.clone();
        async move {
            inv.upsert_location(pb::UpsertLocationRequest {
                request_id: "loc-1".into(),
                location: "berlin".into(),
                region: "eu".into(),
                priority: 1,
            })
            .await
            .ok()
        }
    })
    .await;
    until("the stock", || {
        let mut inv = inventory.clone();
        async move {
            inv.adjust_stock(pb::AdjustStockRequest {
                request_id: "stock-1".into(),
                sku: "SKU-1".into(),
                location: "berlin".into(),
                delta: 100,
                expected_on_hand: None,
            })
            .await
            .ok()
        }
    })
    .await;
}

/// Services a node lists over reflection (`v1` or `v1alpha`).
async fn reflected_services(c: &Cluster, i: usize, v1: bool) -> Vec<String> {
    if v1 {
        use tonic_reflection::pb::v1 as r;
        let request = r::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(r::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            )),
        };
        let mut replies = r::server_reflection_client::ServerReflectionClient::new(c.channel(i))
            .server_reflection_info(tokio_stream::once(request))
            .await
            .expect("reflection v1")
            .into_inner();
        let reply = replies
            .message()
            .await
            .expect("a reply")
            .expect("one reply");
        match reply.message_response {
            Some(r::server_reflection_response::MessageResponse::ListServicesResponse(list)) => {
                list.service.into_iter().map(|s| s.name).collect()
            }
            other => panic!("not a service list: {other:?}"),
        }
    } else {
        use tonic_reflection::pb::v1alpha as r;
        let request = r::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(r::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            )),
        };
        let mut replies = r::server_reflection_client::ServerReflectionClient::new(c.channel(i))
            .server_reflection_info(tokio_stream::once(request))
            .await
            .expect("reflection v1alpha")
            .into_inner();
        let reply = replies
            .message()
            .await
            .expect("a reply")
            .expect("one reply");
        match reply.message_response {
            Some(r::server_reflection_response::MessageResponse::ListServicesResponse(list)) => {
                list.service.into_iter().map(|s| s.name).collect()
            }
            other => panic!("not a service list: {other:?}"),
        }
    }
}

/// The file descriptors reflection v1 returns for `symbol` (what grpcurl
/// asks before it can call a method).
async fn reflected_file_for(c: &Cluster, i: usize, symbol: &str) -> Vec<Vec<u8>> {
    use tonic_reflection::pb::v1 as r;
    let request = r::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            r::server_reflection_request::MessageRequest::FileContainingSymbol(symbol.into()),
        ),
    };
    let mut replies = r::server_reflection_client::ServerReflectionClient::new(c.channel(i))
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("reflection v1")
        .into_inner();
    let reply = replies
        .message()
        .await
        .expect("a reply")
        .expect("one reply");
    match reply.message_response {
        Some(r::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) => {
            files.file_descriptor_proto
        }
        other => panic!("no descriptor for {symbol}: {other:?}"),
    }
}

/// Design §6: standard health (NOT_SERVING until the node has caught up),
/// reflection of our services, and Prometheus metrics that count a Reserve
/// by method and code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reflection_and_metrics_on_a_three_node_cluster() {
    let mut c = Cluster::new(3, 2, None);
    // One member of three: no shard can elect a leader.
    c.spawn(0);
    let page = until("node 1's first health poll in its metrics", || async {
        c.scrape(0)
            .await
            .filter(|p| metric(p, "holdfast_health_serving", &[]).is_some())
    })
    .await;
    assert_eq!(metric(&page, "holdfast_health_serving", &[]), Some(0.0));
    for service in ["", INVENTORY] {
        // The metrics endpoint opens before the gRPC port: wait for an answer.
        let status = until("node 1's health answer", || c.health(0, service)).await;
        assert_eq!(
            status,
            ServingStatus::NotServing,
            "no quorum, no leader: {service:?} must not be SERVING"
        );
    }
    assert_eq!(
        metric(&page, "holdfast_shard_leader_id", &[("shard", "0")]),
        Some(0.0)
    );

    c.spawn(1);
    c.spawn(2);
    for i in 0..3 {
        for service in ["", INVENTORY] {
            until(&format!("node {} SERVING {service:?}", i + 1), || async {
                (c.health(i, service).await == Some(ServingStatus::Serving)).then_some(())
            })
            .await;
        }
    }
    let unknown = HealthClient::new(c.channel(0))
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .expect_err("an unknown service");
    assert_eq!(unknown.code(), Code::NotFound);

    // Reflection, both versions, lists our services and the standard ones.
    for v1 in [true, false] {
        let services = reflected_services(&c, 0, v1).await;
        for name in [
            INVENTORY,
            "holdfast.internal.v1.Admin",
            "grpc.health.v1.Health",
        ] {
            assert!(
                services.iter().any(|s| s == name),
                "reflection (v1: {v1}) lists {name}: {services:?}"
            );
        }
    }
    assert!(!reflected_file_for(&c, 0, INVENTORY).await.is_empty());

    // A Reserve through node 1 (forwarded to the shard's leader if needed),
    // then one refused for want of stock.
    stock(&c, 0).await;
    let inventory = InventoryClient::new(c.channel(0));
    until("a reserve", || {
        let mut inv = inventory.clone();
        async move { inv.reserve(reserve_request("r-1", 1)).await.ok() }
    })
    .await;
    let refused = inventory
        .clone()
        .reserve(reserve_request("r-2", 1_000))
        .await
        .expect_err("more than the stock");
    assert_eq!(refused.code(), Code::FailedPrecondition);

    let reserve = |code| {
        [
            ("grpc_service", INVENTORY),
            ("grpc_method", "Reserve"),
            ("grpc_code", code),
        ]
    };
    let page = until("the Reserve counters on node 1", || async {
        c.scrape(0).await.filter(|p| {
            metric(p, "holdfast_grpc_requests_total", &reserve("OK")).is_some_and(|v| v >= 1.0)
                && metric(
                    p,
                    "holdfast_grpc_requests_total",
                    &reserve("FAILED_PRECONDITION"),
                )
                .is_some_and(|v| v >= 1.0)
        })
    })
    .await;
    let labels = [("grpc_service", INVENTORY), ("grpc_method", "Reserve")];
    assert!(
        metric(
            &page,
            "holdfast_grpc_request_duration_seconds_count",
            &labels
        )
        .is_some_and(|v| v >= 2.0),
        "a latency histogram by RPC"
    );
    assert_eq!(
        metric(&page, "holdfast_grpc_requests_in_flight", &labels),
        Some(0.0)
    );
    for name in [
        "holdfast_driver_loop_turns_total",
        "holdfast_driver_fsynced_writes_total",
        "holdfast_driver_entries_applied_total",
        "holdfast_transport_batches_sent_total",
        "holdfast_transport_batches_received_total",
        "holdfast_driver_fsync_seconds_count",
    ] {
        assert!(
            metric(&page, name, &[]).is_some_and(|v| v > 0.0),
            "{name} counts work on node 1: {:?}",
            page.lines()
                .filter(|l| l.contains(name))
                .collect::<Vec<_>>()
        );
    }
    for shard in ["0", "1"] {
        let leader = metric(&page, "holdfast_shard_leader_id", &[("shard", shard)]);
        assert!(
            leader.is_some_and(|l| (1.0..=3.0).contains(&l)),
            "shard {shard} has a leader: {leader:?}"
        );
        assert!(metric(&page, "holdfast_shard_term", &[("shard", shard)]).is_some_and(|t| t > 0.0));
    }
    assert_eq!(metric(&page, "holdfast_health_serving", &[]), Some(1.0));

    // Pending holds, the pre-filter's refusals and the batch sizes. Hold
    // the other 99 units (r-1 holds one), then ask for one more as a first
    // attempt: once node 1 has applied the hold, its own board refuses it.
    until("the other 99 units held", || {
        let mut inv = inventory.clone();
        async move { inv.reserve(reserve_request("r-3", 99)).await.ok() }
    })
    .await;
    let pending = |p: &str| {
        ["0", "1"]
            .iter()
            .map(|shard| metric(p, "holdfast_shard_holds_pending", &[("shard", shard)]))
            .sum::<Option<f64>>()
    };
    let page = until("node 1 refusing a sold-out first attempt itself", || {
        let mut inv = inventory.clone();
        let scrape = c.scrape(0);
        async move {
            let mut request = tonic::Request::new(reserve_request("r-sold-out", 1));
            request
                .metadata_mut()
                .insert("x-holdfast-first-attempt", "1".parse().unwrap());
            let refused = inv.reserve(request).await.expect_err("sold out");
            assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
            scrape.await.filter(|p| {
                metric(p, "holdfast_prefilter_sold_out_refusals_total", &[])
                    .is_some_and(|v| v >= 1.0)
                    && pending(p) == Some(2.0)
            })
        }
    })
    .await;
    assert_eq!(
        metric(&page, "holdfast_prefilter_admission_refusals_total", &[]),
        Some(0.0),
        "no first attempt met admission: the sold-out filter comes first"
    );
    let mut entries = 0.0;
    for i in 0..3 {
        let page = c.scrape(i).await.expect("a metrics page");
        let count = metric(&page, "holdfast_driver_entry_commands_count", &[]).unwrap_or(0.0);
        let sum = metric(&page, "holdfast_driver_entry_commands_sum", &[]).unwrap_or(0.0);
        assert!(
            sum >= count,
            "node {}: {sum} commands in {count} entries",
            i + 1
        );
        entries += count;
    }
    assert!(
        entries >= 3.0,
        "the leaders recorded the batch size of every entry they proposed (the location, the stock, three reserves): {entries}"
    );
}

/// Design §6 graceful shutdown: SIGTERM turns health NOT_SERVING, refuses
/// new client RPCs with UNAVAILABLE, lets a Reserve already in flight
/// finish with OK, then exits 0.
///
/// The Reserve is held in flight by stopping (SIGSTOP) both followers of
/// the shard's leader: it cannot commit until they continue (SIGCONT),
/// which the test does only after the leader has received SIGTERM. A longer
/// election timeout (3–6 s) keeps the leader from stepping down (check
/// quorum) while its followers are stopped for a fraction of a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_reserve_finish_then_exits_zero() {
    let mut c = Cluster::three_led_by_node_1(100).await;
    stock(&c, 0).await;
    until("node 1 SERVING", || async {
        (c.health(0, INVENTORY).await == Some(ServingStatus::Serving)).then_some(())
    })
    .await;
    let mut watch = HealthClient::new(c.channel(0))
        .watch(HealthCheckRequest {
            service: INVENTORY.into(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = watch.message().await.expect("watch").expect("a status");
    assert_eq!(first.status, ServingStatus::Serving as i32);

    signal(c.child(1), libc::SIGSTOP);
    signal(c.child(2), libc::SIGSTOP);
    let mut inventory = InventoryClient::new(c.channel(0));
    let reserve = tokio::spawn(async move {
        let mut request = tonic::Request::new(reserve_request("r-in-flight", 1));
        request.set_timeout(Duration::from_secs(20));
        inventory.reserve(request).await
    });
    let in_flight = [("grpc_service", INVENTORY), ("grpc_method", "Reserve")];
    until("the Reserve in flight on node 1", || async {
        c.scrape(0)
            .await
            .filter(|p| metric(p, "holdfast_grpc_requests_in_flight", &in_flight) == Some(1.0))
    })
    .await;

    signal(c.child(0), libc::SIGTERM);
    let update = tokio::time::timeout(DEADLINE, watch.message())
        .await
        .expect("a health update in time")
        .expect("the watch stream")
        .expect("a status");
    assert_eq!(update.status, ServingStatus::NotServing as i32);
    // New client RPCs are refused (retry elsewhere); health still answers.
    let refused = InventoryClient::new(c.channel(0))
        .reserve(reserve_request("r-after-sigterm", 1))
        .await
        .expect_err("a closing node takes no new Reserve");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("shutting down"), "{refused:?}");
    assert_eq!(
        c.health(0, INVENTORY).await,
        Some(ServingStatus::NotServing)
    );
    assert!(!reserve.is_finished(), "the Reserve waits for its quorum");

    signal(c.child(1), libc::SIGCONT);
    signal(c.child(2), libc::SIGCONT);
    let answer = tokio::time::timeout(DEADLINE, reserve)
        .await
        .expect("the Reserve answered in time")
        .expect("task");
    let answer = answer
        .expect("the in-flight Reserve finished with OK")
        .into_inner();
    assert_eq!(answer.allocations[0].available_after, 99);
    c.exits_zero(0);
}

/// Design §6 graceful shutdown hands leadership over: a node leaving on
/// SIGTERM transfers every shard it leads to a caught-up follower before
/// it exits, so the others have a leader at once. The election timeout
/// here is 6–12 s (200 ticks of 30 ms): had node 1 simply stopped, no
/// follower could elect a leader for shard 0 within 6 s of its exit, and
/// this test gives them 4 s. A write through a survivor then commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_leadership_over_before_exiting() {
    const WITHIN: Duration = Duration::from_secs(4);
    let mut c = Cluster::three_led_by_node_1(200).await;
    stock(&c, 1).await;

    signal(c.child(0), libc::SIGTERM);
    c.exits_zero(0);
    let exited = Instant::now();
    for i in 1..3 {
        let leader = loop {
            match c.leader(i, 0).await {
                Some(l @ (2 | 3)) => break l,
                seen => assert!(
                    exited.elapsed() < WITHIN,
                    "node {} still sees leader {seen:?} {:?} after node 1 exited",
                    i + 1,
                    exited.elapsed()
                ),
            }
            tokio::time::sleep(POLL).await; // polling interval
        };
        assert_ne!(leader, 1);
    }
    let answer = tokio::time::timeout(
        WITHIN,
        InventoryClient::new(c.channel(1)).reserve(reserve_request("r-after-hand-off", 1)),
    )
    .await
    .expect("a Reserve commits without waiting for an election")
    .expect("the Reserve succeeds")
    .into_inner();
    assert_eq!(answer.allocations[0].available_after, 99);
}

/// `--log-format json`: every line on stderr is one JSON object with the
/// event's level and fields; SIGTERM on an idle node exits 0 at once.
#[test]
fn json_logs_are_one_object_per_line_and_sigterm_exits_zero() {
    let c = Cluster::new(1, 1, None);
    let mut child = c
        .command(0)
        .args(["--log-format", "json"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn holdfast-server");
    let stderr = child.stderr.take().expect("stderr");
    let (lines_tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let start = Instant::now();
    while !seen.iter().any(|l: &String| l.contains("\"serving\"")) {
        let left = DEADLINE.saturating_sub(start.elapsed());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("no \"serving\" log line within {DEADLINE:?}: {seen:?}");
            }
        }
    }
    signal(&child, libc::SIGTERM);
    let status = wait_exit(&mut child, EXIT_DEADLINE).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("no exit within {EXIT_DEADLINE:?} of SIGTERM")
    });
    assert_eq!(status.code(), Some(0), "{status}");
    reader.join().expect("reader");
    seen.extend(lines.try_iter());
    assert!(
        seen.iter().any(|l| l.contains("shutting down")),
        "the shutdown is logged: {seen:?}"
    );
    for line in seen.iter().filter(|l| !l.trim().is_empty()) {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(event["level"].is_string(), "a level: {line}");
        assert!(event["fields"]["message"].is_string(), "a message: {line}");
        assert!(event["timestamp"].is_string(), "a time stamp: {line}");
    }
}
