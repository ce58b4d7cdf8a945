//! The tracker ports over the request-checking fakes: status labels and Plane states mirrored with
//! the fewest calls, decision labels consumed, Done closes and is never left, comments and label
//! events listed, and the pollers (every page, rate limits respected, back-off).
// Helpers outside #[test] fns share the tests' rule: a failed call or poisoned lock panics the test.
#![allow(clippy::unwrap_used)]

mod fakes;

use async_trait::async_trait;
use baton_adapters::tracker::{TicketPoller, TicketStatus, Tracker, TrackerUpdate};
use baton_adapters::webhook::WebhookEvent;
use baton_forges::*;
use fakes::Fault;
use fakes::forge::{FakeForge, Flavor, inject};
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "tok_s3cr3t_value_123";

/// A fixed wall clock that never sleeps long.
struct TestClock;

#[async_trait]
impl Clock for TestClock {
    fn unix_now(&self) -> u64 {
        1_800_000_000
    }
    async fn sleep(&self, _d: Duration) {
        tokio::task::yield_now().await;
    }
}

fn config(base: &str, auth: Auth) -> ClientConfig {
    let mut c = ClientConfig::new(base, auth);
    c.clock = Arc::new(TestClock);
    c.retry.max_rate_limit_wait = Duration::from_secs(30);
    c
}

async fn forge(flavor: Flavor) -> (FakeForge, Arc<dyn ForgeApi>) {
    let (fake, base) = fakes::forge::start(flavor, TOKEN).await;
    let api: Arc<dyn ForgeApi> = match flavor {
        Flavor::GitHub => {
            Arc::new(GitHub::new(config(&base, Auth::Bearer(Secret::new(TOKEN))), "acme", "app").unwrap())
        }
        Flavor::Gitea => {
            Arc::new(Gitea::new(config(&base, Auth::GiteaToken(Secret::new(TOKEN))), "acme", "app").unwrap())
        }
    };
    // Gitea label calls take ids: the repository's labels exist.
    let mut f = fake.lock().unwrap();
    for (i, status) in TicketStatus::ALL.iter().enumerate() {
        f.labels.insert(format!("baton:{}", status.slug()), 100 + i as u64);
    }
    for (i, name) in
        ["baton", "bug", "baton:approved", "baton:deploy", "baton:stop", "baton:answered"].iter().enumerate()
    {
        f.labels.insert(name.to_string(), 200 + i as u64);
    }
    drop(f);
    (fake, api)
}

fn labels() -> LabelSettings {
    LabelSettings {
        status_prefix: "baton:".into(),
        start_label: "baton".into(),
        approve_label: "baton:approved".into(),
        deploy_label: "baton:deploy".into(),
        stop_label: "baton:stop".into(),
        answer_label: "baton:answered".into(),
        close_on_done: true,
    }
}

fn update(kind: &str, number: u64, status: TicketStatus) -> TrackerUpdate {
    TrackerUpdate {
        work_item: "APP-1".into(),
        external_ref: Some(format!("{kind}:acme/app#{number}")),
        title: "Fix it".into(),
        branch: "baton/APP-1".into(),
        status,
        display: status.slug().into(),
    }
}

fn no_violations(fake: &FakeForge) {
    let v = fake.lock().unwrap().rec.violations.clone();
    assert!(v.is_empty(), "request shape violations: {v:#?}");
}

fn writes(fake: &FakeForge) -> usize {
    let f = fake.lock().unwrap();
    f.rec.count("POST /issues/{n}/labels")
        + f.rec.count("DELETE /issues/{n}/labels/{label}")
        + f.rec.count("POST /issues/{n}/comments")
        + f.rec.count("PATCH /issues/{n}")
}

async fn one_status_label(flavor: Flavor) {
    let (fake, api) = forge(flavor).await;
    let kind = api.kind();
    let n = fake.lock().unwrap().issue("Fix it", &["baton", "bug", "baton:in-progress"]);
    let tracker = LabelTracker::new(api, "acme/app", labels());
    tracker.task_changed(&update(kind, n, TicketStatus::InReview)).await.unwrap();
    let mut now = fake.lock().unwrap().labels_of(n);
    now.sort();
    assert_eq!(now, ["baton", "baton:in-review", "bug"]);
    assert_eq!(writes(&fake), 2, "one removal, one addition");
    // The same update again: already right, nothing written.
    tracker.task_changed(&update(kind, n, TicketStatus::InReview)).await.unwrap();
    assert_eq!(writes(&fake), 2, "an update that is already true writes nothing");
    // A ticket of another repository is not this tracker's.
    tracker
        .task_changed(&TrackerUpdate {
            external_ref: Some("github:other/repo#1".into()),
            ..update(kind, n, TicketStatus::Done)
        })
        .await
        .unwrap();
    assert_eq!(fake.lock().unwrap().rec.count("GET /issues/{n}"), 2);
    no_violations(&fake);
}

// Exactly one status label: the old one goes, the new one comes, and nothing is written twice.
#[tokio::test]
async fn github_issue_keeps_one_status_label_with_the_fewest_calls() {
    one_status_label(Flavor::GitHub).await;
}

#[tokio::test]
async fn gitea_issue_keeps_one_status_label_with_the_fewest_calls() {
    one_status_label(Flavor::Gitea).await;
}

async fn decisions_consumed_and_done_closes(flavor: Flavor) {
    let (fake, api) = forge(flavor).await;
    let kind = api.kind();
    let n = fake.lock().unwrap().issue("Fix it", &["baton", "baton:in-progress", "baton:approved"]);
    let tracker = LabelTracker::new(api, "acme/app", labels());
    // Entering In Review: an approve label put there before the question is stale and goes.
    tracker.task_changed(&update(kind, n, TicketStatus::InReview)).await.unwrap();
    assert!(!fake.lock().unwrap().labels_of(n).contains(&"baton:approved".to_string()));
    // A human approves while In Review: the label stays while the task is still there...
    fake.lock().unwrap().human_label(n, "alice", "baton:approved", "2026-01-01T00:01:00Z");
    tracker.task_changed(&update(kind, n, TicketStatus::InReview)).await.unwrap();
    assert!(fake.lock().unwrap().labels_of(n).contains(&"baton:approved".to_string()));
    // ...and is consumed once the task has left the hold.
    tracker.task_changed(&update(kind, n, TicketStatus::InProgress)).await.unwrap();
    assert!(!fake.lock().unwrap().labels_of(n).contains(&"baton:approved".to_string()));

    tracker.task_changed(&update(kind, n, TicketStatus::Done)).await.unwrap();
    {
        let f = fake.lock().unwrap();
        let issue = f.issues.iter().find(|i| i.number == n).unwrap();
        assert_eq!(issue.state, "closed");
        assert!(issue.labels.contains(&"baton:done".to_string()), "{:?}", issue.labels);
        let note = issue.comments.last().unwrap();
        assert!(note.starts_with("**Baton**") && note.contains("APP-1") && note.contains("baton/APP-1"), "{note}");
    }
    // A stale update after Done (a retried row) never takes the ticket out of Done.
    let before = writes(&fake);
    tracker.task_changed(&update(kind, n, TicketStatus::InProgress)).await.unwrap();
    assert_eq!(writes(&fake), before, "nothing written after Done");
    assert!(fake.lock().unwrap().labels_of(n).contains(&"baton:done".to_string()));
    // Done again (a converge after a reopen) closes the issue again, without a second note.
    fake.lock().unwrap().issues.iter_mut().find(|i| i.number == n).unwrap().state = "open".into();
    tracker.task_changed(&update(kind, n, TicketStatus::Done)).await.unwrap();
    let f = fake.lock().unwrap();
    let issue = f.issues.iter().find(|i| i.number == n).unwrap();
    assert_eq!((issue.state.as_str(), issue.comments.len()), ("closed", 1));
    drop(f);
    no_violations(&fake);
}

// Decision labels are consumed; Done comments and closes; a late update does not regress it.
#[tokio::test]
async fn github_decision_labels_are_consumed_and_done_closes_for_good() {
    decisions_consumed_and_done_closes(Flavor::GitHub).await;
}

#[tokio::test]
async fn gitea_decision_labels_are_consumed_and_done_closes_for_good() {
    decisions_consumed_and_done_closes(Flavor::Gitea).await;
}

// STOP consumes the stop label and the start label: adding the start label again restarts.
#[tokio::test]
async fn stop_removes_the_start_and_stop_labels() {
    let (fake, api) = forge(Flavor::GitHub).await;
    let n = fake.lock().unwrap().issue("Fix it", &["baton", "baton:in-progress", "baton:stop"]);
    let tracker = LabelTracker::new(api, "acme/app", labels());
    tracker.task_changed(&update("github", n, TicketStatus::Stopped)).await.unwrap();
    assert_eq!(fake.lock().unwrap().labels_of(n), ["baton:stopped"]);
    no_violations(&fake);
}

async fn comments_and_label_events(flavor: Flavor) {
    let (fake, api) = forge(flavor).await;
    let kind = api.kind();
    let n = fake.lock().unwrap().issue("Fix it", &["baton"]);
    {
        let mut f = fake.lock().unwrap();
        f.human_comment(n, "bob", "too early", "2026-01-01T00:00:00Z");
        f.human_comment(n, "alice", "Use the EU date format.", "2026-01-01T00:10:00Z");
        f.human_comment(n, "baton-bot", "**Baton**: APP-1 is done", "2026-01-01T00:11:00Z");
        f.human_label(n, "alice", "baton:answered", "2026-01-01T00:12:00Z");
    }
    let all = api.list_comments(n, None).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!((all[1].author.as_str(), all[1].created_at.as_str()), ("alice", "2026-01-01T00:10:00Z"));
    let since = api.list_comments(n, Some("2026-01-01T00:05:00Z")).await.unwrap();
    assert_eq!(since.len(), 2, "{since:?}");

    let tracker = LabelTracker::new(api.clone(), "acme/app", labels());
    let since_ms = baton_forges::trackers::time_ms("2026-01-01T00:05:00Z").unwrap();
    let comments = tracker.comments_since(&format!("{kind}:acme/app#{n}"), since_ms).await.unwrap();
    assert_eq!(comments.len(), 1, "Baton's own comment is left out: {comments:?}");
    assert_eq!((comments[0].author.as_str(), comments[0].body.as_str()), ("alice", "Use the EU date format."));

    let events = api.list_label_events(n).await.unwrap();
    assert_eq!(events.len(), 1, "only label additions: {events:?}");
    assert_eq!((events[0].actor.as_str(), events[0].label.as_str()), ("alice", "baton:answered"));
    no_violations(&fake);
}

// Comments since a time (sent as RFC 3339) and label additions with their actor.
#[tokio::test]
async fn github_lists_comments_since_and_label_events() {
    comments_and_label_events(Flavor::GitHub).await;
}

#[tokio::test]
async fn gitea_lists_comments_since_and_label_events() {
    comments_and_label_events(Flavor::Gitea).await;
}

fn issue_events(events: &[WebhookEvent]) -> Vec<(String, u64, Option<String>, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            WebhookEvent::Issue(i) => Some((i.action.clone(), i.number, i.label.clone(), i.sender.clone())),
            _ => None,
        })
        .collect()
}

async fn poller_reads_every_page(flavor: Flavor, count: usize) {
    let (fake, api) = forge(flavor).await;
    let kind = api.kind();
    let mut numbers = Vec::new();
    for i in 0..count {
        numbers.push(fake.lock().unwrap().issue(&format!("ticket {i}"), &["baton"]));
    }
    let live = numbers[0];
    let other = numbers[1];
    let closed = numbers[2];
    {
        let mut f = fake.lock().unwrap();
        f.human_label(live, "alice", "baton:approved", "2026-01-01T00:01:00Z");
        // A decision label on a ticket without a live task is not looked into.
        f.human_label(other, "mallory", "baton:approved", "2026-01-01T00:01:00Z");
        f.issues.iter_mut().find(|i| i.number == closed).unwrap().state = "closed".into();
    }
    let poller = ForgePoller::new(api, "acme/app", labels(), true, 60);
    let refs = vec![format!("{kind}:acme/app#{live}"), format!("{kind}:acme/app#{closed}")];
    let events = poller.poll(1_000, &refs).await.unwrap().expect("the first poll is due");
    let found = issue_events(&events);
    let started: Vec<u64> = found.iter().filter(|e| e.0 == "polled").map(|e| e.1).collect();
    assert_eq!(started.len(), count - 1, "every open issue with the start label, every page");
    assert!(found.contains(&("labeled".into(), live, Some("baton:approved".into()), "alice".into())), "{found:?}");
    assert!(!found.iter().any(|e| e.0 == "labeled" && e.1 == other), "{found:?}");
    assert!(found.iter().any(|e| e.0 == "closed" && e.1 == closed), "{found:?}");
    assert_eq!(
        fake.lock().unwrap().rec.count(if kind == "github" {
            "GET /issues/{n}/events"
        } else {
            "GET /issues/{n}/timeline"
        }),
        1
    );
    // Not due again before the interval.
    assert!(poller.poll(30_000, &refs).await.unwrap().is_none());
    assert!(poller.poll(61_000, &refs).await.unwrap().is_some());
    no_violations(&fake);
}

// The forge poller reads every page of the start label and reports decisions with their actor.
#[tokio::test]
async fn github_poller_reads_every_page() {
    poller_reads_every_page(Flavor::GitHub, 130).await;
}

#[tokio::test]
async fn gitea_poller_reads_every_page() {
    poller_reads_every_page(Flavor::Gitea, 70).await;
}

// A rate limit longer than the client waits: the poll fails, and no call is made until it ends;
// other errors back off.
#[tokio::test]
async fn poller_respects_rate_limits_and_backs_off() {
    let (fake, api) = forge(Flavor::GitHub).await;
    fake.lock().unwrap().issue("ticket", &["baton"]);
    let poller = ForgePoller::new(api, "acme/app", labels(), false, 60);
    inject(&fake, "GET /issues", Fault::TooMany { retry_after: 3_600 }, 1);
    assert!(poller.poll(0, &[]).await.is_err());
    let calls = fake.lock().unwrap().rec.count("GET /issues");
    assert!(poller.poll(61_000, &[]).await.unwrap().is_none(), "still rate limited");
    assert!(poller.poll(3_599_000, &[]).await.unwrap().is_none());
    assert_eq!(fake.lock().unwrap().rec.count("GET /issues"), calls, "no call while limited");
    assert!(poller.poll(3_600_000, &[]).await.unwrap().is_some());

    // An outage (5xx after the client's retries): the next poll waits twice the interval.
    inject(&fake, "*", Fault::ServerError, 20);
    assert!(poller.poll(3_700_000, &[]).await.is_err());
    assert!(poller.poll(3_700_000 + 61_000, &[]).await.unwrap().is_none(), "backing off");
    no_violations(&fake);
}

async fn plane(fake_base: &str) -> Plane {
    Plane::new(config(fake_base, Auth::ApiKey(Secret::new(TOKEN))), "acme", "p1").unwrap()
}

// Plane: states mirrored (STOP for a stopped task), Done never left, comments as plain text.
#[tokio::test]
async fn plane_tracker_mirrors_states_and_reads_comments() {
    let (fake, base) = fakes::plane::start(TOKEN).await;
    let id = fake.lock().unwrap().add_item("t", "To Analyse");
    let tracker = PlaneTracker::new(plane(&base).await);
    let reference = format!("plane:p1/{id}");
    let update = |status| TrackerUpdate {
        work_item: "ORCH-1".into(),
        external_ref: Some(reference.clone()),
        title: "t".into(),
        branch: "baton/ORCH-1".into(),
        status,
        display: String::new(),
    };
    tracker.task_changed(&update(TicketStatus::AwaitingDeploy)).await.unwrap();
    assert_eq!(fake.lock().unwrap().state_of(&id), "Awaiting Deploy");
    tracker.task_changed(&update(TicketStatus::Stopped)).await.unwrap();
    assert_eq!(fake.lock().unwrap().state_of(&id), "STOP");
    tracker.task_changed(&update(TicketStatus::Done)).await.unwrap();
    assert_eq!(fake.lock().unwrap().state_of(&id), "Done");
    let patches = fake.lock().unwrap().rec.count("PATCH work-items/{id}/");
    tracker.task_changed(&update(TicketStatus::InProgress)).await.unwrap();
    assert_eq!(fake.lock().unwrap().state_of(&id), "Done", "a stale update after Done does not regress");
    tracker.task_changed(&update(TicketStatus::Done)).await.unwrap();
    assert_eq!(fake.lock().unwrap().rec.count("PATCH work-items/{id}/"), patches, "already right: no write");

    {
        let mut f = fake.lock().unwrap();
        f.human_comment(&id, "Alice", "<p>old</p>", "2026-01-01T00:00:00Z");
        f.human_comment(&id, "Alice", "<p>Use <b>EU</b> dates &amp; times</p>", "2026-01-01T00:10:00Z");
        f.human_comment(&id, "Baton", "<p>**Baton**: status</p>", "2026-01-01T00:11:00Z");
        f.human_comment(&id, "Bob", "<p>and UTC</p>", "2026-01-01T00:12:00Z");
    }
    let since = baton_forges::trackers::time_ms("2026-01-01T00:05:00Z").unwrap();
    let comments = tracker.comments_since(&reference, since).await.unwrap();
    let got: Vec<(&str, &str)> = comments.iter().map(|c| (c.author.as_str(), c.body.as_str())).collect();
    assert_eq!(got, [("Alice", "Use EU dates & times"), ("Bob", "and UTC")], "pages of 3 read, Baton's left out");
    let review = fake.lock().unwrap().state_id("In Review");
    assert_eq!(tracker.state_name(&reference, &review).await.unwrap().as_deref(), Some("In Review"));
    assert_eq!(tracker.state_name("plane:other/x", &review).await.unwrap(), None);
    let v = fake.lock().unwrap().rec.violations.clone();
    assert!(v.is_empty(), "{v:#?}");
}

// The Plane poller reads every page of work items and reports each with its state's name.
#[tokio::test]
async fn plane_poller_reads_every_page() {
    let (fake, base) = fakes::plane::start(TOKEN).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(fake.lock().unwrap().add_item(&format!("t{i}"), if i % 2 == 0 { "To Analyse" } else { "Approved" }));
    }
    let poller = PlanePoller::new(plane(&base).await, 60);
    let events = poller.poll(0, &[]).await.unwrap().unwrap();
    let items: Vec<(String, Option<String>, Option<String>)> = events
        .iter()
        .filter_map(|e| match e {
            WebhookEvent::WorkItem(w) => Some((w.id.clone(), w.state_name.clone(), w.project.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(items.len(), 7, "pages of 3");
    assert_eq!(items[0], (ids[0].clone(), Some("To Analyse".into()), Some("p1".into())));
    assert_eq!(items[1].1.as_deref(), Some("Approved"));
    assert!(poller.poll(1_000, &[]).await.unwrap().is_none(), "not due yet");
    let v = fake.lock().unwrap().rec.violations.clone();
    assert!(v.is_empty(), "{v:#?}");
}

// Plane: a work item key (`P1-2`, any case) names the project's item through the workspace's
// by-key route, looked up once; an unknown key and a word that is no key name nothing.
#[tokio::test]
async fn plane_tracker_resolves_work_item_keys_once() {
    let (fake, base) = fakes::plane::start(TOKEN).await;
    let _first = fake.lock().unwrap().add_item("first", "To Analyse");
    let second = fake.lock().unwrap().add_item("second", "To Analyse");
    let tracker = PlaneTracker::new(plane(&base).await);
    assert_eq!(tracker.ticket_by_key("P1-2").await.unwrap(), Some(format!("plane:p1/{second}")));
    assert_eq!(tracker.ticket_by_key("p1-2").await.unwrap(), Some(format!("plane:p1/{second}")));
    assert_eq!(fake.lock().unwrap().rec.count("GET work-items/{key}/"), 1, "a key is looked up once");
    assert_eq!(tracker.ticket_by_key("P1-9").await.unwrap(), None);
    assert_eq!(tracker.ticket_by_key("nokey").await.unwrap(), None);
    assert_eq!(fake.lock().unwrap().rec.count("GET work-items/{key}/"), 2, "a word that is no key costs no call");
    assert!(fake.lock().unwrap().rec.violations.is_empty(), "{:?}", fake.lock().unwrap().rec.violations);
}
