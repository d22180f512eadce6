use http_body_util::{BodyExt, Full};
use prost::Message;
use tonic_health::pb::HealthCheckRequest;

use super::*;

const CHECK: &str = "/grpc.health.v1.Health/Check";

fn frame(declared: usize, message: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0];
    bytes.extend_from_slice(&u32::try_from(declared).unwrap().to_be_bytes());
    bytes.extend_from_slice(message);
    bytes
}

fn request(content_type: Option<&str>, body: Vec<u8>) -> http::Request<Body> {
    let mut builder = http::Request::builder().method("POST").uri(format!("http://127.0.0.1{CHECK}")).header("te", "trailers");
    if let Some(content_type) = content_type {
        builder = builder.header("content-type", content_type);
    }
    builder.body(Body::new(Full::new(Bytes::from(body)))).unwrap()
}

/// Sends `request` to gRPC health behind a [`WireLayer`] and returns the HTTP status and the
/// gRPC status, read from the headers of a trailers-only response or from the trailers.
async fn send(layer: WireLayer, health_limit: usize, request: http::Request<Body>) -> (u16, Code, String) {
    let (_reporter, health) = tonic_health::server::health_reporter();
    let mut service = layer.layer(health.max_decoding_message_size(health_limit));
    let response = service.call(request).await.expect("the service returns a response");
    let http_status = response.status().as_u16();
    let (parts, body) = response.into_parts();
    let status = match Status::from_header_map(&parts.headers) {
        Some(status) => status,
        None => {
            let trailers = body.collect().await.expect("the body ends").trailers().cloned().expect("the response has trailers");
            Status::from_header_map(&trailers).expect("the trailers carry grpc-status")
        }
    };
    (http_status, status.code(), status.message().to_owned())
}

fn layer() -> WireLayer {
    WireLayer::new(1024, 1024 * 1024)
}

#[tokio::test]
async fn valid_request_passes() {
    let message = HealthCheckRequest { service: String::new() }.encode_to_vec();
    let (http_status, code, message) = send(layer(), 4096, request(Some("application/grpc"), frame(message.len(), &message))).await;
    assert_eq!(http_status, 200);
    assert_eq!(code, Code::Ok, "{message}");
}

#[tokio::test]
async fn content_type_with_suffix_passes() {
    let message = HealthCheckRequest { service: String::new() }.encode_to_vec();
    for content_type in ["application/grpc+proto", "application/grpc; charset=utf-8"] {
        let (_, code, message) = send(layer(), 4096, request(Some(content_type), frame(message.len(), &message))).await;
        assert_eq!(code, Code::Ok, "{content_type}: {message}");
    }
}

#[tokio::test]
async fn other_content_type_gets_415() {
    for content_type in [Some("application/json"), Some("application/grpc-web"), None] {
        let (http_status, code, message) = send(layer(), 4096, request(content_type, b"{}".to_vec())).await;
        assert_eq!(http_status, 415, "{content_type:?}");
        assert_eq!(code, Code::InvalidArgument, "{content_type:?}: {message}");
    }
}

#[tokio::test]
async fn truncated_protobuf_is_invalid_argument() {
    let message = HealthCheckRequest { service: "docket.ticket.v1.TicketService".to_owned() }.encode_to_vec();
    let cut = &message[..message.len() - 3];
    let (_, code, text) = send(layer(), 4096, request(Some("application/grpc"), frame(cut.len(), cut))).await;
    assert_eq!(code, Code::InvalidArgument, "{text}");
    assert!(text.contains("not valid protobuf"), "{text}");
}

#[tokio::test]
async fn empty_request_is_invalid_argument() {
    let (_, code, text) = send(layer(), 4096, request(Some("application/grpc"), Vec::new())).await;
    assert_eq!(code, Code::InvalidArgument, "{text}");
}

#[tokio::test]
async fn request_ending_inside_message_is_invalid_argument() {
    let message = HealthCheckRequest { service: "docket".to_owned() }.encode_to_vec();
    let (_, code, text) = send(layer(), 4096, request(Some("application/grpc"), frame(message.len(), &message[..2]))).await;
    assert_eq!(code, Code::InvalidArgument, "{text}");
    assert!(text.contains("2 of the 8 bytes"), "{text}");
}

#[tokio::test]
async fn request_ending_inside_header_is_invalid_argument() {
    let (_, code, text) = send(layer(), 4096, request(Some("application/grpc"), vec![0, 0, 0])).await;
    assert_eq!(code, Code::InvalidArgument, "{text}");
}

#[tokio::test]
async fn invalid_compressed_flag_is_invalid_argument() {
    let mut body = frame(2, &[0x0a, 0x00]);
    body[0] = 7;
    let (_, code, text) = send(layer(), 4096, request(Some("application/grpc"), body)).await;
    assert_eq!(code, Code::InvalidArgument, "{text}");
}

#[tokio::test]
async fn message_over_limit_is_resource_exhausted() {
    let (_, code, text) = send(layer(), 4096, request(Some("application/grpc"), frame(1025, b"partial"))).await;
    assert_eq!(code, Code::ResourceExhausted, "{text}");
}

#[tokio::test]
async fn tonic_size_limit_is_resource_exhausted() {
    // The layer allows the message, but the service's own tonic limit is smaller.
    let message = HealthCheckRequest { service: "x".repeat(600) }.encode_to_vec();
    let (_, code, text) = send(layer(), 512, request(Some("application/grpc"), frame(message.len(), &message))).await;
    assert_eq!(code, Code::ResourceExhausted, "{text}");
}

fn checked_body(budget: &Arc<Semaphore>) -> CheckedBody {
    CheckedBody {
        inner: Body::empty(),
        max_message_size: 1024 * 1024,
        budget: budget.clone(),
        max_buffered_request_bytes: BUDGET,
        state: FrameState::Header { filled: 0, bytes: [0; MESSAGE_HEADER_LENGTH] },
        permit: None,
        failed: false,
    }
}

/// Budget of the tests below: one counted message of [`LARGE`] bytes fits, two do not.
const BUDGET: usize = 200_000;
const LARGE: usize = 150_000;

#[test]
fn large_messages_arriving_share_the_budget() {
    let budget = Arc::new(Semaphore::new(BUDGET));
    let mut first = checked_body(&budget);
    let mut second = checked_body(&budget);

    first.inspect(&frame(LARGE, b"start")).expect("one large message fits the budget");
    let rejected = second.inspect(&frame(LARGE, b"start")).expect_err("a second large message does not fit");
    assert_eq!(rejected.code(), Code::ResourceExhausted);

    first.inspect(&vec![0; LARGE - 5]).expect("the rest of the first message");
    assert_eq!(budget.available_permits(), BUDGET, "a complete message returns its budget");
    let mut third = checked_body(&budget);
    third.inspect(&frame(LARGE, b"start")).expect("the budget is free again");
}

#[test]
fn small_messages_skip_the_budget() {
    let budget = Arc::new(Semaphore::new(BUDGET));
    let mut large = checked_body(&budget);
    large.inspect(&frame(BUDGET, b"start")).expect("a message of the whole budget fits");
    assert_eq!(budget.available_permits(), 0);

    let mut small = checked_body(&budget);
    small.inspect(&frame(UNCOUNTED_MESSAGE_BYTES, b"start")).expect("a small message needs no budget");
    let mut larger = checked_body(&budget);
    let rejected = larger.inspect(&frame(UNCOUNTED_MESSAGE_BYTES + 1, b"start")).expect_err("a larger one does");
    assert_eq!(rejected.code(), Code::ResourceExhausted);
}

#[test]
fn dropped_body_returns_its_budget() {
    let budget = Arc::new(Semaphore::new(BUDGET));
    let mut body = checked_body(&budget);
    body.inspect(&frame(LARGE, b"start")).expect("one large message fits");
    assert_eq!(budget.available_permits(), BUDGET - LARGE);
    drop(body);
    assert_eq!(budget.available_permits(), BUDGET);
}

#[test]
fn header_split_over_chunks_is_read() {
    let budget = Arc::new(Semaphore::new(BUDGET));
    let mut body = checked_body(&budget);
    let bytes = frame(3, b"abc");
    for byte in &bytes {
        body.inspect(std::slice::from_ref(byte)).expect("one byte at a time");
    }
    assert!(body.check_complete().is_ok(), "the message is complete: {:?}", body.state);
    assert_eq!(budget.available_permits(), BUDGET);
}
