//! `grpc-floor`: the no-op gRPC floor.
//!
//! It serves Holdfast's own `Inventory` service, with the same tonic stack
//! and server settings as `holdfast-server`, but answers `Reserve` at once
//! without consensus, storage or a ledger: it echoes the request's lines as
//! allocations. What a load reaches against it is the most any gRPC service
//! built this way can do on this machine, so Holdfast's figures are read as
//! a ratio of it. Other RPCs answer empty successes (so load setup runs
//! unchanged) or `UNIMPLEMENTED`.
//!
//! Run: `grpc-floor --listen 127.0.0.1:7499` (cluster-load starts it itself
//! with `--system floor`).

/// mimalloc instead of glibc malloc: the gRPC stack allocates per request,
/// and glibc's malloc showed up at ~15% of its threads' time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use holdfast_server::pb::inventory as pb;
use holdfast_server::pb::inventory::inventory_server::{Inventory, InventoryServer};
use std::net::SocketAddr;
use tonic::{Request, Response, Status};

#[derive(Parser, Debug)]
#[command(about = "A no-op Inventory gRPC service: the transport's floor")]
struct Args {
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:7499")]
    listen: SocketAddr,
}

/// Answers without doing any work.
struct Floor;

/// A reply of the same shape and size as the ledger's: one allocation per
/// line and an id of the usual form.
fn echo(request: pb::ReserveRequest) -> pb::ReserveResponse {
    let allocations = request
        .lines
        .into_iter()
        .map(|line| pb::Allocation {
            sku: line.sku,
            location: line.location.unwrap_or_default(),
            quantity: line.quantity,
            available_after: 0,
        })
        .collect();
    pb::ReserveResponse {
        reservation_id: "0-4294967296".into(),
        allocations,
        expires_at_ms: request.ttl_ms,
    }
}

#[tonic::async_trait]
impl Inventory for Floor {
    async fn reserve(
        &self,
        request: Request<pb::ReserveRequest>,
    ) -> Result<Response<pb::ReserveResponse>, Status> {
        Ok(Response::new(echo(request.into_inner())))
    }

    async fn reserve_batch(
        &self,
        request: Request<pb::ReserveBatchRequest>,
    ) -> Result<Response<pb::ReserveBatchResponse>, Status> {
        let results = request
            .into_inner()
            .reservations
            .into_iter()
            .map(|r| pb::ReserveBatchResult {
                result: Some(pb::reserve_batch_result::Result::Reserved(echo(r))),
            })
            .collect();
        Ok(Response::new(pb::ReserveBatchResponse { results }))
    }

    async fn confirm(
        &self,
        _: Request<pb::ConfirmRequest>,
    ) -> Result<Response<pb::ConfirmResponse>, Status> {
        Err(Status::unimplemented("the floor only answers Reserve"))
    }

    async fn release(
        &self,
        _: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        Err(Status::unimplemented("the floor only answers Reserve"))
    }

    async fn extend(
        &self,
        _: Request<pb::ExtendRequest>,
    ) -> Result<Response<pb::ExtendResponse>, Status> {
        Err(Status::unimplemented("the floor only answers Reserve"))
    }

    async fn adjust_stock(
        &self,
        _: Request<pb::AdjustStockRequest>,
    ) -> Result<Response<pb::AdjustStockResponse>, Status> {
        Ok(Response::new(pb::AdjustStockResponse::default()))
    }

    async fn upsert_location(
        &self,
        _: Request<pb::UpsertLocationRequest>,
    ) -> Result<Response<pb::UpsertLocationResponse>, Status> {
        Ok(Response::new(pb::UpsertLocationResponse::default()))
    }

    async fn set_policy(
        &self,
        _: Request<pb::SetPolicyRequest>,
    ) -> Result<Response<pb::SetPolicyResponse>, Status> {
        Err(Status::unimplemented("the floor only answers Reserve"))
    }

    async fn get_reservation(
        &self,
        _: Request<pb::GetReservationRequest>,
    ) -> Result<Response<pb::GetReservationResponse>, Status> {
        Err(Status::unimplemented("the floor only answers Reserve"))
    }

    async fn list_reservations(
        &self,
        _: Request<pb::ListReservationsRequest>,
    ) -> Result<Response<pb::ListReservationsResponse>, Status> {
        Err(Status::unimplemented("the floor only answers Reserve"))
    }

    type WatchEventsStream = tonic::codegen::BoxStream<pb::Event>;

    async fn watch_events(
        &self,
        _: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        Err(Status::unimplemented("the floor only answers Reserve"))
    }

    async fn get_availability(
        &self,
        _: Request<pb::GetAvailabilityRequest>,
    ) -> Result<Response<pb::GetAvailabilityResponse>, Status> {
        Err(Status::unimplemented("the floor only answers Reserve"))
    }
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let served = runtime.block_on(
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(InventoryServer::new(Floor))
            .serve(args.listen),
    );
    if let Err(e) = served {
        eprintln!("grpc-floor: {e}");
        std::process::exit(1);
    }
}
