//! A tower layer around the whole tonic server: counts every RPC by method
//! and gRPC status code, times it, and carries the graceful shutdown
//! (`Drain`): once the node is closing, new RPCs other than the ones peers
//! and probes need are refused with `UNAVAILABLE`, and the unary RPCs
//! already in flight are counted so shutdown can wait for them.
//!
//! Unit of work: one *call* — one HTTP/2 request. It starts when the server
//! hands the request to the routes and ends when the response body has been
//! sent to its last frame (the gRPC status travels in the trailers, or in
//! the headers of an error answered at once) or is dropped (the client went
//! away: `CANCELLED`). The layer never looks at messages, so the handlers in
//! `service.rs` know nothing of it.
//!
//! Labels are bounded: an RPC is labelled by name only if the descriptor
//! sets the node serves (ours, health, reflection) declare it; any other
//! path is counted as `unknown`/`unknown`, so a client cannot grow the
//! metric set by inventing paths.

use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use metrics::{Counter, Gauge, Histogram};
use prost::Message as _;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::sync::Notify;

/// Requests by RPC and final gRPC code (counter).
pub const REQUESTS_METRIC: &str = "holdfast_grpc_requests_total";
/// Request time from arrival to the last response frame, by RPC (histogram).
pub const DURATION_METRIC: &str = "holdfast_grpc_request_duration_seconds";
/// Requests started and not yet finished, by RPC (gauge).
pub const IN_FLIGHT_METRIC: &str = "holdfast_grpc_requests_in_flight";

/// gRPC status code names, indexed by code (the gRPC spec's spelling).
const CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];
const CODE_CANCELLED: usize = 1;
const CODE_UNKNOWN: usize = 2;
const CODE_UNAVAILABLE: usize = 14;
/// `grpc-message` of an RPC refused while the node closes (percent-encoded
/// as the gRPC spec asks).
const CLOSING_MESSAGE: &str = "node%20is%20shutting%20down%3B%20retry%20on%20another%20node";

/// The name of gRPC status code `code` (`UNKNOWN` beyond the spec's codes).
pub fn code_name(code: i32) -> &'static str {
    usize::try_from(code)
        .ok()
        .and_then(|c| CODE_NAMES.get(c))
        .copied()
        .unwrap_or(CODE_NAMES[CODE_UNKNOWN])
}

/// The code a `grpc-status` header or trailer carries, if any.
fn grpc_status(headers: &HeaderMap) -> Option<usize> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    let code: usize = value.trim().parse().ok()?;
    Some(if code < CODE_NAMES.len() {
        code
    } else {
        CODE_UNKNOWN
    })
}

/// One RPC's metric handles, created on first use (so an RPC nobody calls
/// adds no series).
struct Rpc {
    service: String,
    method: String,
    /// Neither side streams: a request that ends. Only these are waited for
    /// on shutdown (peers' Raft streams and health watches never end).
    unary: bool,
    /// Still served while the node closes (Raft, health, reflection).
    kept_while_closing: bool,
    by_code: [OnceLock<Counter>; CODE_NAMES.len()],
    duration: OnceLock<Histogram>,
    in_flight: OnceLock<Gauge>,
}

impl Rpc {
    fn new(service: &str, method: &str, unary: bool, kept_while_closing: bool) -> Self {
        Rpc {
            service: service.to_string(),
            method: method.to_string(),
            unary,
            kept_while_closing,
            by_code: Default::default(),
            duration: OnceLock::new(),
            in_flight: OnceLock::new(),
        }
    }

    fn labels(&self) -> [(&'static str, String); 2] {
        [
            ("grpc_service", self.service.clone()),
            ("grpc_method", self.method.clone()),
        ]
    }

    fn requests(&self, code: usize) -> &Counter {
        self.by_code[code].get_or_init(|| {
            let [service, method] = self.labels();
            metrics::counter!(
                REQUESTS_METRIC,
                &[service, method, ("grpc_code", CODE_NAMES[code].to_string())]
            )
        })
    }

    fn duration(&self) -> &Histogram {
        self.duration
            .get_or_init(|| metrics::histogram!(DURATION_METRIC, &self.labels()))
    }

    fn in_flight(&self) -> &Gauge {
        self.in_flight
            .get_or_init(|| metrics::gauge!(IN_FLIGHT_METRIC, &self.labels()))
    }
}

/// Every RPC the node serves, by HTTP path (`/package.Service/Method`).
struct RpcTable {
    by_path: HashMap<String, Arc<Rpc>>,
    unknown: Arc<Rpc>,
}

impl RpcTable {
    /// The RPCs the encoded `FileDescriptorSet`s declare; those of the
    /// services named in `kept` are still served while the node closes. A
    /// set that does not decode is skipped (its RPCs count as unknown) with
    /// a warning.
    fn from_descriptor_sets(sets: &[&[u8]], kept: &[&str]) -> Self {
        let mut by_path = HashMap::new();
        for encoded in sets {
            let set = match prost_types::FileDescriptorSet::decode(*encoded) {
                Ok(set) => set,
                Err(e) => {
                    tracing::warn!(error = %e, "a descriptor set does not decode; its RPCs are labelled unknown");
                    continue;
                }
            };
            for file in &set.file {
                for service in &file.service {
                    let full = match file.package() {
                        "" => service.name().to_string(),
                        package => format!("{package}.{}", service.name()),
                    };
                    let keep = kept.contains(&full.as_str());
                    for m in &service.method {
                        let unary = !m.client_streaming() && !m.server_streaming();
                        by_path.insert(
                            format!("/{full}/{}", m.name()),
                            Arc::new(Rpc::new(&full, m.name(), unary, keep)),
                        );
                    }
                }
            }
        }
        RpcTable {
            by_path,
            unknown: Arc::new(Rpc::new("unknown", "unknown", true, false)),
        }
    }

    fn get(&self, path: &str) -> &Arc<Rpc> {
        self.by_path.get(path).unwrap_or(&self.unknown)
    }
}

/// The graceful shutdown's state: whether the node is closing, and the
/// unary RPCs in flight.
///
/// A call enters before it looks at `closing`, and [`Drain::close`] sets
/// `closing` before shutdown reads `active` (both sequentially consistent):
/// so either the call sees the node closing and is refused, or shutdown
/// sees it in flight and waits for it. No call slips between the two.
#[derive(Debug, Default)]
pub struct Drain {
    closing: AtomicBool,
    active: AtomicUsize,
    idle: Notify,
}

impl Drain {
    /// From now on, refuse new RPCs except the kept ones.
    pub fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }

    /// Whether [`Drain::close`] was called.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Unary RPCs started and not finished now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Resolves once no unary RPC is in flight (at once if none is).
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.active() == 0 {
                return;
            }
            notified.await;
        }
    }

    fn enter(&self) {
        self.active.fetch_add(1, Ordering::SeqCst);
    }

    fn leave(&self) {
        let before = self.active.fetch_sub(1, Ordering::SeqCst);
        assert!(before > 0, "drain: more calls left than entered");
        if before == 1 {
            self.idle.notify_waiters();
        }
    }
}

/// The layer: wraps the tonic routes in [`RpcMetrics`].
#[derive(Clone)]
pub struct RpcMetricsLayer {
    table: Arc<RpcTable>,
    drain: Arc<Drain>,
}

impl RpcMetricsLayer {
    /// A layer labelling the RPCs of `descriptor_sets` (encoded
    /// `FileDescriptorSet`s) and tracking unary calls in `drain`; once
    /// `drain` closes, only the services named in `kept_while_closing`
    /// (full names) are still served.
    pub fn new(descriptor_sets: &[&[u8]], kept_while_closing: &[&str], drain: Arc<Drain>) -> Self {
        RpcMetricsLayer {
            table: Arc::new(RpcTable::from_descriptor_sets(
                descriptor_sets,
                kept_while_closing,
            )),
            drain,
        }
    }
}

impl<S> tower_layer::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics {
            inner,
            table: self.table.clone(),
            drain: self.drain.clone(),
        }
    }
}

/// The service [`RpcMetricsLayer`] makes.
#[derive(Clone)]
pub struct RpcMetrics<S> {
    inner: S,
    table: Arc<RpcTable>,
    drain: Arc<Drain>,
}

impl<S, ReqBody, ResBody> tower_service::Service<Request<ReqBody>> for RpcMetrics<S>
where
    S: tower_service::Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<MeteredBody<ResBody>>;
    type Error = S::Error;
    type Future = MeteredFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let rpc = self.table.get(request.uri().path()).clone();
        let refused = !rpc.kept_while_closing;
        let mut call = Call::start(rpc, &self.drain);
        if refused && self.drain.is_closing() {
            call.code = Some(CODE_UNAVAILABLE);
            return MeteredFuture {
                inner: None,
                call: Some(call),
            };
        }
        MeteredFuture {
            inner: Some(self.inner.call(request)),
            call: Some(call),
        }
    }
}

/// The answer to an RPC refused because the node is closing: a gRPC
/// "trailers-only" response, `UNAVAILABLE`, no body.
fn closing_response<B>(call: Option<Call>) -> Response<MeteredBody<B>> {
    let mut response = Response::new(MeteredBody { inner: None, call });
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", http::HeaderValue::from_static("14"));
    headers.insert(
        "grpc-message",
        http::HeaderValue::from_static(CLOSING_MESSAGE),
    );
    response
}

/// One call between its start and its last frame; records on drop.
struct Call {
    rpc: Arc<Rpc>,
    drain: Option<Arc<Drain>>,
    started: Instant,
    code: Option<usize>,
}

impl Call {
    fn start(rpc: Arc<Rpc>, drain: &Arc<Drain>) -> Self {
        rpc.in_flight().increment(1.0);
        let drain = rpc.unary.then(|| {
            drain.enter();
            drain.clone()
        });
        Call {
            rpc,
            drain,
            started: Instant::now(),
            code: None,
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let rpc = &self.rpc;
        rpc.in_flight().decrement(1.0);
        rpc.duration().record(self.started.elapsed().as_secs_f64());
        rpc.requests(self.code.unwrap_or(CODE_CANCELLED))
            .increment(1);
        if let Some(drain) = &self.drain {
            drain.leave();
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner service's response future (`None`: refused while closing);
    /// hands the call to the body.
    pub struct MeteredFuture<F> {
        #[pin]
        inner: Option<F>,
        call: Option<Call>,
    }
}

impl<F, B, E> Future for MeteredFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<MeteredBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(Ok(closing_response(this.call.take())));
        };
        let response = match inner.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => {
                if let Some(call) = this.call.as_mut() {
                    call.code = Some(CODE_UNKNOWN);
                }
                this.call.take();
                return Poll::Ready(Err(e));
            }
            Poll::Ready(Ok(response)) => response,
        };
        let mut call = this.call.take();
        if let Some(call) = call.as_mut() {
            // An error answered at once carries its status in the headers
            // ("trailers-only"); otherwise it comes in the trailers.
            call.code = grpc_status(response.headers());
        }
        Poll::Ready(Ok(response.map(|inner| MeteredBody {
            inner: Some(inner),
            call,
        })))
    }
}

pin_project_lite::pin_project! {
    /// A response body (`None`: empty) that ends its call at its last
    /// frame.
    pub struct MeteredBody<B> {
        #[pin]
        inner: Option<B>,
        call: Option<Call>,
    }
}

impl<B: Body> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            this.call.take();
            return Poll::Ready(None);
        };
        let frame = inner.poll_frame(cx);
        match &frame {
            Poll::Ready(Some(Ok(f))) => {
                if let (Some(trailers), Some(call)) = (f.trailers_ref(), this.call.as_mut()) {
                    call.code = grpc_status(trailers).or(Some(CODE_UNKNOWN));
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(call) = this.call.as_mut() {
                    call.code = Some(CODE_UNKNOWN);
                }
                this.call.take();
            }
            Poll::Ready(None) => {
                if let Some(call) = this.call.as_mut() {
                    call.code = call.code.or(Some(CODE_UNKNOWN));
                }
                this.call.take();
            }
            Poll::Pending => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpc_of_our_descriptors_is_known_with_its_shape() {
        let raft = "holdfast.internal.v1.RaftTransport";
        let table = RpcTable::from_descriptor_sets(&[crate::pb::FILE_DESCRIPTOR_SET], &[raft]);
        let reserve = table.get("/holdfast.inventory.v1.Inventory/Reserve");
        assert_eq!(
            (
                reserve.service.as_str(),
                reserve.method.as_str(),
                reserve.unary
            ),
            ("holdfast.inventory.v1.Inventory", "Reserve", true)
        );
        let exchange = table.get("/holdfast.internal.v1.RaftTransport/Exchange");
        assert!(
            !exchange.unary,
            "a Raft stream is not waited for on shutdown"
        );
        let other = table.get("/holdfast.inventory.v1.Inventory/NoSuchMethod");
        assert_eq!(other.method, "unknown", "invented paths share one label");
        assert!(!other.kept_while_closing);
    }

    #[test]
    fn status_codes_are_named_as_the_grpc_spec_spells_them() {
        assert_eq!(code_name(0), "OK");
        assert_eq!(code_name(9), "FAILED_PRECONDITION");
        assert_eq!(code_name(16), "UNAUTHENTICATED");
        assert_eq!(code_name(17), "UNKNOWN");
        assert_eq!(code_name(-1), "UNKNOWN");
        let mut headers = HeaderMap::new();
        headers.insert("grpc-status", "14".parse().expect("value"));
        assert_eq!(grpc_status(&headers), Some(14));
        headers.insert("grpc-status", "99".parse().expect("value"));
        assert_eq!(grpc_status(&headers), Some(CODE_UNKNOWN));
    }

    #[tokio::test]
    async fn drain_resolves_when_the_last_call_leaves() {
        let drain = Arc::new(Drain::default());
        drain.idle().await; // nothing in flight: at once
        drain.enter();
        drain.enter();
        let waiter = tokio::spawn({
            let drain = drain.clone();
            async move { drain.idle().await }
        });
        drain.leave();
        assert_eq!(drain.active(), 1);
        assert!(!waiter.is_finished(), "one call still in flight");
        drain.leave();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("idle once the last call left")
            .expect("task");
    }

    /// Answers every request with an empty OK body.
    #[derive(Clone)]
    struct Answer;

    impl tower_service::Service<Request<()>> for Answer {
        type Response = Response<String>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Response<String>, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<()>) -> Self::Future {
            std::future::ready(Ok(Response::new(String::new())))
        }
    }

    #[tokio::test]
    async fn a_closing_node_refuses_client_rpcs_and_keeps_raft() {
        use tower_layer::Layer as _;
        use tower_service::Service as _;
        let drain = Arc::new(Drain::default());
        let raft = "holdfast.internal.v1.RaftTransport";
        let layer = RpcMetricsLayer::new(&[crate::pb::FILE_DESCRIPTOR_SET], &[raft], drain.clone());
        let mut service = layer.layer(Answer);
        let request = |path: &str| Request::builder().uri(path).body(()).expect("request");
        let reserve = "/holdfast.inventory.v1.Inventory/Reserve";
        let open = service.call(request(reserve)).await.expect("answer");
        assert!(open.headers().get("grpc-status").is_none(), "served");
        drain.close();
        let refused = service.call(request(reserve)).await.expect("answer");
        assert_eq!(refused.headers()["grpc-status"], "14");
        assert!(refused.body().is_end_stream());
        let kept = service
            .call(request("/holdfast.internal.v1.RaftTransport/Exchange"))
            .await
            .expect("answer");
        assert!(
            kept.headers().get("grpc-status").is_none(),
            "Raft still served"
        );
        drop((open, refused, kept));
        assert_eq!(drain.active(), 0, "every call left");
    }
}
