//! A free TCP port on loopback for a task attempt (`BATON_PORT`): the operating system picks one
//! for a listener on `127.0.0.1:0`, which is closed at once so the attempt's hooks and agent can
//! bind it (another process could take it meanwhile; it is a hint, not a reservation).

use std::net::{Ipv4Addr, TcpListener};

/// A port on 127.0.0.1 that no listener held a moment ago.
pub fn free_local_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The port returned can be bound again on loopback (the probe listener was closed).
    #[test]
    fn the_port_is_free_to_bind() {
        let port = free_local_port().unwrap();
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    }
}
