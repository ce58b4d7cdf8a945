//! Webhook payload parsers over the fixtures in `tests/fixtures/webhooks/`: each fixture is named
//! `<event>__<what it proves>.json` and parsed with its event name.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../fuzz/harness/replay.rs"]
mod replay;
#[path = "../../../fuzz/harness/webhook.rs"]
mod webhook_harness;

use baton_adapters::webhook::{ParseError, Source, WebhookEvent, WorkItemAction, parse};
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/webhooks")
}

fn fixture(source: Source, name: &str) -> Result<WebhookEvent, ParseError> {
    let event = name.split("__").next().unwrap();
    let body = std::fs::read(dir().join(source.as_str()).join(format!("{name}.json"))).unwrap();
    parse(source, event, &body)
}

#[test]
fn github_issue_labeled_carries_number_title_body_labels_and_author() {
    let WebhookEvent::Issue(issue) = fixture(Source::Github, "issues__labeled_with_baton_label").unwrap() else {
        panic!("not an issue event")
    };
    assert_eq!(issue.action, "labeled");
    assert_eq!(issue.repo, "acme/shop");
    assert_eq!(issue.number, 42);
    assert_eq!(issue.title, "Checkout rounds totals wrongly");
    assert!(issue.body.starts_with("Totals of 0.1 + 0.2"));
    assert_eq!(issue.labels, ["bug", "baton"]);
    assert_eq!(issue.label.as_deref(), Some("baton"));
    assert_eq!(issue.author, "alice");
    assert_eq!(issue.sender, "bob");
    assert_eq!(issue.state, "open");
}

#[test]
fn github_issue_with_a_null_body_reads_as_empty() {
    let WebhookEvent::Issue(issue) = fixture(Source::Github, "issues__closed_with_null_body").unwrap() else {
        panic!("not an issue event")
    };
    assert_eq!((issue.action.as_str(), issue.number, issue.body.as_str()), ("closed", 43, ""));
    assert_eq!(issue.state, "closed");
    assert!(issue.labels.is_empty());
}

#[test]
fn github_issue_actions_baton_does_not_use_are_ignored() {
    let event = fixture(Source::Github, "issues__assigned_is_ignored").unwrap();
    assert_eq!(event, WebhookEvent::Ignored { event: "issues.assigned".into() });
}

#[test]
fn comments_never_drive_the_pipeline() {
    for (source, name) in [
        (Source::Github, "issue_comment__created_is_ignored"),
        (Source::Gitea, "issue_comment__created_is_ignored"),
        (Source::Plane, "issue_comment__created_is_ignored"),
    ] {
        let event = fixture(source, name).unwrap();
        assert!(matches!(event, WebhookEvent::Ignored { .. }), "{source}: {event:?}");
    }
}

#[test]
fn github_merged_pull_request_is_closed_with_merged_true_and_the_merge_sha() {
    let WebhookEvent::PullRequest(pr) = fixture(Source::Github, "pull_request__closed_merged").unwrap() else {
        panic!("not a pull request")
    };
    assert_eq!((pr.action.as_str(), pr.number, pr.merged), ("closed", 77, true));
    assert_eq!(pr.merge_commit_sha.as_deref(), Some("9f1c2d3e4b5a69788796a5b4c3d2e1f0a9b8c7d6"));
    assert_eq!(pr.head_ref, "baton/ORCH-42-round-totals");
    assert_eq!(pr.head_sha, "1".repeat(40));
    assert_eq!(pr.base_ref, "main");
    assert_eq!(pr.labels, ["baton"]);
    let WebhookEvent::PullRequest(open) = fixture(Source::Github, "pull_request__opened_not_merged").unwrap() else {
        panic!("not a pull request")
    };
    assert!(!open.merged);
    assert_eq!(open.merge_commit_sha, None);
}

#[test]
fn github_check_run_and_suite_report_status_and_conclusion() {
    let WebhookEvent::Check(run) = fixture(Source::Github, "check_run__completed_failure").unwrap() else {
        panic!("not a check")
    };
    assert_eq!(run.kind, "check_run");
    assert_eq!(run.name, "test (ubuntu-latest)");
    assert_eq!((run.status.as_str(), run.conclusion.as_deref()), ("completed", Some("failure")));
    assert_eq!(run.head_branch.as_deref(), Some("baton/ORCH-42-round-totals"));
    let WebhookEvent::Check(suite) = fixture(Source::Github, "check_suite__completed_success").unwrap() else {
        panic!("not a check")
    };
    assert_eq!(suite.kind, "check_suite");
    assert_eq!(suite.name, "GitHub Actions");
    assert_eq!((suite.status.as_str(), suite.conclusion.as_deref()), ("completed", Some("success")));
}

#[test]
fn github_status_carries_sha_state_and_context() {
    let WebhookEvent::Status(status) = fixture(Source::Github, "status__success").unwrap() else {
        panic!("not a status")
    };
    assert_eq!((status.state.as_str(), status.context.as_str()), ("success", "ci/tests"));
    assert_eq!(status.sha, "1".repeat(40));
    assert_eq!(status.repo, "acme/shop");
    assert_eq!(status.target_url.as_deref(), Some("https://ci.example.com/builds/88"));
}

#[test]
fn github_ping_is_recognised() {
    assert_eq!(fixture(Source::Github, "ping__hook_created").unwrap(), WebhookEvent::Ping);
}

#[test]
fn a_used_event_without_its_required_fields_is_a_parse_error_naming_the_field() {
    let error = fixture(Source::Github, "issues__missing_number_is_an_error").unwrap_err();
    assert_eq!(error.event, "issues");
    assert!(error.message.contains("number"), "{error}");
    let error = fixture(Source::Plane, "issue__unknown_action_is_an_error").unwrap_err();
    assert!(error.message.contains("archived"), "{error}");
    let error = parse(Source::Gitea, "status", b"not json").unwrap_err();
    assert_eq!(error.event, "status");
}

#[test]
fn unknown_events_are_ignored_not_errors_even_with_a_garbage_body() {
    for source in Source::ALL {
        let event = parse(source, "deployment_review", b"\xff not json").unwrap();
        assert_eq!(event, WebhookEvent::Ignored { event: "deployment_review".into() });
    }
}

#[test]
fn gitea_pretty_printed_issue_opened_parses() {
    let WebhookEvent::Issue(issue) = fixture(Source::Gitea, "issues__opened_pretty_printed").unwrap() else {
        panic!("not an issue event")
    };
    assert_eq!((issue.action.as_str(), issue.number, issue.title.as_str()), ("opened", 5, "Add a dark theme"));
    assert_eq!(issue.author, "alice");
    assert_eq!(issue.repo, "acme/shop");
}

#[test]
fn gitea_issue_label_reports_the_labels_the_issue_has_now() {
    let WebhookEvent::Issue(issue) = fixture(Source::Gitea, "issue_label__label_updated").unwrap() else {
        panic!("not an issue event")
    };
    assert_eq!(issue.action, "label_updated");
    assert_eq!(issue.labels, ["baton"]);
    assert_eq!(issue.sender, "bob");
}

#[test]
fn gitea_pull_requests_merged_and_synchronized() {
    let WebhookEvent::PullRequest(pr) = fixture(Source::Gitea, "pull_request__closed_merged").unwrap() else {
        panic!("not a pull request")
    };
    assert!(pr.merged);
    assert_eq!(pr.merge_commit_sha.as_deref(), Some("a".repeat(40).as_str()));
    assert_eq!(pr.head_ref, "baton/ORCH-5-dark-theme");
    let WebhookEvent::PullRequest(sync) = fixture(Source::Gitea, "pull_request_sync__new_head").unwrap() else {
        panic!("not a pull request")
    };
    assert_eq!((sync.action.as_str(), sync.head_sha.as_str()), ("synchronized", "d".repeat(40).as_str()));
}

#[test]
fn gitea_status_failure() {
    let WebhookEvent::Status(status) = fixture(Source::Gitea, "status__failure").unwrap() else {
        panic!("not a status")
    };
    assert_eq!((status.state.as_str(), status.context.as_str()), ("failure", "ci/woodpecker"));
}

#[test]
fn plane_created_work_item_has_id_sequence_name_description_state_and_project() {
    let WebhookEvent::WorkItem(item) = fixture(Source::Plane, "issue__created").unwrap() else {
        panic!("not a work item")
    };
    assert_eq!(item.action, WorkItemAction::Created);
    assert_eq!(item.id, "0f6a3c2e-7b1d-4e9a-8c5f-1d2e3f4a5b6c");
    assert_eq!(item.sequence_id, Some(17));
    assert_eq!(item.name.as_deref(), Some("Export invoices as CSV"));
    assert_eq!(item.description_html.as_deref(), Some("<p>Finance needs a CSV export of invoices.</p>"));
    assert_eq!(item.state_id.as_deref(), Some("a1a1a1a1-b2b2-4c3c-8d4d-e5e5e5e5e5e5"));
    assert_eq!((item.state_name.as_deref(), item.state_group.as_deref()), (Some("Todo"), Some("unstarted")));
    assert_eq!(item.project.as_deref(), Some("c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f"));
    assert_eq!(item.labels, ["baton"]);
    assert_eq!((item.changed_field, item.actor.as_deref()), (None, Some("alice")));
}

#[test]
fn plane_state_update_names_the_field_and_the_new_state() {
    let WebhookEvent::WorkItem(item) = fixture(Source::Plane, "issue__updated_state_to_in_review").unwrap() else {
        panic!("not a work item")
    };
    assert_eq!(item.action, WorkItemAction::Updated);
    assert_eq!(item.changed_field.as_deref(), Some("state_id"));
    assert_eq!((item.state_name.as_deref(), item.state_group.as_deref()), (Some("In Review"), Some("started")));
}

#[test]
fn plane_old_action_names_and_an_unexpanded_state_are_accepted() {
    let WebhookEvent::WorkItem(item) = fixture(Source::Plane, "issue__update_old_action_name_state_as_uuid").unwrap()
    else {
        panic!("not a work item")
    };
    assert_eq!(item.action, WorkItemAction::Updated);
    assert_eq!(item.state_id.as_deref(), Some("b2b2b2b2-c3c3-4d4d-8e5e-f6f6f6f6f6f6"));
    assert_eq!(item.state_name, None);
    assert!(item.labels.is_empty(), "bare label ids carry no name");
}

#[test]
fn plane_deletion_carries_only_the_id() {
    let WebhookEvent::WorkItem(item) = fixture(Source::Plane, "issue__deleted_carries_only_the_id").unwrap() else {
        panic!("not a work item")
    };
    assert_eq!(item.action, WorkItemAction::Deleted);
    assert_eq!(item.name, None);
    assert_eq!(item.sequence_id, None);
}

/// Every fixture parses (or fails) without panicking, and its summary is one line.
#[test]
fn every_fixture_parses_to_a_one_line_summary_or_an_error() {
    let mut seen = 0;
    for source in Source::ALL {
        for entry in std::fs::read_dir(dir().join(source.as_str())).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_string();
            seen += 1;
            match fixture(source, &name) {
                Ok(event) => assert!(!event.summary().contains('\n'), "{name}"),
                Err(error) => assert!(name.ends_with("is_an_error"), "{source}/{name}: {error}"),
            }
        }
    }
    assert!(seen >= 20, "{seen} fixtures");
}

// Every committed fuzz input (seeds and minimized corpus) of the three webhook targets parses or is
// refused without a panic, with a one-line summary.
#[test]
fn fuzz_corpus_webhooks_never_panic() {
    let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    assert!(replay::replay(&fuzz, "webhook_github", webhook_harness::github) >= 10);
    assert!(replay::replay(&fuzz, "webhook_gitea", webhook_harness::gitea) >= 5);
    assert!(replay::replay(&fuzz, "webhook_plane", webhook_harness::plane) >= 5);
}

#[test]
fn control_characters_in_payload_names_never_reach_the_summary() {
    let body = br#"{"action":"labeled","issue":{"number":1,"title":"t","labels":[]},"repository":{"full_name":"o/r\r\nFAKE LOG LINE"}}"#;
    let summary = parse(Source::Github, "issues", body).unwrap().summary();
    assert!(!summary.contains('\n') && !summary.contains('\r'), "{summary:?}");
}
