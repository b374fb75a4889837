//! The end-to-end harness: owns real child processes (Envoy, backends, the host service) on
//! ephemeral ports, polls readiness with deadlines, and kills everything on drop.
