//! Compiles `switchboard/**/*.proto` with protox (no system `protoc`) and
//! writes the file descriptor set that gRPC reflection serves.

use std::path::PathBuf;

const PROTO_FILES: &[&str] = &[
    "switchboard/common/v1/common.proto",
    "switchboard/ingestion/v1/ingestion.proto",
    "switchboard/ingestion/v1/channels.proto",
    "switchboard/ingestion/v1/conversations.proto",
    "switchboard/ingestion/v1/calls.proto",
    "switchboard/routing/v1/routing.proto",
    "switchboard/presence/v1/presence.proto",
    "switchboard/crm/v1/crm.proto",
    "switchboard/kpi/v1/kpi.proto",
    "switchboard/access/v1/access.proto",
    "switchboard/events/v1/envelope.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for file in PROTO_FILES {
        println!("cargo:rerun-if-changed={file}");
    }
    let file_descriptor_set = protox::compile(PROTO_FILES, ["."])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("switchboard_descriptor.bin");
    std::fs::write(&descriptor_path, prost::Message::encode_to_vec(&file_descriptor_set))?;
    tonic_prost_build::configure()
        .codec_path("crate::codec::SwitchboardCodec")
        .file_descriptor_set_path(&descriptor_path)
        .skip_protoc_run()
        .compile_fds(file_descriptor_set)?;
    Ok(())
}
