//! The dashboard in real headless Chromium, driven over WebDriver (`chromedriver` on 127.0.0.1,
//! plain JSON calls): every page fits 1280, 768 and 390 px without widening the document, the
//! task page shows the rendered analysis, Approve moves the task without a page load (the change
//! arrives over SSE), the board follows a change made elsewhere, and a read-scope session sees no
//! action buttons. Screenshots of each page at each width go to `target/screenshots/`.
//!
//! Chromium and chromedriver are required: without them these tests fail and say how to install
//! them (`apt-get install -y chromium chromium-driver`; `cargo xtask test` does it).
// Tests may unwrap, start chromedriver and git with std::process::Command, and wait in real time.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

#[path = "dashboard/support.rs"]
mod support;

use base64::Engine as _;
use baton_engine::Input;
use baton_http::DashboardMode;
use serde_json::{Value, json};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{Harness, Served};

const WIDTHS: [u32; 3] = [1280, 768, 390];
const HEIGHT: u32 = 900;

/// Returns the document's scroll width, the viewport's width, and (to say why a page is too
/// wide) the elements whose right edge is past the width asked for (`arguments[0]`), the number
/// of stylesheet rules in effect and the document's ready state.
const MEASURE_FIT: &str = r#"
var inner = window.innerWidth, edge = arguments[0], past = [];
document.querySelectorAll('body *').forEach(function (e) {
  var right = e.getBoundingClientRect().right;
  if (right > edge + 0.5 && past.length < 8) {
    var cls = typeof e.className === 'string' && e.className ? '.' + e.className.trim().split(/\s+/).join('.') : '';
    past.push(e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + cls + ' ends at ' + Math.round(right) + 'px');
  }
});
var rules = 0;
for (var i = 0; i < document.styleSheets.length; i++) { try { rules += document.styleSheets[i].cssRules.length; } catch (err) {} }
return [document.documentElement.scrollWidth, inner, { past: past, rules: rules, state: document.readyState }];
"#;

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).flat_map(|dir| names.iter().map(move |name| dir.join(name))).find(|p| p.is_file())
}

/// A chromedriver process and one browser session.
struct Browser {
    http: reqwest::Client,
    base: String,
    session: String,
    driver: Child,
}

impl Browser {
    async fn start() -> Browser {
        let driver_path = find_program(&["chromedriver"]).unwrap_or_else(|| {
            panic!(
                "chromedriver is not on PATH: the dashboard's browser tests need Chromium and its driver. \
                 Install them with `apt-get install -y chromium chromium-driver` (`cargo xtask test` installs them)"
            )
        });
        let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"]).unwrap_or_else(|| {
            panic!("Chromium is not on PATH: install it with `apt-get install -y chromium chromium-driver`")
        });
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        // Its own process group, with the Chromium it starts: a failing test stops them all.
        let driver = Command::new(driver_path)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            let ready = http.get(format!("{base}/status")).send().await.ok();
            if let Some(response) = ready
                && response.json::<Value>().await.is_ok_and(|v| v["value"]["ready"] == true)
            {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "chromedriver did not become ready in 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--hide-scrollbars", "--force-device-scale-factor=1", format!("--window-size=1280,{HEIGHT}")]
            }
        }}});
        let created: Value =
            http.post(format!("{base}/session")).json(&capabilities).send().await.unwrap().json().await.unwrap();
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver did not start Chromium: {created}"))
            .to_string();
        Browser { http, base, session, driver }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{}", self.base, self.session, path);
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        if answer["value"].get("error").is_some() {
            panic!("WebDriver {path}: {}", answer["value"]);
        }
        answer["value"].clone()
    }

    /// Opens `url` and waits for its load to complete: chromedriver may answer while the page is
    /// only interactive, its stylesheet not yet applied (seen on a loaded machine: an unstyled
    /// table measured 686 px wide at 390).
    async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url }))).await;
        self.wait_for(&format!("{url} to load"), "return document.readyState === 'complete';").await;
    }

    async fn eval(&self, script: &str, args: Value) -> Value {
        self.call(reqwest::Method::POST, "/execute/sync", Some(json!({ "script": script, "args": args }))).await
    }

    /// Emulates a viewport of `width` CSS pixels (a phone at 390).
    async fn width(&self, width: u32) {
        let params = json!({ "width": width, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": width < 500 });
        self.call(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(json!({ "cmd": "Emulation.setDeviceMetricsOverride", "params": params })),
        )
        .await;
    }

    async fn screenshot(&self, name: &str) {
        let png = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), bytes).unwrap();
    }

    /// Polls `script` until it returns `true` (10 s at most).
    async fn wait_for(&self, what: &str, script: &str) {
        let started = Instant::now();
        while self.eval(script, json!([])).await != Value::Bool(true) {
            assert!(started.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn login(&self, base: &str, token: &str) {
        self.goto(&format!("{base}/login")).await;
        self.eval(
            "document.getElementById('token').value = arguments[0]; document.querySelector('form[action=\"/login\"]').submit(); return true;",
            json!([token]),
        )
        .await;
        self.wait_for(
            "the board after login",
            "return location.pathname === '/' && document.readyState === 'complete';",
        )
        .await;
    }
}

/// A test that fails before it ends leaves no Chromium or chromedriver running: the session is
/// deleted (chromedriver then closes Chromium) by a plain blocking request, then the driver's
/// process group is killed.
impl Drop for Browser {
    fn drop(&mut self) {
        use std::io::{Read as _, Write as _};
        let address = self.base.trim_start_matches("http://").to_string();
        if let Ok(mut stream) = std::net::TcpStream::connect(&address) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session
            );
            // chromedriver answers once Chromium is closed: the first bytes of the answer will do.
            if stream.write_all(request.as_bytes()).is_ok() {
                let _ = stream.read(&mut [0u8; 512]);
            }
        }
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
        let _ = self.driver.wait();
    }
}

/// Tasks on the board: several stages' worth of tickets, long titles, one parked for approval.
async fn seeded() -> (Harness, String) {
    let h = Harness::new().await;
    for title in [
        "Add a multiply function",
        "Add a safe divide function; dividing by zero must fail with a clear error, not a crash",
        "Averyveryverylongtitlewithoutanyspacesatalltotestthatnothingoverflowsthepageatthreehundredninetypixels",
        "Add a power function",
    ] {
        h.create(title).await;
    }
    let parked = h.create("Add a modulo function with tests").await;
    let parked = h.park_for_approval(&parked).await;
    (h, parked.work_item_id)
}

// Board, task, usage and system pages at 1280, 768 and 390 px: the document is never wider than
// the viewport, and the task page shows the rendered analysis (raw HTML in it inert).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_fit_every_width_in_chromium() {
    let (h, id) = seeded().await;
    let served = Served::start(h.state(DashboardMode::On, false)).await;
    let browser = Browser::start().await;
    browser.login(&served.base, &h.act_token).await;
    let pages = [
        ("board", "/".to_string()),
        ("task", format!("/tasks/{id}")),
        ("usage", "/usage".into()),
        ("system", "/system".into()),
    ];
    for width in WIDTHS {
        browser.width(width).await;
        for (name, path) in &pages {
            browser.goto(&format!("{}{path}", served.base)).await;
            let fit = browser.eval(MEASURE_FIT, json!([width])).await;
            let (scroll, inner) = (fit[0].as_i64().unwrap(), fit[1].as_i64().unwrap());
            assert_eq!(
                inner,
                i64::from(width),
                "{name} at {width}px: the viewport is {width} px wide (a phone's widens to fit wider content); \
                 elements past the edge, stylesheet rules applied and document state: {}",
                fit[2]
            );
            assert!(
                scroll <= inner,
                "{name} at {width}px: the page is {scroll}px wide, wider than {inner}px; elements past the edge, \
                 stylesheet rules applied and document state: {}",
                fit[2]
            );
            browser.screenshot(&format!("{name}-{width}")).await;
        }
    }
    browser.width(1280).await;
    browser.goto(&format!("{}/tasks/{id}", served.base)).await;
    let heading = browser.eval("return document.querySelector('.markdown h1').textContent;", json!([])).await;
    assert_eq!(heading, "Analysis of the multiply ticket");
    let shown = browser.eval("return document.querySelector('.markdown').innerText;", json!([])).await;
    assert!(shown.as_str().unwrap().contains("<script>window.__pwned = 1</script>"), "raw HTML shows as text: {shown}");
    let pwned = browser.eval("return window.__pwned === undefined && document.querySelectorAll('.markdown script, .markdown img').length === 0;", json!([])).await;
    assert_eq!(pwned, Value::Bool(true), "nothing from the artifact ran or became an element");
    drop(browser);
    served.shutdown().await;
}

// A logged-in act session clicks Approve: the task page shows the next stage without a page load.
// The board open in the browser moves another task's card when it is approved elsewhere. A
// read-scope session then sees the task page with no action buttons.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_moves_the_task_live_and_read_sessions_see_no_buttons() {
    let (h, id) = seeded().await;
    let other = h.create("Add an absolute value function").await;
    let other = h.park_for_approval(&other).await;
    let served = Served::start(h.state(DashboardMode::On, false)).await;
    let browser = Browser::start().await;
    browser.login(&served.base, &h.act_token).await;

    browser.goto(&format!("{}/tasks/{id}", served.base)).await;
    browser.wait_for("the live stream", "return document.getElementById('live-dot').classList.contains('on');").await;
    browser.eval("window.__samePage = 'yes'; return true;", json!([])).await;
    let button = browser
        .call(
            reqwest::Method::POST,
            "/element",
            Some(json!({ "using": "css selector", "value": "form[data-action=\"approve\"] button" })),
        )
        .await;
    let element = button.as_object().unwrap().values().next().unwrap().as_str().unwrap().to_string();
    browser.call(reqwest::Method::POST, &format!("/element/{element}/click"), Some(json!({}))).await;
    browser
        .wait_for(
            "the task page to show architecture",
            "return document.getElementById('task-stage').textContent === 'architecture';",
        )
        .await;
    assert_eq!(browser.eval("return window.__samePage;", json!([])).await, "yes", "no page load happened");
    assert_eq!(h.task(&id).await.state.stage, "architecture");
    browser.screenshot("task-approved-1280").await;

    browser.goto(&format!("{}/", served.base)).await;
    browser.wait_for("the live stream", "return document.getElementById('live-dot').classList.contains('on');").await;
    browser.eval("window.__samePage = 'board'; return true;", json!([])).await;
    let card = format!(".column[data-stage=\"architecture\"] [data-task=\"{}\"]", other.work_item_id);
    assert_eq!(browser.eval("return document.querySelector(arguments[0]) === null;", json!([card])).await, true);
    h.engine.submit(&baton_store::TaskKey::parse(&other.work_item_id), Input::Approve, "cli:test", None).await.unwrap();
    browser
        .wait_for(
            "the card in the architecture column",
            &format!("return document.querySelector('{}') !== null;", card.replace('\'', "\\'")),
        )
        .await;
    assert_eq!(browser.eval("return window.__samePage;", json!([])).await, "board", "the board changed in place");
    drop(browser);

    let reader = Browser::start().await;
    reader.login(&served.base, &h.read_token).await;
    let parked = h.create("Add a gcd function").await;
    let parked = h.park_for_approval(&parked).await;
    reader.goto(&format!("{}/tasks/{}", served.base, parked.work_item_id)).await;
    let seen = reader
        .eval("return [document.querySelectorAll('form.action, form[data-action]').length, document.body.innerText.includes('awaiting approval')];", json!([]))
        .await;
    assert_eq!(seen, json!([0, true]), "a read session sees the held task and no action buttons");
    drop(reader);
    served.shutdown().await;
}
