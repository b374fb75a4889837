//! The host service's integration tests, linked as one binary: every test binary costs a full
//! link of the service and its dependencies, so the suites are modules of this one.

mod api;
mod common;
mod dashboard;
mod disk;
mod exposure;
mod process;
mod server;
mod service;
mod socket_limits;
mod stream;
mod twilio;
