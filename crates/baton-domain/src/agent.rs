//! The common agent-run record: what every adapter turns its CLI's output into.

use serde::{Deserialize, Serialize};

/// Token counts of one agent run. `input_tokens` excludes cache reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
}

/// How an agent run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum AgentStatus {
    Succeeded,
    /// The agent ended by asking questions.
    NeedsInput {
        questions: String,
    },
    /// The run failed; `message` says why in a sentence.
    Failed {
        message: String,
    },
    /// The provider's usage limit or an exhausted rate limit ended the run: not the agent's fault.
    /// `resets_at_ms` is when the provider said the limit resets, when it said.
    QuotaExhausted {
        message: String,
        resets_at_ms: Option<i64>,
    },
}

/// The common agent-run record (SPEC §2, §7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentReport {
    pub status: AgentStatus,
    pub usage: Usage,
    /// Cost in USD when known; `None` means unpriced, never zero by default.
    pub cost_usd: Option<f64>,
    pub model: Option<String>,
    pub session_id: Option<String>,
    pub turns: Option<u32>,
    pub final_text: Option<String>,
}

impl AgentReport {
    /// A failed run with no usage figures.
    pub fn failed(message: impl Into<String>) -> Self {
        AgentReport {
            status: AgentStatus::Failed { message: message.into() },
            usage: Usage::default(),
            cost_usd: None,
            model: None,
            session_id: None,
            turns: None,
            final_text: None,
        }
    }
}
