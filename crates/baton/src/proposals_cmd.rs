//! `baton proposals list|accept|reject`: the next tasks a retro proposed (SPEC §3). Accepting one
//! creates its task as `baton task add` would, once; the operator who can open the data dir
//! decides, but never a command run inside an agent's run (its environment names the run).

use crate::cli::{EXIT_OK, EXIT_USAGE, ProposalsCommand, open_engine};
use crate::output;
use baton::config::Config;
use baton_engine::{EngineError, Principal, Scope};
use baton_store::{PROPOSAL_STATUSES, ProposalFilter, TaskProposalRecord};

/// Variables Baton sets in every agent run: a command that sees one runs on an agent's behalf.
const AGENT_RUN_VARS: &[&str] = &["BATON_ROLE", "BATON_RUN", "BATON_PROMPT_FILE"];

/// Who runs this command: `cli:<user>` with every right, or inside an agent's run an agent
/// principal (`agent:<work item>`) that may read but not decide.
pub fn cli_principal() -> Principal {
    if AGENT_RUN_VARS.iter().any(|name| std::env::var_os(name).is_some()) {
        let run = std::env::var("BATON_WORK_ITEM").unwrap_or_else(|_| "unknown".into());
        return Principal {
            name: format!("{}{run}", baton_engine::retro::proposals::AGENT_PRINCIPAL_PREFIX),
            scope: Scope::Read,
        };
    }
    Principal {
        name: format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into())),
        scope: Scope::Admin,
    }
}

fn line(p: &TaskProposalRecord) -> String {
    let decided = match (&p.decided_by, p.created_task) {
        (Some(by), Some(task)) => format!(" by {} → task {task}", output::safe(by)),
        (Some(by), None) => format!(" by {}", output::safe(by)),
        _ => String::new(),
    };
    format!(
        "#{} [{}] {} ({}{decided}; from task {}): {}",
        p.id,
        output::safe(&p.repo),
        output::safe(&p.title),
        p.status,
        p.from_task,
        output::safe(&p.body)
    )
}

pub async fn run(config: &Config, command: ProposalsCommand, json: bool) -> anyhow::Result<u8> {
    let engine = open_engine(config).await?;
    let by = cli_principal();
    let decided = match command {
        ProposalsCommand::List { status } => {
            if let Some(status) = status.as_deref().filter(|s| !PROPOSAL_STATUSES.contains(s)) {
                warn_line!("error: --status {} is not one of {}", output::safe(status), PROPOSAL_STATUSES.join(", "));
                return Ok(EXIT_USAGE);
            }
            let proposals = engine.task_proposals(&ProposalFilter { status, from_task: None }).await?;
            if json {
                output::print_json(&serde_json::json!({ "proposals": proposals }));
            } else if proposals.is_empty() {
                say!("no task proposals");
            } else {
                for proposal in &proposals {
                    say!("{}", line(proposal));
                }
            }
            return Ok(EXIT_OK);
        }
        ProposalsCommand::Accept { id } => engine.accept_proposal(id, &by).await.map(|(p, task)| (p, Some(task))),
        ProposalsCommand::Reject { id } => engine.reject_proposal(id, &by).await.map(|p| (p, None)),
    };
    match decided {
        Ok((proposal, task)) => {
            if json {
                output::print_json(&serde_json::json!({ "proposal": proposal, "task": task }));
            } else {
                say!("{}", line(&proposal));
                if let Some(task) = task {
                    say!("created {}: {}", task.work_item_id, output::safe(&task.title));
                }
            }
            Ok(EXIT_OK)
        }
        Err(EngineError::Invalid(message) | EngineError::Refused(message)) => {
            warn_line!("error: {}", output::safe(&message));
            Ok(EXIT_USAGE)
        }
        Err(EngineError::NotFound(what)) => {
            warn_line!("error: there is no {what} (see `baton proposals list`)");
            Ok(EXIT_USAGE)
        }
        Err(error) => Err(error.into()),
    }
}
