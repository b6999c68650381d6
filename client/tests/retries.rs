//! The client's retry loop against fake nodes in this process (tonic
//! servers on 127.0.0.1 that answer from a script): every attempt of a call
//! carries the same request id (design §1.3), leader hints are followed,
//! refusals are not retried, a dead or hung node is skipped, and the
//! deadline bounds it all.

use holdfast_client::pb::inventory as pb;
use holdfast_client::pb::inventory::inventory_server::{Inventory, InventoryServer};
use holdfast_client::{Client, ClientOptions, Error, Reserve, RetryPolicy};
use std::collections::{HashMap, VecDeque};
use std::net::TcpListener as StdListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// What a fake node answers once its script is used up.
#[derive(Clone)]
enum Otherwise {
    Succeed,
    Fail(Status),
    /// Never answer.
    Hang,
}

#[derive(Clone)]
struct FakeNode {
    /// Request ids of the `Reserve` calls received, in order.
    seen: Arc<Mutex<Vec<String>>>,
    /// Answers to give first (`None`: succeed).
    script: Arc<Mutex<VecDeque<Option<Status>>>>,
    otherwise: Otherwise,
}

fn holdfast_status(code: Code, reason: &str, metadata: &[(&str, &str)]) -> Status {
    let metadata: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Status::with_error_details(
        code,
        format!("{reason} (fake)"),
        ErrorDetails::with_error_info(reason, "holdfast.dev", metadata),
    )
}

fn success() -> pb::ReserveResponse {
    pb::ReserveResponse {
        reservation_id: "0-42".into(),
        allocations: vec![pb::Allocation {
            sku: "SKU-1".into(),
            location: "berlin".into(),
            quantity: 1,
            available_after: 9,
        }],
        expires_at_ms: 1,
    }
}

#[tonic::async_trait]
impl Inventory for FakeNode {
    async fn reserve(
        &self,
        request: Request<pb::ReserveRequest>,
    ) -> Result<Response<pb::ReserveResponse>, Status> {
        self.seen
            .lock()
            .unwrap()
            .push(request.get_ref().request_id.clone());
        let scripted = self.script.lock().unwrap().pop_front();
        match scripted {
            Some(None) => Ok(Response::new(success())),
            Some(Some(status)) => Err(status),
            None => match &self.otherwise {
                Otherwise::Succeed => Ok(Response::new(success())),
                Otherwise::Fail(s) => Err(s.clone()),
                Otherwise::Hang => std::future::pending().await,
            },
        }
    }
    async fn reserve_batch(
        &self,
        _: Request<pb::ReserveBatchRequest>,
    ) -> Result<Response<pb::ReserveBatchResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn confirm(
        &self,
        _: Request<pb::ConfirmRequest>,
    ) -> Result<Response<pb::ConfirmResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn release(
        &self,
        _: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn extend(
        &self,
        _: Request<pb::ExtendRequest>,
    ) -> Result<Response<pb::ExtendResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn adjust_stock(
        &self,
        _: Request<pb::AdjustStockRequest>,
    ) -> Result<Response<pb::AdjustStockResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn upsert_location(
        &self,
        _: Request<pb::UpsertLocationRequest>,
    ) -> Result<Response<pb::UpsertLocationResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn set_policy(
        &self,
        _: Request<pb::SetPolicyRequest>,
    ) -> Result<Response<pb::SetPolicyResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn get_reservation(
        &self,
        _: Request<pb::GetReservationRequest>,
    ) -> Result<Response<pb::GetReservationResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_reservations(
        &self,
        _: Request<pb::ListReservationsRequest>,
    ) -> Result<Response<pb::ListReservationsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    type WatchEventsStream = tokio_stream::Empty<Result<pb::Event, Status>>;
    async fn watch_events(
        &self,
        _: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn get_availability(
        &self,
        _: Request<pb::GetAvailabilityRequest>,
    ) -> Result<Response<pb::GetAvailabilityResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

/// Starts a fake node; returns it and its address.
async fn fake(script: Vec<Option<Status>>, otherwise: Otherwise) -> (FakeNode, String) {
    let node = FakeNode {
        seen: Arc::default(),
        script: Arc::new(Mutex::new(script.into())),
        otherwise,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let service = InventoryServer::new(node.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (node, address)
}

/// An address nothing listens on.
fn dead_address() -> String {
    let l = StdListener::bind("127.0.0.1:0").expect("bind");
    let address = l.local_addr().expect("address").to_string();
    drop(l);
    address
}

fn options() -> ClientOptions {
    ClientOptions {
        shards: Some(2),
        ..ClientOptions::default()
    }
}

fn request() -> Reserve {
    Reserve::new("cart", "customer").line_at("SKU-1", 1, "berlin")
}

#[tokio::test]
async fn every_attempt_carries_the_same_request_id_and_hints_are_followed() {
    let (leader, leader_address) = fake(
        vec![Some(holdfast_status(
            Code::Aborted,
            "PROPOSAL_DROPPED",
            &[("shard", "0")],
        ))],
        Otherwise::Succeed,
    )
    .await;
    let hint = holdfast_status(
        Code::Unavailable,
        "NOT_LEADER",
        &[("shard", "0"), ("leader_hint", &leader_address)],
    );
    let (follower, follower_address) = fake(vec![], Otherwise::Fail(hint)).await;
    // The follower first: the client knows no leader yet.
    let client = Client::connect_lazy(&[follower_address], options()).expect("client");
    let held = client.reserve(request()).await.expect("reserved");
    assert_eq!(held.reservation_id, "0-42");
    assert_eq!(held.request_id.len(), 32, "a generated request id");
    let follower_saw = follower.seen.lock().unwrap().clone();
    let leader_saw = leader.seen.lock().unwrap().clone();
    assert_eq!(follower_saw, std::slice::from_ref(&held.request_id));
    assert_eq!(
        leader_saw,
        [held.request_id.clone(), held.request_id.clone()]
    );
    let stats = client.stats();
    assert_eq!((stats.calls, stats.attempts, stats.redirects), (1, 3, 1));
    // The hint was cached: the next call goes straight to the leader.
    client
        .reserve(request().request_id("mine"))
        .await
        .expect("reserved");
    assert_eq!(follower.seen.lock().unwrap().len(), 1);
    assert_eq!(
        leader.seen.lock().unwrap().last().map(String::as_str),
        Some("mine")
    );
}

#[tokio::test]
async fn a_refusal_is_returned_typed_and_not_retried() {
    let out_of_stock = holdfast_status(
        Code::FailedPrecondition,
        "OUT_OF_STOCK",
        &[
            ("sku", "SKU-1"),
            ("location", "berlin"),
            ("requested", "1"),
            ("available", "0"),
            ("as_of_index", "17"),
            ("line", "0"),
        ],
    );
    let (node, address) = fake(vec![], Otherwise::Fail(out_of_stock)).await;
    let client = Client::connect_lazy(&[address], options()).expect("client");
    let err = client.reserve(request()).await.expect_err("refused");
    assert_eq!(
        err,
        Error::OutOfStock {
            sku: "SKU-1".into(),
            location: Some("berlin".into()),
            line: Some(0),
            requested: 1,
            available: 0,
            as_of_index: 17,
        }
    );
    assert_eq!(node.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn dead_and_hung_nodes_are_skipped() {
    let (hung, hung_address) = fake(vec![], Otherwise::Hang).await;
    let (live, live_address) = fake(vec![], Otherwise::Succeed).await;
    let options = ClientOptions {
        attempt_timeout: Duration::from_millis(200),
        ..options()
    };
    // Picks go in list order: the dead node, then the hung one, then the
    // live one.
    let client = Client::connect_lazy(&[dead_address(), hung_address, live_address], options)
        .expect("client");
    let held = client.reserve(request()).await.expect("reserved");
    let once = std::slice::from_ref(&held.request_id);
    assert_eq!(hung.seen.lock().unwrap().as_slice(), once);
    assert_eq!(live.seen.lock().unwrap().as_slice(), once);
    let stats = client.stats();
    assert_eq!((stats.attempts, stats.node_failures), (3, 2));
}

#[tokio::test]
async fn the_deadline_bounds_the_retries() {
    let no_leader = holdfast_status(Code::Unavailable, "NO_LEADER", &[("shard", "0")]);
    let (node, address) = fake(vec![], Otherwise::Fail(no_leader)).await;
    let client = Client::connect_lazy(&[address], options()).expect("client");
    let deadline = Duration::from_millis(400);
    let started = Instant::now();
    let err = client
        .with_deadline(deadline)
        .reserve(request().request_id("r-deadline"))
        .await
        .expect_err("never a leader");
    let elapsed = started.elapsed();
    let Error::DeadlineExceeded {
        attempts,
        request_id,
        last_error,
        ..
    } = err
    else {
        panic!("not a deadline: {err:?}");
    };
    assert!(
        attempts >= 3,
        "{attempts} attempts: backoff starts at 20 ms"
    );
    assert_eq!(request_id.as_deref(), Some("r-deadline"));
    assert!(matches!(
        last_error.as_deref(),
        Some(Error::Unavailable { shard: Some(0), .. })
    ));
    // Pauses never run into the deadline; the slack is for scheduling.
    assert!(
        elapsed <= deadline + Duration::from_millis(150),
        "{elapsed:?}"
    );
    let seen = node.seen.lock().unwrap().clone();
    assert_eq!(seen.len() as u32, attempts);
    assert!(seen.iter().all(|id| id == "r-deadline"));
}

#[tokio::test]
async fn retries_stop_at_the_attempt_limit() {
    let shed = Status::resource_exhausted("node overloaded; retry with the same request id");
    let (node, address) = fake(vec![], Otherwise::Fail(shed)).await;
    let options = ClientOptions {
        retry: RetryPolicy {
            attempts_max: 2,
            ..RetryPolicy::default()
        },
        ..options()
    };
    let client = Client::connect_lazy(&[address], options).expect("client");
    let err = client.reserve(request()).await.expect_err("shed");
    assert!(matches!(err, Error::ResourceExhausted { .. }), "{err:?}");
    assert_eq!(node.seen.lock().unwrap().len(), 2);
}
