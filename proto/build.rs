//! Compiles the `.proto` files with the pure-Rust `protox` (no `protoc` needed)
//! and generates prost messages plus tonic clients and servers.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/goim/protocol/protocol.proto",
        "proto/goim/comet/comet.proto",
        "proto/goim/logic/logic.proto",
        "proto/rim/router/router.proto",
        "proto/rim/im/im.proto",
        "proto/rim/room/room.proto",
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={file}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        // Message bodies are shared between recipients without copying.
        .bytes(".")
        // goim.logic.Logic has an rpc named Connect, which would clash with the
        // generated `connect` constructor; clients are built from a Channel.
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
