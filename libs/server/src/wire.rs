//! Checks of each request's gRPC framing before tonic decodes it, and the status codes a
//! client gets for a request it malformed.
//!
//! Tonic 0.14.9 responds to several client mistakes with codes that blame the server or
//! the wrong limit. [`WireLayer`] wraps every service of a server and changes them:
//!
//! | client mistake | tonic 0.14.9 | with this layer |
//! |---|---|---|
//! | content-type other than `application/grpc…` | decodes the body as gRPC anyway | HTTP 415 with INVALID_ARGUMENT |
//! | message longer than `--grpc-max-decoding-message-size` | OUT_OF_RANGE | RESOURCE_EXHAUSTED |
//! | compressed-flag byte other than 0 or 1 | INTERNAL | INVALID_ARGUMENT |
//! | request ends inside a message | INTERNAL "Unexpected EOF decoding stream." | INVALID_ARGUMENT |
//! | bytes that do not decode as the request message | INTERNAL "failed to decode Protobuf message" | INVALID_ARGUMENT |
//! | unary request without a message | INTERNAL "Missing request message." | INVALID_ARGUMENT |
//!
//! The gRPC status-code table (doc/statuscodes.md in grpc/grpc) lists RESOURCE_EXHAUSTED
//! for a message over the receiver's limit, and the gRPC HTTP/2 protocol description
//! (doc/PROTOCOL-HTTP2.md) asks for HTTP 415 when the content-type does not start with
//! `application/grpc`. The layer also bounds the memory that messages larger than
//! [`UNCOUNTED_MESSAGE_BYTES`] may take while they are still arriving, in all connections
//! together (`--grpc-max-buffered-request-bytes`).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes};
use futures::future::BoxFuture;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;
use tonic::{Code, Status};
use tower::{Layer, Service};

/// Length of the header in front of each gRPC message: a compressed flag and a 4-byte
/// big-endian length.
const MESSAGE_HEADER_LENGTH: usize = 5;

/// Largest message that does not count against `--grpc-max-buffered-request-bytes`, so
/// ordinary calls keep working while large messages use up that budget. Such messages can
/// still take max concurrent streams × 64 KiB per connection: 16 MiB with the default of 256.
pub const UNCOUNTED_MESSAGE_BYTES: usize = 64 * 1024;

/// Start of the messages of the tonic 0.14.9 and prost 0.14 errors that [`reclassify`]
/// changes. A test below sends each case through a real tonic server, so a new version that
/// words them differently fails that test.
const PROTOBUF_DECODE_ERROR: &str = "failed to decode Protobuf message";
const MISSING_REQUEST_MESSAGE: &str = "Missing request message.";
const DECODED_MESSAGE_TOO_LARGE: &str = "Error, decoded message length too large";

/// Builds [`WireChecked`] services that share one budget of buffered request bytes.
#[derive(Clone, Debug)]
pub struct WireLayer {
    max_message_size: usize,
    buffered_request_bytes: Arc<Semaphore>,
    max_buffered_request_bytes: usize,
}

impl WireLayer {
    /// Creates the layer. A message longer than `max_message_size` is rejected from its
    /// header, and messages over [`UNCOUNTED_MESSAGE_BYTES`] that are still arriving may
    /// declare at most `max_buffered_request_bytes` together.
    pub fn new(max_message_size: usize, max_buffered_request_bytes: usize) -> WireLayer {
        let max_buffered_request_bytes = max_buffered_request_bytes.min(Semaphore::MAX_PERMITS);
        WireLayer {
            max_message_size,
            buffered_request_bytes: Arc::new(Semaphore::new(max_buffered_request_bytes)),
            max_buffered_request_bytes,
        }
    }
}

impl<S> Layer<S> for WireLayer {
    type Service = WireChecked<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WireChecked { inner, layer: self.clone() }
    }
}

/// A service whose requests pass the checks of [`WireLayer`] before they reach it.
#[derive(Clone, Debug)]
pub struct WireChecked<S> {
    inner: S,
    layer: WireLayer,
}

impl<S, ResBody> Service<http::Request<Body>> for WireChecked<S>
where
    S: Service<http::Request<Body>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if let Err(content_type) = check_content_type(request.headers()) {
            tracing::debug!(rpc = %request.uri().path(), content_type = %content_type, "rejected a request that is not gRPC");
            let status = Status::invalid_argument(format!(
                "content-type {content_type:?} is not gRPC; send application/grpc or application/grpc+proto"
            ));
            let mut response = status.into_http::<ResBody>();
            *response.status_mut() = http::StatusCode::UNSUPPORTED_MEDIA_TYPE;
            return Box::pin(async move { Ok(response) });
        }

        let layer = &self.layer;
        let request = request.map(|body| {
            Body::new(CheckedBody {
                inner: body,
                max_message_size: layer.max_message_size,
                budget: layer.buffered_request_bytes.clone(),
                max_buffered_request_bytes: layer.max_buffered_request_bytes,
                state: FrameState::Header { filled: 0, bytes: [0; MESSAGE_HEADER_LENGTH] },
                permit: None,
                failed: false,
            })
        });
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            reclassify(response.headers_mut());
            Ok(response)
        })
    }
}

/// Returns the content-type when it is missing or does not start with `application/grpc`.
fn check_content_type(headers: &http::HeaderMap) -> Result<(), String> {
    let Some(value) = headers.get(http::header::CONTENT_TYPE) else {
        return Err(String::new());
    };
    let text = value.to_str().unwrap_or("");
    let grpc = text == "application/grpc" || text.starts_with("application/grpc+") || text.starts_with("application/grpc;");
    if grpc { Ok(()) } else { Err(String::from_utf8_lossy(value.as_bytes()).into_owned()) }
}

/// Changes the status of a trailers-only error response when tonic blamed itself or the
/// wrong limit for a request the client malformed. Other responses pass unchanged.
fn reclassify(headers: &mut http::HeaderMap) {
    let Some(status) = Status::from_header_map(headers) else {
        return;
    };
    let message = status.message();
    let replacement = match status.code() {
        Code::Internal if message.starts_with(PROTOBUF_DECODE_ERROR) => {
            Status::invalid_argument(format!("the request message is not valid protobuf: {message}"))
        }
        Code::Internal if message == MISSING_REQUEST_MESSAGE => {
            Status::invalid_argument("the request contains no message; a unary call sends exactly one")
        }
        Code::OutOfRange if message.starts_with(DECODED_MESSAGE_TOO_LARGE) => Status::resource_exhausted(message),
        _ => return,
    };
    // add_header replaces grpc-status and grpc-message, which is all tonic set for these
    // errors.
    if replacement.add_header(headers).is_err() {
        tracing::warn!(code = ?replacement.code(), "could not write the replacement grpc-status header");
    }
}

/// Messages rejected for the budget since the last warning, and the second (since 1970)
/// of that warning. An attack then logs one line per second, not one per message.
static REJECTED_SINCE_WARNING: AtomicU64 = AtomicU64::new(0);
static LAST_WARNING_SECOND: AtomicU64 = AtomicU64::new(0);

fn warn_budget_exhausted(message_bytes: usize, max_buffered_request_bytes: usize) {
    let rejected = REJECTED_SINCE_WARNING.fetch_add(1, Ordering::Relaxed) + 1;
    let second = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs());
    let last = LAST_WARNING_SECOND.load(Ordering::Relaxed);
    if second > last && LAST_WARNING_SECOND.compare_exchange(last, second, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
        REJECTED_SINCE_WARNING.fetch_sub(rejected, Ordering::Relaxed);
        tracing::warn!(
            message_bytes,
            max_buffered_request_bytes,
            rejected,
            "rejected request messages with RESOURCE_EXHAUSTED: the buffered request bytes are at their limit"
        );
    }
}

/// Position of the request body in its sequence of gRPC messages.
#[derive(Clone, Copy, Debug)]
enum FrameState {
    /// `filled` bytes of the next message header have arrived.
    Header { filled: usize, bytes: [u8; MESSAGE_HEADER_LENGTH] },
    /// The header declared `declared` bytes, of which `remaining` have not arrived yet.
    Message { declared: usize, remaining: usize },
}

/// A request body that tracks the gRPC message framing of the bytes passing through, and
/// fails with a status as soon as the framing is invalid.
struct CheckedBody {
    inner: Body,
    max_message_size: usize,
    budget: Arc<Semaphore>,
    max_buffered_request_bytes: usize,
    state: FrameState,
    /// Budget held for the message that is arriving; dropped when its last byte passed.
    permit: Option<OwnedSemaphorePermit>,
    /// Set once an error was returned; the body then ends.
    failed: bool,
}

impl CheckedBody {
    /// Advances the framing state over `data`, failing on the first invalid header.
    fn inspect(&mut self, mut data: &[u8]) -> Result<(), Status> {
        while !data.is_empty() {
            match &mut self.state {
                FrameState::Header { filled, bytes } => {
                    let taken = (MESSAGE_HEADER_LENGTH - *filled).min(data.len());
                    bytes[*filled..*filled + taken].copy_from_slice(&data[..taken]);
                    *filled += taken;
                    data = &data[taken..];
                    if *filled == MESSAGE_HEADER_LENGTH {
                        let header = *bytes;
                        self.start_message(header)?;
                    }
                }
                FrameState::Message { remaining, .. } => {
                    let taken = (*remaining).min(data.len());
                    *remaining -= taken;
                    data = &data[taken..];
                    if *remaining == 0 {
                        self.permit = None;
                        self.state = FrameState::Header { filled: 0, bytes: [0; MESSAGE_HEADER_LENGTH] };
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks a complete message header and reserves budget for the message it declares.
    fn start_message(&mut self, header: [u8; MESSAGE_HEADER_LENGTH]) -> Result<(), Status> {
        let flag = header[0];
        if flag > 1 {
            return Err(Status::invalid_argument(format!(
                "invalid gRPC message header: the compressed flag is {flag}, but only 0 and 1 are defined"
            )));
        }
        let declared = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        let length = usize::try_from(declared).unwrap_or(usize::MAX);
        if length > self.max_message_size {
            return Err(Status::resource_exhausted(format!(
                "the request message has {length} bytes, more than the limit of {} bytes",
                self.max_message_size
            )));
        }
        if length == 0 {
            self.state = FrameState::Header { filled: 0, bytes: [0; MESSAGE_HEADER_LENGTH] };
            return Ok(());
        }
        if length > UNCOUNTED_MESSAGE_BYTES {
            let Ok(permit) = self.budget.clone().try_acquire_many_owned(declared) else {
                warn_budget_exhausted(length, self.max_buffered_request_bytes);
                return Err(Status::resource_exhausted(format!(
                    "the server is already receiving the maximum of {} request bytes; retry the call later",
                    self.max_buffered_request_bytes
                )));
            };
            self.permit = Some(permit);
        }
        self.state = FrameState::Message { declared: length, remaining: length };
        Ok(())
    }

    /// Returns the error for a body that ended inside a message, if it did.
    fn check_complete(&self) -> Result<(), Status> {
        match self.state {
            FrameState::Header { filled: 0, .. } => Ok(()),
            FrameState::Header { filled, .. } => Err(Status::invalid_argument(format!(
                "the request ended inside a gRPC message header, after {filled} of its {MESSAGE_HEADER_LENGTH} bytes"
            ))),
            FrameState::Message { declared, remaining } => Err(Status::invalid_argument(format!(
                "the request ended inside a gRPC message: {} of the {declared} bytes its header declared arrived",
                declared - remaining
            ))),
        }
    }

    fn fail(&mut self, status: Status) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        tracing::debug!(code = ?status.code(), message = %status.message(), "rejected a malformed request");
        self.failed = true;
        self.permit = None;
        Poll::Ready(Some(Err(status)))
    }
}

impl HttpBody for CheckedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.failed {
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let inspected = self.inspect(data.chunk());
                    if let Err(status) = inspected {
                        return self.fail(status);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(status))) => Poll::Ready(Some(Err(status))),
            Poll::Ready(None) => match self.check_complete() {
                Ok(()) => Poll::Ready(None),
                Err(status) => self.fail(status),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        // A body that ended inside a message is not at its end yet: its next poll returns
        // the error.
        self.failed || (self.inner.is_end_stream() && self.check_complete().is_ok())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
