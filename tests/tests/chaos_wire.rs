//! Bad input at the wire, sent to the ticket service binary. The attacks are an oversized
//! message, a truncated protobuf, a truncated gRPC frame, a wrong content type, a flood of
//! new streams on one connection, many stream resets, and large messages of which only a
//! part is sent.
//!
//! For each attack the server must respond with RESOURCE_EXHAUSTED or INVALID_ARGUMENT, or
//! close that connection. It must never panic, its memory must stay within the bound
//! below, and a well-behaved client on another connection must keep getting OK meanwhile.
//! Memory is read from /proc/<pid>/status (VmRSS and VmHWM, the peak resident set).
//!
//! Settings (whole numbers), with the short defaults `make test` uses:
//! - DOCKET_CHAOS_WIRE_STREAMS (1000): new streams opened at once on one connection.
//! - DOCKET_CHAOS_WIRE_RESETS (1000): streams opened and reset at once on one connection.
//! - DOCKET_CHAOS_WIRE_ROUNDS (1): how often each flood is repeated on a new connection.
//!
//! `make chaos` should pass DOCKET_CHAOS_WIRE_STREAMS=20000 DOCKET_CHAOS_WIRE_RESETS=20000
//! DOCKET_CHAOS_WIRE_ROUNDS=20 with release binaries (DOCKET_TEST_BIN_DIR=target/release).
//! NOTE: each stream of the flood that the server accepts costs one Ed25519 token
//! verification, about 8 ms of CPU in a debug build. With debug binaries, 20 rounds keep
//! both cores busy long enough that the well-behaved client's calls time out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use docket_auth::Role;
use docket_proto::ticket::v1::{Category, CreateTicketRequest, Severity};
use docket_tests::load::env_number;
use docket_tests::process::ServiceProcess;
use docket_tests::chaos::{Change, settle};
use docket_tests::{Running, TestDb, start_audit, start_metrics, ticket_client, unused_addr, user_token};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CREATE_TICKET: &str = "/docket.ticket.v1.TicketService/CreateTicket";

/// The ticket service's default `--grpc-max-decoding-message-size`.
const MAX_MESSAGE_SIZE: usize = 8 * 1024 * 1024;

/// The ticket service's default `--grpc-max-concurrent-streams`.
const MAX_CONCURRENT_STREAMS: usize = 256;

/// `--grpc-max-buffered-request-bytes` of the server under attack: the bytes that request
/// messages over 64 KiB may declare while they are still arriving, in all connections.
const BUFFERED_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// Largest request message that does not count against the buffered bytes, the server's
/// `docket_server::wire::UNCOUNTED_MESSAGE_BYTES`.
const UNCOUNTED_MESSAGE_BYTES: usize = 64 * 1024;

/// Memory that the server may use over the resident set before the attack, besides the
/// request messages it buffers, in KiB.
// NOTE: 32 MiB is an allowance for connections, streams and tasks, chosen well above what a
// debug build needed when this test was written. The server does not enforce it.
const MEMORY_ALLOWANCE_KIB: u64 = 32 * 1024;

/// Memory bound of the server under these attacks, in KiB: the buffered request bytes,
/// uncounted messages partly received on every stream of one connection, and the allowance.
const MEMORY_BOUND_KIB: u64 =
    ((BUFFERED_REQUEST_BYTES + MAX_CONCURRENT_STREAMS * UNCOUNTED_MESSAGE_BYTES) / 1024) as u64 + MEMORY_ALLOWANCE_KIB;

/// Time allowed for a response or for the server to close a flooded connection, and for
/// the relay to deliver the bystander's changes. Only a failure waits this long.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(20);
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

// gRPC status codes, as numbers in the grpc-status header.
const INVALID_ARGUMENT: &str = "3";
const RESOURCE_EXHAUSTED: &str = "8";

// HTTP/2 frame types and flags (RFC 9113, section 6) and error codes (section 7).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const END_HEADERS: u8 = 0x4;
const CANCEL: u32 = 0x8;
const REFUSED_STREAM: u32 = 0x7;
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Resident set and its peak, in KiB.
#[derive(Clone, Copy, Debug)]
struct Memory {
    rss_kib: u64,
    hwm_kib: u64,
}

fn memory(pid: u32) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status of the server");
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|line| line.starts_with(name)).unwrap_or_else(|| panic!("{name} missing in /proc/{pid}/status"));
        line.split_whitespace().nth(1).and_then(|value| value.parse().ok()).unwrap_or_else(|| panic!("unreadable line {line:?}"))
    };
    Memory { rss_kib: field("VmRSS:"), hwm_kib: field("VmHWM:") }
}

/// Resets the peak resident set to the current one (Linux 4.0 and later), so each test
/// measures the peak of its own attack.
fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM through /proc/<pid>/clear_refs");
}

/// What the bystander saw: the changes it got OK for and the messages of failed calls.
#[derive(Debug, Default)]
struct BystanderReport {
    acknowledged: Vec<Change>,
    failures: Vec<String>,
}

/// A well-behaved client that creates tickets on its own connection until stopped.
struct Bystander {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<BystanderReport>,
}

impl Bystander {
    async fn start(addr: SocketAddr) -> Bystander {
        let mut client = ticket_client(addr).await;
        let stop = Arc::new(AtomicBool::new(false));
        let running = stop.clone();
        let task = tokio::spawn(async move {
            let mut report = BystanderReport::default();
            let mut sequence = 0;
            while !running.load(Ordering::Relaxed) {
                sequence += 1;
                let call = client.create_ticket(create_request(&format!("bystander-{sequence}")));
                match tokio::time::timeout(Duration::from_secs(10), call).await {
                    Ok(Ok(response)) => report.acknowledged.push(Change::of(response.get_ref())),
                    Ok(Err(status)) => report.failures.push(format!("{:?}: {}", status.code(), status.message())),
                    Err(_) => report.failures.push("no response within 10 s".to_owned()),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            report
        });
        Bystander { stop, task }
    }

    async fn stop(self) -> BystanderReport {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the bystander does not panic")
    }
}

/// The ticket service binary under attack, relaying to audit and metrics services in this
/// process, with a bystander client.
struct Target {
    server: ServiceProcess,
    bystander: Bystander,
    before: Memory,
    ticket_db: TestDb,
    audit_db: TestDb,
    metrics_db: TestDb,
    _audit: Running,
    _metrics: Running,
}

impl Target {
    async fn start() -> Target {
        let audit_db = TestDb::create("audit");
        let audit = start_audit(&audit_db).await;
        let metrics_db = TestDb::create("metrics");
        let metrics = start_metrics(&metrics_db, audit.addr).await;
        let ticket_db = TestDb::create("ticket");
        let buffered = BUFFERED_REQUEST_BYTES.to_string();
        let extra = ["--grpc-max-buffered-request-bytes", &buffered, "--relay-max-backoff", "1s"];
        let server = ServiceProcess::ticket(&ticket_db, unused_addr(), audit.addr, metrics.addr, &extra);
        server.wait_until_serving().await;
        let bystander = Bystander::start(server.addr).await;
        // Let the bystander's first calls warm up the pools and caches before the baseline.
        tokio::time::sleep(Duration::from_millis(500)).await;
        reset_peak(server.pid());
        let before = memory(server.pid());
        Target { server, bystander, before, ticket_db, audit_db, metrics_db, _audit: audit, _metrics: metrics }
    }

    fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// Checks that the server survived the attack within its memory bound, kept serving the
    /// bystander, and delivered each of the bystander's changes once.
    async fn finish(mut self, attack: &str) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let report = self.bystander.stop().await;
        let after = memory(self.server.pid());
        println!("{attack}: memory before {:?}, after {:?}", self.before, after);

        let exit = self.server.wait_exit(Duration::ZERO).await;
        assert!(exit.is_none(), "{attack}: the server exited with {exit:?}; its log:\n{}", self.server.log());
        let log = self.server.log();
        assert!(!log.contains("panicked"), "{attack}: the server panicked; its log:\n{log}");
        assert!(report.failures.is_empty(), "{attack}: the bystander's calls fail: {:?}", report.failures);
        assert!(!report.acknowledged.is_empty(), "{attack}: the bystander made calls during the attack");
        let growth = after.hwm_kib.saturating_sub(self.before.rss_kib);
        assert!(
            growth <= MEMORY_BOUND_KIB,
            "{attack}: the peak resident set grew by {growth} KiB, more than the bound of {MEMORY_BOUND_KIB} KiB"
        );

        let scenario = format!("Bad input: {attack}");
        let tally = settle(&scenario, &report.acknowledged, &self.ticket_db, &self.audit_db, &self.metrics_db, SETTLE_TIMEOUT).await;
        tally.print();
        assert_eq!(tally.lost, 0, "{attack}: every change of the bystander reaches the tickets, the ledger and the metrics: {tally:?}");
        assert_eq!(tally.duplicated, 0, "{attack}: no change is recorded twice: {tally:?}");
    }
}

fn create_request(request_id: &str) -> CreateTicketRequest {
    CreateTicketRequest {
        request_id: request_id.to_owned(),
        title: "Port scan from a partner network".to_owned(),
        severity: Severity::Low as i32,
        category: Category::Other as i32,
        team: "soc".to_owned(),
        detection_source: "ids".to_owned(),
        ..Default::default()
    }
}

fn admin_token() -> String {
    user_token("mallory", &[Role::Admin])
}

/// Prefixes `message` with the gRPC frame header: no compression and `declared_length`.
fn grpc_frame(declared_length: usize, message: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(5 + message.len());
    frame.push(0);
    frame.extend_from_slice(&u32::try_from(declared_length).expect("a test length fits in u32").to_be_bytes());
    frame.extend_from_slice(message);
    Bytes::from(frame)
}

/// What the server sent for one request made with the `h2` client.
#[derive(Debug, Default)]
struct RawResponse {
    http_status: u16,
    grpc_status: Option<String>,
    grpc_message: String,
}

/// Sends one request with `content_type` and `body` on a new HTTP/2 connection and reads
/// the response up to its trailers. With `end_stream` false the request stays open, as a
/// client still sending would leave it.
async fn send_raw(addr: SocketAddr, content_type: Option<&str>, body: Bytes, end_stream: bool) -> RawResponse {
    let tcp = TcpStream::connect(addr).await.expect("connect to the server");
    let (client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.expect("the connection accepts a stream");

    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{CREATE_TICKET}"))
        .header("te", "trailers")
        .header("authorization", format!("Bearer {}", admin_token()));
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let request = request.body(()).expect("a valid request");
    let (response, mut stream) = client.send_request(request, false).expect("send the request headers");
    stream.send_data(body, end_stream).expect("send the request body");

    let exchange = async move {
        let response = response.await.expect("the server sends response headers");
        let (parts, mut body) = response.into_parts();
        let header = |headers: &http::HeaderMap, name: &str| headers.get(name).and_then(|value| value.to_str().ok()).map(str::to_owned);
        let mut result = RawResponse {
            http_status: parts.status.as_u16(),
            grpc_status: header(&parts.headers, "grpc-status"),
            grpc_message: header(&parts.headers, "grpc-message").unwrap_or_default(),
        };
        if result.grpc_status.is_none() {
            while let Some(chunk) = body.data().await {
                if chunk.is_err() {
                    break;
                }
            }
            if let Ok(Some(trailers)) = body.trailers().await {
                result.grpc_status = header(&trailers, "grpc-status");
                result.grpc_message = header(&trailers, "grpc-message").unwrap_or_default();
            }
        }
        // The open request stream must live until the response arrived.
        drop(stream);
        result
    };
    tokio::time::timeout(RESPONSE_TIMEOUT, exchange).await.expect("the server responds in time")
}

/// Appends a header field to an HPACK block as a literal without indexing and without
/// Huffman coding (RFC 7541, section 6.2.2), which any decoder accepts.
fn hpack_literal(block: &mut Vec<u8>, name: &str, value: &str) {
    block.push(0x00);
    hpack_string(block, name.as_bytes());
    hpack_string(block, value.as_bytes());
}

fn hpack_string(block: &mut Vec<u8>, text: &[u8]) {
    // A string literal is its length as an integer with a 7-bit prefix (RFC 7541,
    // section 5.1), then the octets.
    let mut length = text.len();
    if length < 127 {
        block.push(u8::try_from(length).expect("checked above"));
    } else {
        block.push(127);
        length -= 127;
        while length >= 128 {
            block.push(u8::try_from(length % 128).expect("below 128") | 0x80);
            length /= 128;
        }
        block.push(u8::try_from(length).expect("below 128"));
    }
    block.extend_from_slice(text);
}

fn h2_frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).expect("a frame payload fits in 24 bits");
    let mut frame = Vec::with_capacity(9 + payload.len());
    frame.extend_from_slice(&length.to_be_bytes()[1..]);
    frame.push(kind);
    frame.push(flags);
    frame.extend_from_slice(&stream_id.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Returns the HPACK block of a CreateTicket request with a valid admin token.
fn request_header_block(addr: SocketAddr, token: &str) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", CREATE_TICKET),
        (":authority", &addr.to_string()),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("authorization", &format!("Bearer {token}")),
    ] {
        hpack_literal(&mut block, name, value);
    }
    block
}

/// What the server sent on a connection that the test flooded with hand-built frames.
#[derive(Debug, Default)]
struct FloodOutcome {
    /// Streams the server reset with REFUSED_STREAM.
    refused: usize,
    /// Streams the server reset with another error code.
    reset_otherwise: usize,
    /// Response header blocks the server sent.
    responses: usize,
    /// Error code of the server's GOAWAY, if it sent one.
    goaway: Option<u32>,
    /// Whether the server closed the TCP connection.
    closed: bool,
}

/// Opens a raw HTTP/2 connection, sends `frames` after the preface and an empty SETTINGS
/// frame, and reads what the server sends until it closes the connection or `RESPONSE_TIMEOUT`
/// passes after the last frame.
async fn flood(addr: SocketAddr, frames: &[u8]) -> FloodOutcome {
    let mut tcp = TcpStream::connect(addr).await.expect("connect to the server");
    let (mut reader, mut writer) = tcp.split();
    let mut opening = PREFACE.to_vec();
    opening.extend(h2_frame(SETTINGS, 0, 0, &[]));

    let write = async {
        writer.write_all(&opening).await?;
        writer.write_all(frames).await?;
        writer.flush().await
    };
    let mut outcome = FloodOutcome::default();
    let read = async {
        let mut header = [0u8; 9];
        loop {
            if reader.read_exact(&mut header).await.is_err() {
                outcome.closed = true;
                return;
            }
            let length = usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
            let mut payload = vec![0u8; length];
            if reader.read_exact(&mut payload).await.is_err() {
                outcome.closed = true;
                return;
            }
            match header[3] {
                RST_STREAM if payload.len() == 4 => {
                    let code = u32::from_be_bytes(payload[..4].try_into().expect("four bytes"));
                    if code == REFUSED_STREAM {
                        outcome.refused += 1;
                    } else {
                        outcome.reset_otherwise += 1;
                    }
                }
                GOAWAY if payload.len() >= 8 => {
                    outcome.goaway = Some(u32::from_be_bytes(payload[4..8].try_into().expect("four bytes")));
                }
                HEADERS => outcome.responses += 1,
                SETTINGS | PING | DATA => {}
                _ => {}
            }
        }
    };
    let (written, ()) = tokio::join!(write, async {
        let _ = tokio::time::timeout(RESPONSE_TIMEOUT, read).await;
    });
    // The server may close the connection before it read every frame, which ends the write early.
    let _ = written;
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_gets_resource_exhausted() {
    let target = Target::start().await;
    // The frame header declares one byte more than the limit, and only the first 64 KiB
    // follow: the server must decide from the header.
    let body = grpc_frame(MAX_MESSAGE_SIZE + 1, &vec![b'a'; 64 * 1024]);
    let response = send_raw(target.addr(), Some("application/grpc"), body, false).await;
    assert_eq!(response.grpc_status.as_deref(), Some(RESOURCE_EXHAUSTED), "{response:?}");
    target.finish("oversized message").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_protobuf_gets_invalid_argument() {
    let target = Target::start().await;
    let message = create_request("truncated-protobuf").encode_to_vec();
    // The last field is a string, so cutting its last bytes leaves a length prefix that
    // points past the end of the message. The gRPC frame itself is consistent.
    let cut = &message[..message.len() - 2];
    let response = send_raw(target.addr(), Some("application/grpc"), grpc_frame(cut.len(), cut), true).await;
    assert_eq!(response.grpc_status.as_deref(), Some(INVALID_ARGUMENT), "{response:?}");
    target.finish("truncated protobuf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_frame_gets_invalid_argument() {
    let target = Target::start().await;
    let message = create_request("truncated-frame").encode_to_vec();
    // The frame header declares the whole message, but the request ends halfway.
    let body = grpc_frame(message.len(), &message[..message.len() / 2]);
    let response = send_raw(target.addr(), Some("application/grpc"), body, true).await;
    assert_eq!(response.grpc_status.as_deref(), Some(INVALID_ARGUMENT), "{response:?}");
    target.finish("truncated frame").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_content_type_is_rejected() {
    let target = Target::start().await;
    let json = Bytes::from_static(br#"{"request_id":"json","title":"Port scan"}"#);
    for content_type in [Some("application/json"), Some("text/plain"), None] {
        let response = send_raw(target.addr(), content_type, json.clone(), true).await;
        assert_eq!(response.grpc_status.as_deref(), Some(INVALID_ARGUMENT), "content type {content_type:?}: {response:?}");
        assert_eq!(response.http_status, 415, "content type {content_type:?}: {response:?}");
    }
    target.finish("wrong content type").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_flood_is_refused() {
    let streams = usize::try_from(env_number("DOCKET_CHAOS_WIRE_STREAMS", 1000)).expect("the stream count fits in usize");
    let rounds = env_number("DOCKET_CHAOS_WIRE_ROUNDS", 1);
    let target = Target::start().await;
    let block = request_header_block(target.addr(), &admin_token());
    for round in 1..=rounds {
        // Every stream is opened and left waiting for its request message.
        let mut frames = Vec::new();
        for index in 0..streams {
            let stream_id = u32::try_from(2 * index + 1).expect("a stream id fits in u32");
            frames.extend(h2_frame(HEADERS, END_HEADERS, stream_id, &block));
        }
        let outcome = flood(target.addr(), &frames).await;
        println!("stream flood, round {round}: {outcome:?}");
        let beyond_limit = streams.saturating_sub(MAX_CONCURRENT_STREAMS);
        assert!(
            outcome.closed || outcome.refused >= beyond_limit,
            "round {round}: the server refuses the streams beyond {MAX_CONCURRENT_STREAMS} or closes the connection: {outcome:?}"
        );
    }
    target.finish("stream flood").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_resets_close_the_connection() {
    let resets = usize::try_from(env_number("DOCKET_CHAOS_WIRE_RESETS", 1000)).expect("the reset count fits in usize");
    let rounds = env_number("DOCKET_CHAOS_WIRE_ROUNDS", 1);
    let target = Target::start().await;
    let block = request_header_block(target.addr(), &admin_token());
    for round in 1..=rounds {
        // Each stream is reset right after it was opened, before the server could respond.
        let mut frames = Vec::new();
        for index in 0..resets {
            let stream_id = u32::try_from(2 * index + 1).expect("a stream id fits in u32");
            frames.extend(h2_frame(HEADERS, END_HEADERS, stream_id, &block));
            frames.extend(h2_frame(RST_STREAM, 0, stream_id, &CANCEL.to_be_bytes()));
        }
        let outcome = flood(target.addr(), &frames).await;
        println!("rapid resets, round {round}: {outcome:?}");
        assert!(outcome.closed, "round {round}: the server closes a connection that resets {resets} streams: {outcome:?}");
    }
    target.finish("rapid resets").await;
}

/// Calls whose request message was only partly sent, kept open until dropped.
struct PartialCalls {
    /// Calls the server responded to, by grpc-status.
    responded: std::collections::BTreeMap<String, usize>,
    /// Calls still waiting for the rest of their message.
    pending: usize,
    _streams: Vec<h2::SendStream<Bytes>>,
    _waiting: tokio::task::JoinSet<Option<String>>,
}

/// Opens `streams` CreateTicket calls on one new connection. Each declares a message of
/// `declared` bytes, sends `sent` bytes of it and then waits. Returns once
/// `expected_responses` calls got a response, or after `RESPONSE_TIMEOUT`, with the other
/// calls still open.
async fn send_partial_messages(addr: SocketAddr, streams: usize, declared: usize, sent: usize, expected_responses: usize) -> PartialCalls {
    let tcp = TcpStream::connect(addr).await.expect("connect to the server");
    let (mut client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    // All streams share one buffer, so the test itself stays small.
    let body = grpc_frame(declared, &vec![b'a'; sent]);
    let token = admin_token();

    let mut waiting = tokio::task::JoinSet::new();
    let mut open_streams = Vec::new();
    for _ in 0..streams {
        client = client.ready().await.expect("the connection accepts a stream");
        let request = http::Request::builder()
            .method("POST")
            .uri(format!("http://{addr}{CREATE_TICKET}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .expect("a valid request");
        let (response, mut stream) = client.send_request(request, false).expect("send the request headers");
        // The server may already have reset the stream, and then its response gives the reason.
        let _ = stream.send_data(body.clone(), false);
        open_streams.push(stream);
        waiting.spawn(async move {
            let response = response.await.ok()?;
            let status = response.headers().get("grpc-status")?.to_str().ok()?.to_owned();
            Some(status)
        });
    }

    let mut responded = std::collections::BTreeMap::new();
    let mut count = 0;
    let deadline = tokio::time::Instant::now() + RESPONSE_TIMEOUT;
    while count < expected_responses {
        let Ok(Some(joined)) = tokio::time::timeout_at(deadline, waiting.join_next()).await else {
            break;
        };
        let status = joined.expect("a response task does not panic").unwrap_or_else(|| "none".to_owned());
        *responded.entry(status).or_insert(0) += 1;
        count += 1;
    }
    PartialCalls { responded, pending: waiting.len(), _streams: open_streams, _waiting: waiting }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partly_sent_messages_stay_within_memory_bound() {
    let target = Target::start().await;
    // Every stream of one connection declares a 1 MiB message and sends half of it. Without
    // a limit the server would buffer 128 MiB. With it, the first messages take the whole
    // budget, and the bystander's small calls must still get through.
    let message = 1024 * 1024;
    let admitted = BUFFERED_REQUEST_BYTES / message;
    let calls = send_partial_messages(target.addr(), MAX_CONCURRENT_STREAMS, message, message / 2, MAX_CONCURRENT_STREAMS - admitted).await;
    println!("partly sent messages: responded {:?}, pending {}", calls.responded, calls.pending);

    assert_eq!(calls.pending, admitted, "{admitted} messages of 1 MiB fit the buffered bytes: responded {:?}", calls.responded);
    let rejected = calls.responded.get(RESOURCE_EXHAUSTED).copied().unwrap_or(0);
    assert_eq!(rejected, MAX_CONCURRENT_STREAMS - admitted, "every other message gets RESOURCE_EXHAUSTED: {:?}", calls.responded);
    target.finish("partly sent messages").await;
    drop(calls);
}
