//! A human's decisions on what a retro proposed: a task proposal accepted becomes a task (created
//! the way `baton task add` creates one, in the proposal's repository) or is rejected; a proposed
//! lesson becomes active (it reaches prompts from then on) or rejected. Only a person decides:
//! a principal with the `act` scope that is not an agent's.

use crate::access::{Principal, Scope};
use crate::engine::{Engine, NewTaskRequest};
use crate::{EngineError, features::Feature};
use baton_store::{
    LESSON_ACTIVE, LESSON_PROPOSED, LessonPatch, LessonRecord, ProposalFilter, StoreError, TaskProposalRecord,
    TaskRecord,
};

/// The name prefix of a principal that is an agent (a command run inside an agent's run).
pub const AGENT_PRINCIPAL_PREFIX: &str = "agent:";

/// Refuses anyone but a person allowed to act: proposals are an agent's, the decision a human's.
pub fn check_human(by: &Principal) -> Result<(), EngineError> {
    if by.name.starts_with(AGENT_PRINCIPAL_PREFIX) {
        return Err(EngineError::Refused(format!(
            "{} is an agent: only a person accepts or rejects what a retro proposed",
            by.name
        )));
    }
    if !by.allows(Scope::Act) {
        return Err(EngineError::Refused(format!(
            "{} has the `{}` scope: accepting or rejecting a proposal needs `act`",
            by.name, by.scope
        )));
    }
    Ok(())
}

impl Engine {
    /// The task proposals passing `filter`, oldest first.
    pub async fn task_proposals(&self, filter: &ProposalFilter) -> Result<Vec<TaskProposalRecord>, EngineError> {
        Ok(self.store().task_proposals(filter).await?)
    }

    /// Accepts task proposal `id`: creates its task in the proposal's repository and links it.
    /// A proposal decided already is refused (never a second task); when the task cannot be
    /// created the accept is released, so the proposal can be accepted again.
    pub async fn accept_proposal(
        &self,
        id: i64,
        by: &Principal,
    ) -> Result<(TaskProposalRecord, TaskRecord), EngineError> {
        check_human(by)?;
        let proposal = self.proposal(id).await?;
        if proposal.status != "proposed" {
            return Err(already(&proposal));
        }
        let now = self.clock().now_ms();
        let claimed = self.store().decide_task_proposal(id, "accepted", &by.name, now).await.map_err(|e| match e {
            StoreError::Conflict(message) => EngineError::Refused(message),
            other => other.into(),
        })?;
        let from = self.store().task(&baton_store::TaskKey::Id(claimed.from_task)).await?;
        let origin = from.map_or_else(|| format!("task {}", claimed.from_task), |t| t.work_item_id);
        let request = NewTaskRequest {
            repo: claimed.repo.clone(),
            title: claimed.title.clone(),
            body: format!("{}\n\n(Proposed by the retro of {origin}; accepted by {}.)", claimed.body, by.name),
            external_ref: None,
        };
        let task = match self.create_task(request).await {
            Ok(task) => task,
            Err(error) => {
                let released = self.store().decide_task_proposal(id, "proposed", &by.name, now).await;
                if let Err(e) = released {
                    tracing::warn!(proposal = id, "an accept whose task failed was not released: {e}");
                }
                return Err(error);
            }
        };
        let linked = self.store().link_task_proposal(id, task.id).await?;
        Ok((linked, task))
    }

    /// Rejects task proposal `id`; one decided already is refused.
    pub async fn reject_proposal(&self, id: i64, by: &Principal) -> Result<TaskProposalRecord, EngineError> {
        check_human(by)?;
        let proposal = self.proposal(id).await?;
        if proposal.status != "proposed" {
            return Err(already(&proposal));
        }
        let now = self.clock().now_ms();
        self.store().decide_task_proposal(id, "rejected", &by.name, now).await.map_err(|e| match e {
            StoreError::Conflict(message) => EngineError::Refused(message),
            other => other.into(),
        })
    }

    /// Accepts proposed lesson `id`: it is active, and reaches the prompts it applies to.
    pub async fn accept_lesson(&self, id: i64, by: &Principal) -> Result<LessonRecord, EngineError> {
        self.decide_lesson(id, LESSON_ACTIVE, by).await
    }

    /// Rejects proposed lesson `id`: it stays in the journal, never in a prompt.
    pub async fn reject_lesson(&self, id: i64, by: &Principal) -> Result<LessonRecord, EngineError> {
        self.decide_lesson(id, "rejected", by).await
    }

    async fn decide_lesson(&self, id: i64, status: &str, by: &Principal) -> Result<LessonRecord, EngineError> {
        check_human(by)?;
        if self.features().off_everywhere(Feature::Lessons) {
            return Err(EngineError::Refused("the lessons journal is switched off (`[features] lessons`)".into()));
        }
        let lesson = self.store().lesson(id).await?.ok_or_else(|| EngineError::NotFound(format!("lesson {id}")))?;
        if lesson.status != LESSON_PROPOSED {
            return Err(EngineError::Refused(format!(
                "lesson {id} is {}, not proposed: only a proposed lesson is accepted or rejected",
                lesson.status
            )));
        }
        let patch = LessonPatch { status: Some(status.to_string()), ..LessonPatch::default() };
        let decided = self.store().update_lesson(id, &patch, self.clock().now_ms()).await?;
        tracing::info!(lesson = id, status, by = %by.name, "a proposed lesson was decided");
        Ok(decided)
    }

    async fn proposal(&self, id: i64) -> Result<TaskProposalRecord, EngineError> {
        self.store().task_proposal(id).await?.ok_or_else(|| EngineError::NotFound(format!("task proposal {id}")))
    }
}

fn already(proposal: &TaskProposalRecord) -> EngineError {
    let by = proposal.decided_by.as_deref().unwrap_or("someone");
    let task = proposal.created_task.map(|t| format!(" (task {t})")).unwrap_or_default();
    EngineError::Refused(format!("task proposal {} was already {} by {by}{task}", proposal.id, proposal.status))
}
