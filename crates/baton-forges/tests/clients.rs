//! Every client call against its request-checking fake: GitHub, Gitea, Plane.
// Helpers outside #[test] fns share the tests' rule: a failed call or poisoned lock panics the test.
#![allow(clippy::unwrap_used)]

mod fakes;

use async_trait::async_trait;
use baton_adapters::tracker::{TicketStatus, Tracker, TrackerUpdate};
use baton_forges::adapters::plane_state_for;
use baton_forges::*;
use fakes::Fault;
use fakes::forge::{Flavor, inject};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOKEN: &str = "tok_s3cr3t_value_123";
const NOW: u64 = 1_800_000_000;

/// Records every sleep instead of sleeping; a fixed wall clock.
#[derive(Default)]
struct TestClock {
    sleeps: Mutex<Vec<Duration>>,
}

#[async_trait]
impl Clock for TestClock {
    fn unix_now(&self) -> u64 {
        NOW
    }
    async fn sleep(&self, d: Duration) {
        self.sleeps.lock().unwrap().push(d);
        tokio::task::yield_now().await;
    }
}

fn config(base: &str, auth: Auth, clock: Arc<TestClock>) -> ClientConfig {
    let mut c = ClientConfig::new(base, auth);
    c.clock = clock;
    c.retry.max_rate_limit_wait = Duration::from_secs(30);
    c
}

async fn forge(flavor: Flavor, token: &str) -> (fakes::forge::FakeForge, Box<dyn ForgeApi>, Arc<TestClock>) {
    let (fake, base) = fakes::forge::start(flavor, TOKEN).await;
    let clock = Arc::new(TestClock::default());
    let api: Box<dyn ForgeApi> = match flavor {
        Flavor::GitHub => Box::new(
            GitHub::new(config(&base, Auth::Bearer(Secret::new(token)), clock.clone()), "acme", "app").unwrap(),
        ),
        Flavor::Gitea => Box::new(
            Gitea::new(config(&base, Auth::GiteaToken(Secret::new(token)), clock.clone()), "acme", "app").unwrap(),
        ),
    };
    (fake, api, clock)
}

fn no_violations(fake: &fakes::forge::FakeForge) {
    let v = fake.lock().unwrap().rec.violations.clone();
    assert!(v.is_empty(), "request shape violations: {v:#?}");
}

async fn pr_lifecycle(flavor: Flavor) {
    let (fake, api, _) = forge(flavor, TOKEN).await;
    fake.lock().unwrap().branches.insert("baton/ORCH-1-x".into(), "a".repeat(40));
    assert_eq!(api.find_open_pr("baton/ORCH-1-x").await.unwrap(), None);
    let new = NewPullRequest {
        head: "baton/ORCH-1-x".into(),
        base: "main".into(),
        title: "ORCH-1".into(),
        body: "analysis".into(),
    };
    let pr = api.ensure_pr(&new).await.unwrap();
    assert_eq!(
        (pr.head_ref.as_str(), pr.head_sha.as_str(), pr.base_ref.as_str()),
        ("baton/ORCH-1-x", "a".repeat(40).as_str(), "main")
    );
    // Find-before-create: a second ensure opens no second PR.
    let again = api.ensure_pr(&new).await.unwrap();
    assert_eq!(again.number, pr.number);
    assert_eq!(fake.lock().unwrap().prs.len(), 1);
    let updated = api.update_pr(pr.number, Some("ORCH-1: review"), Some("links")).await.unwrap();
    assert_eq!((updated.title.as_str(), updated.body.as_str()), ("ORCH-1: review", "links"));
    // A head that moved since the gate: Conflict, nothing merged.
    let err = api.merge_pr(pr.number, &"b".repeat(40), MergeStyle::Squash).await.unwrap_err();
    assert!(matches!(err, ApiError::Conflict { status: 409, .. }), "{err:?}");
    assert!(err.to_string().contains(&format!("{}.merge_pr", api.kind())), "{err}");
    assert!(!fake.lock().unwrap().prs[0].merged);
    api.merge_pr(pr.number, &"a".repeat(40), MergeStyle::Squash).await.unwrap();
    assert_eq!(fake.lock().unwrap().prs[0].merge_style.as_deref(), Some("squash"));
    assert!(api.get_pr(pr.number).await.unwrap().merged);
    api.delete_branch("baton/ORCH-1-x").await.unwrap();
    assert!(fake.lock().unwrap().branches.is_empty());
    // Already deleted (a re-driven effect) is success.
    api.delete_branch("baton/ORCH-1-x").await.unwrap();
    no_violations(&fake);
}

#[tokio::test]
async fn github_pr_lifecycle() {
    pr_lifecycle(Flavor::GitHub).await;
}

#[tokio::test]
async fn gitea_pr_lifecycle() {
    pr_lifecycle(Flavor::Gitea).await;
}

#[tokio::test]
async fn github_has_no_fast_forward_merge_and_gitea_does() {
    let (fake, api, _) = forge(Flavor::GitHub, TOKEN).await;
    let err = api.merge_pr(1, "x", MergeStyle::FastForwardOnly).await.unwrap_err();
    assert!(matches!(err, ApiError::Invalid { .. }));
    assert_eq!(fake.lock().unwrap().rec.calls.len(), 0, "refused before any request");

    let (fake, api, _) = forge(Flavor::Gitea, TOKEN).await;
    fake.lock().unwrap().branches.insert("baton/b".into(), "c".repeat(40));
    let pr = api
        .create_pr(&NewPullRequest {
            head: "baton/b".into(),
            base: "main".into(),
            title: "t".into(),
            body: String::new(),
        })
        .await
        .unwrap();
    api.merge_pr(pr.number, &"c".repeat(40), MergeStyle::FastForwardOnly).await.unwrap();
    assert_eq!(fake.lock().unwrap().prs[0].merge_style.as_deref(), Some("fast-forward-only"));
    no_violations(&fake);
}

#[tokio::test]
async fn github_ci_state_combines_statuses_and_check_runs_across_pages() {
    let (fake, api, _) = forge(Flavor::GitHub, TOKEN).await;
    let sha = "d".repeat(40);
    assert_eq!(api.ci_state(&sha).await.unwrap(), CiState::NoChecks);
    {
        let mut f = fake.lock().unwrap();
        f.statuses.insert(
            sha.clone(),
            vec![json!({"state": "success", "context": "baton/tests", "target_url": "", "description": "ok"})],
        );
        // 150 green runs, then a failed one on the second page (per_page is 100).
        let mut runs: Vec<_> = (0..150)
            .map(|i| json!({"name": format!("lint {i}"), "status": "completed", "conclusion": "success", "details_url": "u"}))
            .collect();
        f.check_runs.insert(sha.clone(), runs.clone());
        runs.push(json!({"name": "still running", "status": "in_progress", "conclusion": null}));
        f.check_runs.insert("e".repeat(40), runs);
    }
    assert_eq!(api.ci_state(&sha).await.unwrap(), CiState::Green);
    assert_eq!(api.ci_state(&"e".repeat(40)).await.unwrap(), CiState::Pending);
    {
        let mut f = fake.lock().unwrap();
        let failed: serde_json::Value =
            serde_json::from_str(include_str!("fixtures/github_check_run_failed.json")).unwrap();
        f.check_runs.get_mut(&sha).unwrap().push(failed);
    }
    match api.ci_state(&sha).await.unwrap() {
        CiState::Red { check, details_url, summary } => {
            assert_eq!(check, "ci / test");
            assert!(details_url.unwrap().contains("/actions/runs/"));
            assert!(summary.unwrap().contains("assertion failed"));
        }
        other => panic!("expected red, got {other:?}"),
    }
    assert!(fake.lock().unwrap().rec.count("GET /commits/{sha}/check-runs") >= 5, "second pages were read");
    no_violations(&fake);
}

#[tokio::test]
async fn gitea_ci_state_reads_status_field_and_empty_combined() {
    let (fake, api, _) = forge(Flavor::Gitea, TOKEN).await;
    let sha = "f".repeat(40);
    assert_eq!(api.ci_state(&sha).await.unwrap(), CiState::NoChecks);
    fake.lock().unwrap().statuses.insert(
        sha.clone(),
        vec![
            json!({"state": "success", "context": "lint", "target_url": "", "description": ""}),
            json!({"state": "pending", "context": "build", "target_url": "", "description": ""}),
        ],
    );
    assert_eq!(api.ci_state(&sha).await.unwrap(), CiState::Pending);
    fake.lock().unwrap().statuses.get_mut(&sha).unwrap()[1] =
        json!({"state": "failure", "context": "build", "target_url": "http://ci/1", "description": "exit 1"});
    assert_eq!(
        api.ci_state(&sha).await.unwrap(),
        CiState::Red { check: "build".into(), details_url: Some("http://ci/1".into()), summary: Some("exit 1".into()) }
    );
    no_violations(&fake);
}

async fn issues(flavor: Flavor) {
    let (fake, api, _) = forge(flavor, TOKEN).await;
    {
        let mut f = fake.lock().unwrap();
        f.labels.insert("baton:to-analyse".into(), 7);
        f.labels.insert("baton:in-progress".into(), 8);
        for i in 0..250 {
            let labels: &[&str] = if i % 2 == 0 { &["baton:to-analyse"] } else { &["bug"] };
            f.issue(&format!("issue {i}"), labels);
        }
        let n = f.issue("a PR listed as an issue", &["baton:to-analyse"]);
        f.issues.last_mut().unwrap().is_pr = true;
        assert_eq!(n, 251);
    }
    let listed = api.list_issues_with_label("baton:to-analyse").await.unwrap();
    assert_eq!(listed.len(), 125, "every page, PRs left out");
    assert!(fake.lock().unwrap().rec.count("GET /issues") >= 2);
    let first = listed[0].number;
    let got = api.get_issue(first).await.unwrap();
    assert_eq!((got.title.as_str(), got.author.as_str()), ("issue 0", "alice"));
    api.add_label(first, "baton:in-progress").await.unwrap();
    api.remove_label(first, "baton:to-analyse").await.unwrap();
    api.remove_label(first, "baton:to-analyse").await.unwrap(); // not there any more: fine
    assert_eq!(api.get_issue(first).await.unwrap().labels, vec!["baton:in-progress".to_string()]);
    api.comment(first, "Baton: in progress").await.unwrap();
    api.close_issue(first).await.unwrap();
    let f = fake.lock().unwrap();
    let issue = f.issues.iter().find(|i| i.number == first).unwrap();
    assert_eq!((issue.state.as_str(), issue.comments.len()), ("closed", 1));
    drop(f);
    no_violations(&fake);
}

#[tokio::test]
async fn github_issues_and_labels() {
    issues(Flavor::GitHub).await;
}

#[tokio::test]
async fn gitea_issues_and_labels() {
    issues(Flavor::Gitea).await;
}

// Gitea takes label ids: they are listed once for many label writes, and listed again when a
// label was deleted and made anew under another id (the stale id's write fails once).
#[tokio::test]
async fn gitea_label_ids_are_listed_once_and_relisted_when_stale() {
    let (fake, api, _) = forge(Flavor::Gitea, TOKEN).await;
    let number = {
        let mut f = fake.lock().unwrap();
        f.labels.insert("baton:in-progress".into(), 8);
        f.labels.insert("baton:done".into(), 9);
        f.issue("labels", &[])
    };
    for _ in 0..3 {
        api.add_label(number, "baton:in-progress").await.unwrap();
        api.remove_label(number, "baton:in-progress").await.unwrap();
    }
    api.add_label(number, "baton:done").await.unwrap();
    assert_eq!(fake.lock().unwrap().rec.count("GET /labels"), 1, "one listing for seven label writes");
    // `baton:done` deleted and made again as id 19: the stale id fails once, then the name is
    // looked up afresh.
    fake.lock().unwrap().labels.insert("baton:done".into(), 19);
    fake.lock().unwrap().issues.iter_mut().find(|i| i.number == number).unwrap().labels.clear();
    let first = api.add_label(number, "baton:done").await;
    if first.is_err() {
        api.add_label(number, "baton:done").await.unwrap();
    }
    assert_eq!(api.get_issue(number).await.unwrap().labels, vec!["baton:done".to_string()]);
    assert!(fake.lock().unwrap().rec.count("GET /labels") <= 2);
}

#[tokio::test]
async fn retries_5xx_for_idempotent_calls_only() {
    let (fake, api, clock) = forge(Flavor::GitHub, TOKEN).await;
    fake.lock().unwrap().issue("x", &[]);
    inject(&fake, "GET /issues/{n}", Fault::ServerError, 2);
    assert_eq!(api.get_issue(1).await.unwrap().title, "x");
    assert_eq!(fake.lock().unwrap().rec.count("GET /issues/{n}"), 3);
    assert_eq!(clock.sleeps.lock().unwrap().len(), 2, "a backoff before each retry");
    // POST is not idempotent: one try, then Unavailable.
    inject(&fake, "POST /issues/{n}/comments", Fault::ServerError, 1);
    let err = api.comment(1, "note").await.unwrap_err();
    assert!(matches!(err, ApiError::Unavailable { .. }), "{err:?}");
    assert_eq!(fake.lock().unwrap().rec.count("POST /issues/{n}/comments"), 1);
    // More failures than tries: Unavailable naming the call.
    inject(&fake, "GET /issues/{n}", Fault::ServerError, 10);
    let err = api.get_issue(1).await.unwrap_err();
    assert!(err.to_string().starts_with("github.get_issue: unavailable"), "{err}");
    no_violations(&fake);
}

#[tokio::test]
async fn honours_retry_after_and_github_rate_limit_reset() {
    let (fake, api, clock) = forge(Flavor::GitHub, TOKEN).await;
    fake.lock().unwrap().issue("x", &[]);
    inject(&fake, "GET /issues/{n}", Fault::TooMany { retry_after: 2 }, 1);
    api.get_issue(1).await.unwrap();
    assert_eq!(*clock.sleeps.lock().unwrap(), vec![Duration::from_secs(2)]);
    inject(&fake, "POST /issues/{n}/comments", Fault::RateLimit403 { reset_epoch: NOW + 5 }, 1);
    api.comment(1, "n").await.unwrap(); // the server did not act on a rate-limited POST: retried
    assert_eq!(clock.sleeps.lock().unwrap()[1], Duration::from_secs(5));
    // A wait longer than the client may sleep: a typed error, no sleep.
    inject(&fake, "GET /issues/{n}", Fault::RateLimit403 { reset_epoch: NOW + 3600 }, 1);
    let err = api.get_issue(1).await.unwrap_err();
    assert_eq!(err, ApiError::RateLimited { call: "github.get_issue".into(), retry_after: Duration::from_secs(3600) });
    assert_eq!(clock.sleeps.lock().unwrap().len(), 2);
    no_violations(&fake);
}

#[tokio::test]
async fn token_never_in_errors_or_debug() {
    for flavor in [Flavor::GitHub, Flavor::Gitea] {
        let wrong = "tok_wrong_secret_999";
        let (fake, api, _) = forge(flavor, wrong).await;
        let err = api.get_issue(1).await.unwrap_err();
        assert!(matches!(err, ApiError::Unauthorized { status: 401, .. }), "{err:?}");
        let text = format!("{err} {err:?}");
        assert!(!text.contains(wrong) && !text.contains(TOKEN), "{text}");
        no_violations(&fake);
    }
    let gh = GitHub::with_token("http://127.0.0.1:9", Secret::new(TOKEN), "acme", "app").unwrap();
    assert!(!format!("{gh:?}").contains(TOKEN));
    // Transport error (nothing listens on port 9... or it refuses): no token either.
    let err = gh.get_issue(1).await.unwrap_err();
    assert!(matches!(err, ApiError::Unavailable { .. }));
    assert!(!format!("{err} {err:?}").contains(TOKEN));
}

#[tokio::test]
async fn plane_calls_pages_and_state_mapping() {
    let (fake, base) = fakes::plane::start(TOKEN).await;
    let clock = Arc::new(TestClock::default());
    let plane = Plane::new(config(&base, Auth::ApiKey(Secret::new(TOKEN)), clock.clone()), "acme", "p1").unwrap();
    let ids: Vec<String> = {
        let mut f = fake.lock().unwrap();
        (0..8).map(|i| f.add_item(&format!("item {i}"), if i % 2 == 0 { "To Analyse" } else { "Backlog" })).collect()
    };
    let states = plane.list_states().await.unwrap();
    assert_eq!(states.states().len(), fakes::plane::STATES.len(), "states span pages of 3");
    for name in ["To Analyse", "In Progress", "Needs Input", "Awaiting Deploy", "Done", "Cancelled"] {
        assert_eq!(states.id_for(name).unwrap(), fake.lock().unwrap().state_id(name), "{name}");
    }
    assert_eq!(states.id_for(" in progress "), states.id_for("In Progress"));
    let err = states.require("plane.x", "Monitoring").unwrap_err();
    assert!(err.to_string().contains("To Analyse"), "names the known states: {err}");

    let to_analyse = plane.list_work_items_in_state(states.id_for("To Analyse").unwrap()).await.unwrap();
    assert_eq!(to_analyse.len(), 4);
    assert_eq!(to_analyse[0].state_name.as_deref(), Some("To Analyse"));
    assert!(fake.lock().unwrap().rec.count("GET work-items/") >= 3, "8 items in pages of 3");

    inject_plane(&fake, "PATCH work-items/{id}/", Fault::TooMany { retry_after: 1 });
    plane.set_state(&ids[0], states.id_for("In Progress").unwrap()).await.unwrap();
    assert_eq!(*clock.sleeps.lock().unwrap(), vec![Duration::from_secs(1)]);
    let item = plane.get_work_item(&ids[0]).await.unwrap();
    assert_eq!(item.state_name.as_deref(), Some("In Progress"));
    plane.comment(&ids[0], "Baton: <b>review</b> & co").await.unwrap();
    assert_eq!(fake.lock().unwrap().items[0].3, vec!["<p>Baton: &lt;b&gt;review&lt;/b&gt; &amp; co</p>".to_string()]);

    let err = plane.get_work_item("nope").await.unwrap_err();
    assert!(matches!(err, ApiError::NotFound { .. }) && err.call() == "plane.get_work_item");
    let v = fake.lock().unwrap().rec.violations.clone();
    assert!(v.is_empty(), "{v:#?}");
}

fn inject_plane(f: &fakes::plane::FakePlane, endpoint: &str, fault: Fault) {
    f.lock().unwrap().rec.inject(endpoint, fault, 1);
}

#[tokio::test]
async fn plane_tracker_mirrors_status() {
    let (fake, base) = fakes::plane::start(TOKEN).await;
    let plane =
        Plane::new(config(&base, Auth::ApiKey(Secret::new(TOKEN)), Arc::new(TestClock::default())), "acme", "p1")
            .unwrap();
    let id = fake.lock().unwrap().add_item("t", "To Analyse");
    let tracker = PlaneTracker::new(plane);
    for (status, want) in [
        ("analysis", "In Progress"),
        ("analysis (awaiting_approval)", "In Review"),
        ("development (needs_input)", "Needs Input"),
        ("deploy (awaiting_confirm)", "Awaiting Deploy"),
        ("deploy", "Deploying"),
        ("cancelled", "STOP"),
        ("done", "Done"),
    ] {
        let ticket = TicketStatus::from_display(status);
        assert!(plane_state_for(ticket).contains(&want), "{status}");
        let update = TrackerUpdate {
            work_item: "ORCH-1".into(),
            external_ref: Some(format!("plane:p1/{id}")),
            title: "t".into(),
            branch: "baton/ORCH-1".into(),
            status: ticket,
            display: status.into(),
        };
        tracker.task_changed(&update).await.unwrap();
        let f = fake.lock().unwrap();
        assert_eq!(f.items[0].2, f.state_id(want), "{status}");
    }
    assert_eq!(fake.lock().unwrap().rec.count("GET states/"), 4, "states listed once (4 pages), then cached");
    let v = fake.lock().unwrap().rec.violations.clone();
    assert!(v.is_empty(), "{v:#?}");
}
