//! Fuzz harness: artifact front matter (`---\nverdict: approve\n---`), written by agents and read
//! by the verdict gate.

/// Parses `data` (lossily decoded) as an artifact; any result is fine, a panic is not.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    drop(baton_engine::gates::front_matter(&text));
}
