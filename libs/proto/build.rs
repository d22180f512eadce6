//! Compiles the contracts under proto/ with protox, so no machine needs protoc.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "docket/events/v1/events.proto",
    "docket/ticket/v1/ticket.proto",
    "docket/audit/v1/audit.proto",
    "docket/metrics/v1/metrics.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let descriptors = protox::compile(PROTOS, [&root])?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("docket_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;

    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}
