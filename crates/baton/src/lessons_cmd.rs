//! `baton lessons list|add|show|edit|accept|reject`: the lessons journal (SPEC §10) from the
//! command line. Whoever can open the data dir is the operator: no token is needed (but a command
//! run inside an agent's run may not accept or reject). With `[features] lessons = false` every
//! subcommand says the journal is off and changes nothing.

use crate::cli::{EXIT_OK, EXIT_USAGE, LessonsCommand, open_engine};
use crate::output;
use baton::config::Config;
use baton_engine::EngineError;
use baton_engine::lessons::LessonInput;
use baton_store::{LessonFilter, LessonPatch, LessonRecord};

const OFF: &str = "the lessons journal is switched off ([features] lessons = false)";

fn line(lesson: &LessonRecord) -> String {
    let scope = format!("{}/{}", lesson.repo.as_deref().unwrap_or("*"), lesson.stage.as_deref().unwrap_or("*"));
    format!(
        "#{} [{}] {} ({}, {}, {} hits): {}",
        lesson.id,
        output::safe(&scope),
        output::safe(&lesson.title),
        lesson.status,
        lesson.source,
        lesson.hits,
        output::safe(&lesson.body)
    )
}

/// `""` clears a scope; anything else sets it.
fn scope(value: Option<String>) -> Option<Option<String>> {
    value.map(|v| if v.trim().is_empty() { None } else { Some(v) })
}

pub async fn run(config: &Config, command: LessonsCommand, json: bool) -> anyhow::Result<u8> {
    let engine = open_engine(config).await?;
    let written = match command {
        LessonsCommand::List { repo, stage } => {
            match engine.lessons(&LessonFilter { repo, stage, status: None }).await? {
                None if json => output::print_json(&serde_json::json!({ "enabled": false })),
                None => say!("{OFF}"),
                Some(lessons) if json => {
                    output::print_json(&serde_json::json!({ "enabled": true, "lessons": lessons }))
                }
                Some(lessons) if lessons.is_empty() => say!("no lessons yet"),
                Some(lessons) => {
                    for lesson in &lessons {
                        say!("{}", line(lesson));
                    }
                }
            }
            return Ok(EXIT_OK);
        }
        LessonsCommand::Show { id } => {
            if engine.lessons(&LessonFilter::default()).await?.is_none() {
                say!("{OFF}");
                return Ok(EXIT_OK);
            }
            match engine.store().lesson(id).await? {
                Some(lesson) if json => output::print_json(&lesson),
                Some(lesson) => {
                    say!("{}", line(&lesson));
                    say!("slug: {}  tags: {}", output::safe(&lesson.slug), output::safe(&lesson.tags.join(", ")));
                }
                None => {
                    warn_line!("error: there is no lesson {id} (see `baton lessons list`)");
                    return Ok(EXIT_USAGE);
                }
            }
            return Ok(EXIT_OK);
        }
        LessonsCommand::Add { title, body, repo, stage, tags } => {
            engine.add_lesson(LessonInput { title, body, repo, stage, tags, source: None }).await
        }
        LessonsCommand::Edit { id, title, body, repo, stage, tags } => {
            let patch = LessonPatch { title, body, repo: scope(repo), stage: scope(stage), tags, status: None };
            engine.edit_lesson(id, patch).await
        }
        LessonsCommand::Accept { id } => {
            engine.accept_lesson(id, &crate::proposals_cmd::cli_principal()).await.map(Some)
        }
        LessonsCommand::Reject { id } => {
            engine.reject_lesson(id, &crate::proposals_cmd::cli_principal()).await.map(Some)
        }
    };
    match written {
        Ok(Some(lesson)) => {
            if json {
                output::print_json(&lesson);
            } else {
                say!("{}", line(&lesson));
            }
            Ok(EXIT_OK)
        }
        Ok(None) => {
            say!("{OFF}");
            Ok(EXIT_OK)
        }
        Err(EngineError::Invalid(message) | EngineError::Refused(message)) => {
            warn_line!("error: {}", output::safe(&message));
            Ok(EXIT_USAGE)
        }
        Err(EngineError::Store(baton_store::StoreError::NotFound(_)) | EngineError::NotFound(_)) => {
            warn_line!("error: there is no such lesson (see `baton lessons list`)");
            Ok(EXIT_USAGE)
        }
        Err(error) => Err(error.into()),
    }
}
