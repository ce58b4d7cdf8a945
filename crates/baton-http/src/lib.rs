//! baton-http
