//! baton-adapters
