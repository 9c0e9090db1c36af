//! The `switchboard` binary: parses the command line and hands over to
//! [`switchboard::cli::run`]. Everything else lives in the library.

fn main() -> std::process::ExitCode {
    switchboard::cli::main()
}
