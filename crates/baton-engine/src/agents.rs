//! The agent port: [`AgentFactory`] turns a role into the [`Agent`] that runs it. The default,
//! [`ConfiguredAgents`], builds the adapter `baton.toml` configures for the role; a simulation
//! brings its own.

use crate::EngineError;
use crate::settings::{AdapterKind, AgentSettings, EngineSettings};
use baton_adapters::agent::{Agent, ClaudeAgent, CliAgentConfig, CodexAgent, CommandAgent, GeminiAgent, ScriptAgent};
use std::sync::Arc;

/// Builds the agent for a role.
pub trait AgentFactory: Send + Sync {
    fn agent(&self, settings: &EngineSettings, role: &str) -> Result<Arc<dyn Agent>, EngineError>;

    /// The agent of a stage that chose its own agent entry, adapter or model: `agent` holds the
    /// settings resolved for it ([`EngineSettings::agent_for_stage`]). A factory that does not
    /// build from the configuration (a simulation) keeps the role's agent.
    fn stage_agent(
        &self,
        settings: &EngineSettings,
        role: &str,
        agent: &AgentSettings,
    ) -> Result<Arc<dyn Agent>, EngineError> {
        let _ = agent;
        self.agent(settings, role)
    }
}

/// The adapters configured in `[agents.<role>]` (or `[agents.default]`).
#[derive(Debug, Default, Clone, Copy)]
pub struct ConfiguredAgents;

impl AgentFactory for ConfiguredAgents {
    fn agent(&self, engine: &EngineSettings, role: &str) -> Result<Arc<dyn Agent>, EngineError> {
        let settings = engine.agent_for(role).ok_or_else(|| {
            EngineError::Invalid(format!(
                "no agent configured for role `{role}`: add [agents.{role}] or [agents.default]"
            ))
        })?;
        build(engine, role, settings)
    }

    fn stage_agent(
        &self,
        engine: &EngineSettings,
        role: &str,
        agent: &AgentSettings,
    ) -> Result<Arc<dyn Agent>, EngineError> {
        build(engine, role, agent)
    }
}

/// The adapter `settings` describe.
fn build(engine: &EngineSettings, role: &str, settings: &AgentSettings) -> Result<Arc<dyn Agent>, EngineError> {
    let cli = || CliAgentConfig {
        program: settings.program.clone().unwrap_or_else(|| settings.adapter.default_program().to_string()),
        model: settings.model.clone(),
        base_url: settings.base_url.clone(),
        api_key_env: settings.api_key_env.clone(),
        max_turns: settings.max_turns,
        permission_mode: settings.permission_mode.clone(),
        allowed_tools: settings.allowed_tools.clone(),
        sandbox: settings.sandbox.clone(),
        streaming: settings.streaming,
        extra_args: settings.extra_args.clone(),
        max_retries: settings.max_retries,
    };
    Ok(match settings.adapter {
        AdapterKind::Script => Arc::new(ScriptAgent {
            script: settings
                .script
                .clone()
                .ok_or_else(|| EngineError::Invalid(format!("agents.{role}: the script adapter needs `script`")))?,
            baton_exe: engine.baton_exe.clone(),
        }),
        AdapterKind::Command => Arc::new(CommandAgent {
            name: "command".into(),
            argv: settings
                .command
                .clone()
                .ok_or_else(|| EngineError::Invalid(format!("agents.{role}: the command adapter needs `command`")))?,
            prompt: settings.prompt,
            model: settings.model.clone(),
        }),
        AdapterKind::Claude => Arc::new(ClaudeAgent { config: cli() }),
        AdapterKind::Codex => Arc::new(CodexAgent { config: cli() }),
        AdapterKind::Gemini => Arc::new(GeminiAgent { config: cli() }),
    })
}
