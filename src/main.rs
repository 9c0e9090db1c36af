//! The `switchboard` binary: parses the command line and hands over to
//! [`switchboard::cli::run`]. Everything else lives in the library.

// Services allocate for every message they pass on (protobuf, Redis
// replies, HTTP/2 frames): mimalloc spends about a third of glibc's time on
// them (see docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    switchboard::cli::main()
}
