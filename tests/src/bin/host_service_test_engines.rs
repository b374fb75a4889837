//! The host service with the test engines instead of the configured ones, for the end-to-end
//! tests whose stages must be slow, logged or failing (`HostOptions::test_engines`). Everything
//! else is the shipped binary's command (`host_service::cli`): the same flags, configuration,
//! logging and signals. The stand-ins read `TEST_ENGINES_*` (`test_engines::Config::from_env`).

fn main() -> std::process::ExitCode {
    host_service::cli::main(|_config| Ok(test_engines::engines_from_env()?))
}
