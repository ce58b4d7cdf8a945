//! Fuzz harness: the mock-llm script loader (`baton mock-llm --script FILE`).

/// Parses and validates `data` (lossily decoded) as a script; errors are fine, a panic is not.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Err(error) = baton_mock_llm::Script::from_toml(&text) {
        drop(error.to_string());
    }
}
