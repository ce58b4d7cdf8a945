//! baton-domain
