//! baton-runner
