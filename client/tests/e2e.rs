//! A 3-node cluster of real `holdfast-server` processes on 127.0.0.1, used
//! through the client library only: stock, reserve, confirm, release,
//! extend; every refusal as its typed error; a retry answered with the
//! first answer (design §1.3); and a `kill -9` of a shard leader followed by
//! a reserve that succeeds through the client's own retries (§1.4).
//!
//! The server binary: `$HOLDFAST_SERVER_BIN` if set, else this test builds
//! it with the cargo that built the test (`cargo build -p holdfast-server`
//! into the same target directory and profile; a no-op when `cargo test
//! --workspace` already built it). Every wait polls with a deadline;
//! children are killed and reaped on drop.

use holdfast_client::{
    AdjustStock, Client, ClientOptions, Confirm, Consistency, Error, Extend, LimitChange,
    ListReservations, Party, Release, ReservationState, Reserve, RowKey, SetPolicy, UpsertLocation,
    WatchEvents,
};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tempfile::TempDir;
use tokio_stream::StreamExt;

/// Longest any wait of these tests may take.
const DEADLINE: Duration = Duration::from_secs(60);
const SHARDS: u32 = 2;
const SKU: &str = "SKU-1";

/// The two tests start a cluster each; one at a time keeps elections quick
/// on a small machine.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Builds (if needed) and locates `holdfast-server`.
fn server_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = std::env::var_os("HOLDFAST_SERVER_BIN") {
            return PathBuf::from(path);
        }
        // This test runs as <target>/<profile dir>/deps/e2e-<hash>.
        let exe = std::env::current_exe().expect("own path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("<target>/<profile>/deps");
        let target_dir = profile_dir.parent().expect("<target>");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("release") => "release",
            // `cargo test` builds with the `test` profile into `debug/`.
            _ => "test",
        };
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "holdfast-server", "--bin"])
            .arg("holdfast-server")
            .arg("--profile")
            .arg(profile)
            .arg("--manifest-path")
            .arg(&manifest)
            .arg("--target-dir")
            .arg(target_dir)
            .status()
            .expect("run cargo build -p holdfast-server");
        assert!(status.success(), "cargo build -p holdfast-server failed");
        let binary = profile_dir.join("holdfast-server");
        assert!(binary.exists(), "{} is missing", binary.display());
        binary
    })
}

struct Cluster {
    ports: Vec<u16>,
    children: Vec<Option<Child>>,
    dir: TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Cluster {
    fn start(n: usize) -> Cluster {
        let binary = server_binary();
        let mut c = Cluster {
            ports: (0..n).map(|_| free_port()).collect(),
            children: (0..n).map(|_| None).collect(),
            dir: TempDir::new().expect("temp dir"),
        };
        for i in 0..n {
            c.spawn(binary, i);
        }
        c
    }

    fn spawn(&mut self, binary: &Path, i: usize) {
        let peers: Vec<String> = self
            .ports
            .iter()
            .enumerate()
            .map(|(j, p)| format!("{}=127.0.0.1:{p}", j + 1))
            .collect();
        let child = Command::new(binary)
            .args(["--id", &(i + 1).to_string()])
            .args(["--listen", &format!("127.0.0.1:{}", self.ports[i])])
            .args(["--peers", &peers.join(",")])
            .args(["--shards", &SHARDS.to_string()])
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("n{}", i + 1)))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn holdfast-server");
        self.children[i] = Some(child);
    }

    /// SIGKILL, as a crash.
    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn addresses(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect()
    }

    /// A client once some node answers (the processes are starting).
    async fn client(&self) -> Client {
        let started = Instant::now();
        loop {
            match Client::connect(&self.addresses(), ClientOptions::default()).await {
                Ok(c) => return c,
                Err(e) => assert!(started.elapsed() < DEADLINE, "no node answered: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await; // polling interval
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The location and 10 units of SKU at it. The first calls may meet a
/// cluster still electing leaders: the client retries them (a longer
/// deadline than the default, for a loaded machine).
async fn stock(client: &Client, units: i64) {
    let setup = client.with_deadline(DEADLINE);
    setup
        .upsert_location(UpsertLocation::new("berlin", "eu", 1).request_id("loc-berlin"))
        .await
        .expect("location");
    let adjusted = setup
        .adjust_stock(AdjustStock::new(SKU, "berlin", units).request_id("stock-1"))
        .await
        .expect("stock");
    assert_eq!((adjusted.on_hand, adjusted.available), (units, units));
}

fn one(quantity: i64) -> Reserve {
    Reserve::new("cart-1", "customer-1").line_at(SKU, quantity, "berlin")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_calls_and_their_typed_refusals_through_the_client() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let cluster = Cluster::start(3);
    let client = cluster.client().await;
    assert_eq!(client.shards(), Some(SHARDS));
    stock(&client, 10).await;

    // Reserve, and retry with the same request id: the first answer (§1.3).
    let first = client
        .reserve(one(3).request_id("r-1"))
        .await
        .expect("reserved");
    assert_eq!(first.request_id, "r-1");
    assert_eq!(first.allocations.len(), 1);
    assert_eq!(first.allocations[0].available_after, 7);
    let again = client
        .reserve(one(3).request_id("r-1"))
        .await
        .expect("retry");
    assert_eq!(again, first, "a retry gets the first answer");
    let rows = client
        .get_availability(vec![RowKey::at(SKU, "berlin")], Consistency::Linearizable)
        .await
        .expect("read");
    assert_eq!(
        (rows[0].on_hand, rows[0].held),
        (10, 3),
        "held once: {rows:?}"
    );

    // A batch: each item answered as a Reserve would be, in order, and its
    // retry gets the first answers. 7 units are left: of three holds of 3,
    // two fit and one is out of stock (which one is not promised: items
    // of a batch apply in no promised order).
    let batch = || {
        vec![
            one(3).request_id("b-1"),
            one(3).request_id("b-2"),
            one(3).request_id("b-3"),
        ]
    };
    let results = client.reserve_batch(batch()).await.expect("batch");
    assert_eq!(results.len(), 3);
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        2,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Err(Error::OutOfStock { requested: 3, .. }))),
        "{results:?}"
    );
    for (r, id) in results.iter().zip(["b-1", "b-2", "b-3"]) {
        if let Ok(r) = r {
            assert_eq!(r.request_id, id, "answers come back in request order");
        }
    }
    let again = client.reserve_batch(batch()).await.expect("batch retry");
    for (first, retry) in results.iter().zip(&again) {
        if first.is_ok() {
            assert_eq!(first, retry, "a retried item gets its first answer");
        }
    }
    let rows = client
        .get_availability(vec![RowKey::at(SKU, "berlin")], Consistency::Linearizable)
        .await
        .expect("read");
    assert_eq!(rows[0].held, 9, "the batch held 6 units, once: {rows:?}");
    for r in results.into_iter().flatten() {
        client
            .release(Release::new(r.reservation_id))
            .await
            .expect("release the batch's holds");
    }

    // Read back: the first hold, pending, as the reserve answered it.
    let view = client
        .get_reservation(&first.reservation_id, Consistency::Linearizable)
        .await
        .expect("read back");
    assert_eq!(view.state, ReservationState::Pending);
    assert_eq!(view.lines.len(), 1);
    assert_eq!((view.lines[0].quantity, view.lines[0].confirmed), (3, 0));
    assert_eq!(view.expires_at_ms, first.expires_at_ms);
    let missing = client
        .get_reservation("0-999999", Consistency::Stale)
        .await
        .expect_err("unknown id");
    assert!(
        matches!(missing, Error::ReservationNotFound { .. }),
        "{missing:?}"
    );

    // The same id with another body.
    let err = client
        .reserve(one(4).request_id("r-1"))
        .await
        .expect_err("id reused");
    assert_eq!(
        err,
        Error::RequestIdMismatch {
            request_id: "r-1".into()
        }
    );

    // Out of stock, with its figures.
    let err = client.reserve(one(100)).await.expect_err("too many");
    let Error::OutOfStock {
        sku,
        location,
        requested,
        available,
        as_of_index,
        ..
    } = err
    else {
        panic!("not out of stock: {err:?}");
    };
    assert_eq!((sku.as_str(), location.as_deref()), (SKU, Some("berlin")));
    assert_eq!((requested, available), (100, 7));
    assert!(as_of_index > 0);

    // Invalid arguments name their field.
    let err = client.reserve(one(0)).await.expect_err("zero units");
    assert!(
        matches!(&err, Error::InvalidArgument { field, .. } if field == "lines[0].quantity"),
        "{err:?}"
    );
    let err = client
        .extend(Extend::new(&first.reservation_id, 5))
        .await
        .expect_err("5 ms");
    assert!(
        matches!(&err, Error::InvalidArgument { field, .. } if field == "ttl_ms"),
        "{err:?}"
    );

    // Unknown reservation and location.
    let err = client
        .confirm(Confirm::all("0-999999"))
        .await
        .expect_err("no such reservation");
    assert!(matches!(err, Error::ReservationNotFound { .. }), "{err:?}");
    let err = client
        .adjust_stock(AdjustStock::new(SKU, "nowhere", 1))
        .await
        .expect_err("no such location");
    assert!(matches!(err, Error::LocationNotFound { .. }), "{err:?}");

    // Extend, then confirm; a second confirm finds it not pending.
    let extended = client
        .extend(Extend::new(&first.reservation_id, 3_600_000))
        .await
        .expect("extended");
    assert!(extended.expires_at_ms > first.expires_at_ms);
    assert!(extended.expires_at_ms >= now_ms() + 3_500_000);
    let confirmed = client
        .confirm(Confirm::all(&first.reservation_id))
        .await
        .expect("confirmed");
    assert_eq!(
        (confirmed.units_confirmed, confirmed.units_released),
        (3, 0)
    );
    let err = client
        .confirm(Confirm::all(&first.reservation_id))
        .await
        .expect_err("confirmed twice");
    assert_eq!(
        err,
        Error::ReservationNotPending {
            state: "CONFIRMED".into()
        }
    );

    // Reserve and release; the stock is whole again.
    let second = client.reserve(one(2)).await.expect("reserved");
    let released = client
        .release(Release::new(&second.reservation_id))
        .await
        .expect("released");
    assert_eq!(released.units_released, 2);
    let err = client
        .release(Release::new(&second.reservation_id))
        .await
        .expect_err("released twice");
    assert!(
        matches!(&err, Error::ReservationNotPending { state } if state == "RELEASED"),
        "{err:?}"
    );
    let rows = client
        .get_availability(vec![RowKey::sku(SKU)], Consistency::Linearizable)
        .await
        .expect("read");
    assert_eq!(
        (rows[0].on_hand, rows[0].held, rows[0].available),
        (7, 0, 7),
        "3 sold, 2 released: {rows:?}"
    );
    // A stale read from any node catches up to it.
    let started = Instant::now();
    loop {
        let rows = client
            .get_availability(vec![RowKey::sku(SKU)], Consistency::Stale)
            .await
            .expect("stale read");
        if rows.first().map(|r| r.available) == Some(7) {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "stale reads lag: {rows:?}");
        tokio::time::sleep(Duration::from_millis(20)).await; // polling interval
    }

    // The client learned the shard's leader and sends calls straight to it.
    let shard = client.shard_of(SKU).expect("shards known");
    let started = Instant::now();
    loop {
        let status = client.cluster_status(false).await;
        let leader = status
            .leader_of(shard)
            .and_then(|(_, a)| a.map(str::to_string));
        if leader.is_some() && leader == client.cached_leader(shard) {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "cached {:?}, status {status:?}",
            client.cached_leader(shard)
        );
        tokio::time::sleep(Duration::from_millis(50)).await; // polling interval
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_survived_by_the_clients_retries() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(3);
    let client = cluster.client().await;
    stock(&client, 100).await;
    let first = client
        .reserve(one(1).request_id("before-kill"))
        .await
        .expect("reserved");
    assert_eq!(first.allocations[0].available_after, 99);

    // Wait until every node agrees on the shard's leader, and the client
    // has it cached.
    let shard = client.shard_of(SKU).expect("shards known");
    let started = Instant::now();
    let leader_address = loop {
        let status = client.cluster_status(false).await;
        let leaders: Vec<Option<u64>> = status
            .nodes
            .iter()
            .map(|n| n.shards.get(shard as usize).and_then(|s| s.leader))
            .collect();
        let agreed = leaders.len() == 3 && leaders.iter().all(|l| l.is_some() && *l == leaders[0]);
        let cached = client.cached_leader(shard);
        let reported = status
            .leader_of(shard)
            .and_then(|(_, a)| a.map(str::to_string));
        if let Some(cached) = cached.filter(|c| agreed && Some(c) == reported.as_ref()) {
            break cached;
        }
        assert!(started.elapsed() < DEADLINE, "no agreed leader: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await; // polling interval
    };
    let victim = cluster
        .addresses()
        .iter()
        .position(|a| *a == leader_address)
        .expect("the leader is one of ours");
    cluster.kill(victim);

    // The cached leader is dead: the first attempt fails, the client
    // retries elsewhere until a new leader takes the reserve.
    let before = client.stats();
    let second = client
        .reserve(one(1).request_id("after-kill"))
        .await
        .expect("reserved through retries");
    let after = client.stats();
    assert_eq!(
        second.allocations[0].available_after, 98,
        "the first hold survived the kill (§1.4)"
    );
    assert!(
        after.attempts - before.attempts >= 2 && after.node_failures > before.node_failures,
        "not retried: {before:?} → {after:?}"
    );
    assert_ne!(
        client.cached_leader(shard).as_deref(),
        Some(leader_address.as_str())
    );

    // The request before the kill, retried: its first answer (§1.3).
    let again = client
        .reserve(one(1).request_id("before-kill"))
        .await
        .expect("retry");
    assert_eq!(again.reservation_id, first.reservation_id);
    assert_eq!(again.allocations, first.allocations);
}

/// `ListReservations` through the client: every page of an owner's
/// reservations on both shards, each exactly once, however small the
/// pages; the state filter; a customer's listing; and the refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_pages_through_every_reservation_of_an_owner() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let cluster = Cluster::start(3);
    let client = cluster.client().await;
    let setup = client.with_deadline(DEADLINE);
    setup
        .upsert_location(UpsertLocation::new("berlin", "eu", 1).request_id("loc"))
        .await
        .expect("location");
    // SKUs on both shards, so the listing crosses shards.
    let skus: Vec<String> = (0..8).map(|i| format!("LIST-{i}")).collect();
    let shards: std::collections::BTreeSet<u32> =
        skus.iter().filter_map(|s| client.shard_of(s)).collect();
    assert_eq!(shards.len(), SHARDS as usize, "SKUs on every shard");
    for sku in &skus {
        setup
            .adjust_stock(AdjustStock::new(sku, "berlin", 100).request_id(format!("stock-{sku}")))
            .await
            .expect("stock");
    }
    let mut mine = std::collections::BTreeSet::new();
    for i in 0..23 {
        let sku = &skus[i % skus.len()];
        let r = client
            .reserve(Reserve::new("cart-L", format!("cust-{}", i % 2)).line_at(sku, 1, "berlin"))
            .await
            .expect("reserved");
        mine.insert(r.reservation_id);
    }
    client
        .reserve(Reserve::new("cart-other", "cust-0").line_at(&skus[0], 1, "berlin"))
        .await
        .expect("someone else's");

    for page_size in [1, 4, 1000] {
        let mut seen = Vec::new();
        let mut request = ListReservations::of(Party::Owner("cart-L".into()));
        request.page_size = page_size;
        let mut pages = 0;
        loop {
            let page = client
                .list_reservations(request.clone())
                .await
                .expect("page");
            assert!(page.reservations.len() <= page_size as usize);
            pages += 1;
            assert!(pages < 100, "the listing does not end");
            seen.extend(page.reservations.into_iter().map(|r| {
                assert_eq!(r.owner_id, "cart-L");
                r.reservation_id
            }));
            match page.next_page_token {
                Some(token) => request.page_token = Some(token),
                None => break,
            }
        }
        let unique: std::collections::BTreeSet<String> = seen.iter().cloned().collect();
        assert_eq!(
            unique.len(),
            seen.len(),
            "a reservation listed twice: {seen:?}"
        );
        assert_eq!(unique, mine, "page size {page_size}");
    }

    // Release five: the state filter sees 18 pending and 5 released.
    for id in mine.iter().take(5) {
        client.release(Release::new(id)).await.expect("released");
    }
    let mut pending = ListReservations::of(Party::Owner("cart-L".into()));
    pending.state = Some(ReservationState::Pending);
    assert_eq!(
        client
            .list_all_reservations(pending)
            .await
            .expect("list")
            .len(),
        18
    );
    let mut released = ListReservations::of(Party::Owner("cart-L".into()));
    released.state = Some(ReservationState::Released);
    released.consistency = Consistency::Stale;
    // A stale read may lag the releases just acknowledged; poll until it
    // shows them (bounded).
    let started = Instant::now();
    loop {
        let n = client
            .list_all_reservations(released.clone())
            .await
            .expect("list")
            .len();
        if n == 5 {
            break;
        }
        assert!(n < 5 && started.elapsed() < DEADLINE, "{n} released listed");
        tokio::time::sleep(Duration::from_millis(20)).await; // polling interval
    }
    let customer = client
        .list_all_reservations(ListReservations::of(Party::Customer("cust-0".into())))
        .await
        .expect("list");
    assert_eq!(
        customer.len(),
        12 + 1,
        "cart-L's even ones, plus cart-other"
    );

    // A token of another listing is refused, naming the field.
    let mut first = ListReservations::of(Party::Owner("cart-L".into()));
    first.page_size = 1;
    let token = client
        .list_reservations(first)
        .await
        .expect("page")
        .next_page_token;
    let mut other = ListReservations::of(Party::Owner("cart-other".into()));
    other.page_token = token;
    let err = client.list_reservations(other).await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument { field, .. } if field == "page_token"),
        "{err:?}"
    );
    let mut too_big = ListReservations::of(Party::Owner("cart-L".into()));
    too_big.page_size = 1001;
    let err = client.list_reservations(too_big).await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument { field, .. } if field == "page_size"),
        "{err:?}"
    );
}

/// `WatchEvents` through the client, streaming from one node while
/// reservations are made: that node is killed mid-stream, the stream
/// resumes on another, and what it delivered is exactly the events a
/// fresh stream from a surviving node reads: no gap, no duplicate, the
/// same bytes on every replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_without_gap_or_duplicate_when_its_node_is_killed() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(3);
    let client = cluster.client().await;
    stock(&client, 1_000).await;
    let mut stream = client.watch_events(WatchEvents::default());

    const RESERVES: usize = 60;
    let writer = client.clone();
    let writes = tokio::spawn(async move {
        let mut ids = Vec::new();
        for i in 0..RESERVES {
            let r = writer
                .with_deadline(DEADLINE)
                .reserve(one(1).request_id(format!("w-{i}")))
                .await
                .expect("reserved through retries");
            ids.push(r.reservation_id);
        }
        ids
    });

    let mut received: Vec<holdfast_client::Event> = Vec::new();
    let mut held = std::collections::BTreeSet::new();
    let mut killed = None;
    let started = Instant::now();
    while held.len() < RESERVES {
        let event = tokio::time::timeout(DEADLINE, stream.next())
            .await
            .expect("an event within the deadline")
            .expect("the stream goes on")
            .expect("no stream error");
        if event.kind == holdfast_client::EventKind::Held as i32 {
            held.insert(event.reservation_id.clone());
        }
        received.push(event);
        if killed.is_none() && held.len() >= 20 {
            let streaming = stream.node().expect("streaming from a node");
            let victim = cluster
                .addresses()
                .iter()
                .position(|a| *a == streaming)
                .expect("one of ours");
            cluster.kill(victim);
            killed = Some(victim);
        }
        assert!(started.elapsed() < 2 * DEADLINE, "events stopped coming");
    }
    let victim = killed.expect("a node was killed mid-stream");
    let ids: std::collections::BTreeSet<String> =
        writes.await.expect("writer").into_iter().collect();
    assert_eq!(held, ids, "a Held event for every reservation made");

    // A fresh stream from the survivors, read up to the same positions.
    let mut survivors = cluster.addresses();
    survivors.remove(victim);
    let reader = Client::connect(&survivors, ClientOptions::default())
        .await
        .expect("survivors answer");
    let last: std::collections::BTreeMap<u32, (u64, u32)> = received
        .iter()
        .filter_map(|e| e.cursor.as_ref())
        .map(|c| (c.shard, (c.index, c.seq)))
        .collect();
    let mut fresh = reader.watch_events(WatchEvents::default());
    let mut reference = Vec::new();
    let mut done = std::collections::BTreeSet::new();
    while done.len() < last.len() {
        let event = tokio::time::timeout(DEADLINE, fresh.next())
            .await
            .expect("an event within the deadline")
            .expect("the stream goes on")
            .expect("no stream error");
        let c = event.cursor.expect("cursor");
        let Some(&end) = last.get(&c.shard) else {
            continue;
        };
        if (c.index, c.seq) <= end {
            if (c.index, c.seq) == end {
                done.insert(c.shard);
            }
            reference.push(event);
        }
    }
    let by_shard = |events: &[holdfast_client::Event]| {
        let mut m: std::collections::BTreeMap<u32, Vec<holdfast_client::Event>> =
            Default::default();
        for e in events {
            m.entry(e.cursor.as_ref().map_or(u32::MAX, |c| c.shard))
                .or_default()
                .push(e.clone());
        }
        m
    };
    assert_eq!(
        by_shard(&received),
        by_shard(&reference),
        "the resumed stream differs from a fresh one"
    );
}

/// The refusals the first test does not meet, each reaching the client
/// as its typed error with its details: LIMIT_EXCEEDED, ON_HAND_MISMATCH,
/// HELD_EXCEEDS_STOCK, and a deadline that runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_remaining_refusals_reach_the_client_typed() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let cluster = Cluster::start(3);
    let client = cluster.client().await;
    stock(&client, 10).await;

    client
        .set_policy(SetPolicy {
            request_id: None,
            sku: SKU.into(),
            location: None,
            safety_stock: None,
            backorder_allowance: None,
            customer_limit: LimitChange::Set {
                max_units: 2,
                campaign: 1,
            },
        })
        .await
        .expect("limit set");
    let err = client.reserve(one(3)).await.unwrap_err();
    assert!(matches!(err, Error::LimitExceeded { .. }), "{err:?}");

    let mut cas = AdjustStock::new(SKU, "berlin", 5);
    cas.expected_on_hand = Some(11);
    let err = client.adjust_stock(cas).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::OnHandMismatch {
                expected: 11,
                actual: 10,
                ..
            }
        ),
        "{err:?}"
    );

    client.reserve(one(2)).await.expect("held 2");
    let err = client
        .adjust_stock(AdjustStock::new(SKU, "berlin", -9))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::HeldExceedsStock { .. }), "{err:?}");

    let hurried = client.with_deadline(Duration::from_micros(1));
    let err = hurried.reserve(one(1)).await.unwrap_err();
    assert!(matches!(err, Error::DeadlineExceeded { .. }), "{err:?}");
}
