//! The host service binary, with the engines its configuration names.

fn main() -> std::process::ExitCode {
    host_service::cli::main(host_service::engines_from_config)
}
