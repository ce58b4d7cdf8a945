//! Usage ingest and economics end to end, against a real `baton serve` on 127.0.0.1: an `ingest`
//! token reports spend (201, a replay 200 with no double count), other scopes are refused, bad
//! bodies are refused naming the field, records are priced from the built-in table and a user's
//! pricing file, categories are mapped at read time, the fail-open Python client of
//! docs/usage.md works (and fails open), unit economics follow tasks through the pipeline, and
//! `budget show` forecasts the day.

use crate::support::{COMMON_STEPS, Env, Server, all_done};
use baton_domain::{PriceTable, Usage};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

const PRICES: &str = "version = \"acme-1\"\neffective_date = \"2020-01-01\"\n\n[units]\naudio_minute = 0.006\n\n\
                      [[model]]\nid = \"house-model\"\ninput = 2\noutput = 8\ncache_read = 0.2\ncache_write = 2\n";

const SECTIONS: &str = "[usage.categories]\n\"source:transcriber\" = \"audio\"\n\"tts\" = \"audio-out\"\n\
                        \"agent:*\" = \"engineering\"\n\n[pricing]\nfile = \"prices.toml\"\n\n\
                        [budgets]\nglobal_daily_usd = 50.0\n";

/// One HTTP/1.1 request; returns (status, JSON body).
fn http(addr: &str, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let status = reply[9..12].parse().unwrap();
    let (head, rest) = reply.split_once("\r\n\r\n").unwrap();
    // Chunked bodies: take the JSON between the first `{`/`[` and the last `}`/`]`.
    let text = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let start = rest.find(['{', '[']).unwrap_or(0);
        let end = rest.rfind(['}', ']']).map_or(rest.len(), |e| e + 1);
        &rest[start..end]
    } else {
        rest
    };
    (status, serde_json::from_str(text).unwrap_or(Value::Null))
}

fn ingest(addr: &str, token: &str, record: Value) -> (u16, Value) {
    http(addr, "POST", "/api/usage/ingest", Some(token), &record.to_string())
}

fn token(env: &Env, name: &str, scope: &str) -> String {
    env.json(&["token", "create", name, "--scope", scope])["token"].as_str().unwrap().to_string()
}

fn row<'a>(report: &'a Value, key: &str) -> &'a Value {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == key)
        .unwrap_or_else(|| panic!("no row {key}: {report:#}"))
}

fn close(actual: &Value, expected: f64) {
    let actual = actual.as_f64().unwrap_or_else(|| panic!("not a number: {actual}"));
    assert!((actual - expected).abs() < 1e-9, "{actual} != {expected}");
}

/// The Python client of docs/usage.md, as the document shows it.
fn python_client() -> String {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/usage.md")).unwrap();
    let block = doc.split("```python\n").nth(1).unwrap().split("```").next().unwrap();
    assert!(block.lines().count() <= 25, "the client stays short: {block}");
    block.to_string()
}

fn start(env: &Env) -> (Server, String) {
    let server = env.serve(1);
    let addr = crate::support::served_address(&env.root.join("serve-1.log"));
    (server, addr)
}

// An ingest token reports usage (201), a replay returns the first record (200) and counts once,
// read tokens and no token are refused, bad bodies are refused naming the field, costs come from
// the built-in table and the user's pricing file, an unknown model is kept unpriced with a warning,
// and `baton usage --by category|source|unit_kind` shows the mapped categories and $ per unit.
#[test]
fn ingest_prices_deduplicates_refuses_and_maps_categories() {
    let env = Env::with_config("", "", SECTIONS);
    std::fs::write(env.root.join("prices.toml"), PRICES).unwrap();
    let ingester = token(&env, "tts", "ingest");
    let reader = token(&env, "dash", "read");
    let (_server, addr) = start(&env);

    let narrator = json!({"source": "narrator", "category": "tts", "model": "gemini-2.5-pro-preview-tts",
        "input_tokens": 100, "output_tokens": 1500, "units": 1, "unit_kind": "tts_minute",
        "idempotency_key": "n-1", "repo": "demo"});
    let (status, first) = ingest(&addr, &ingester, narrator.clone());
    assert_eq!(status, 201, "{first}");
    let usage = Usage { input_tokens: 100, output_tokens: 1500, ..Usage::default() };
    let table_usd = PriceTable::embedded().cost_usd("gemini-2.5-pro-preview-tts", &usage).unwrap().usd;
    close(&first["record"]["cost_usd"], table_usd);
    assert_eq!(
        (first["record"]["priced_by"].as_str(), first["record"]["principal"].as_str()),
        (Some("table"), Some("api:tts"))
    );
    let (status, replay) = ingest(&addr, &ingester, narrator);
    assert_eq!((status, &replay["created"], &replay["record"]["id"]), (200, &json!(false), &first["record"]["id"]));

    let (status, minutes) = ingest(
        &addr,
        &ingester,
        json!({"source": "transcriber", "category": "speech",
        "units": 10, "unit_kind": "audio_minute", "idempotency_key": "t-1"}),
    );
    assert_eq!(status, 201, "{minutes}");
    close(&minutes["record"]["cost_usd"], 10.0 * 0.006);
    let (_, house) =
        ingest(&addr, &ingester, json!({"source": "crm", "model": "house-model", "input_tokens": 1_000_000}));
    close(&house["record"]["cost_usd"], 2.0);
    let (status, unknown) =
        ingest(&addr, &ingester, json!({"source": "crm", "model": "mystery-9", "input_tokens": 10}));
    assert_eq!(
        (status, &unknown["record"]["priced_by"], &unknown["record"]["cost_usd"]),
        (201, &json!("none"), &Value::Null)
    );
    assert!(unknown["warnings"].to_string().contains("mystery-9"), "{unknown}");

    // Other scopes and no token are refused; nothing is stored by them.
    let (status, body) = ingest(&addr, &reader, json!({"source": "x", "cost_usd": 1}));
    assert_eq!(status, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("ingest"), "{body}");
    assert_eq!(http(&addr, "POST", "/api/usage/ingest", None, "{\"source\":\"x\",\"cost_usd\":1}").0, 401);
    // The ingest token reads nothing else.
    assert_eq!(http(&addr, "POST", "/api/tasks", Some(&ingester), "{\"repo\":\"demo\",\"title\":\"x\"}").0, 403);

    for (body, field) in [
        ("{\"source\": \"x\", \"input_tokens\": -1}", "input_tokens"),
        ("{\"source\": \"x\", \"cost_usd\": 1, \"colour\": \"red\"}", "colour"),
        ("{\"cost_usd\": 1}", "source"),
        ("{\"source\": \"x\", \"units\": 2}", "unit_kind"),
        ("{\"source\": \"x\", \"cost_usd\": 1, \"repo\": \"nope\"}", "repo"),
        ("{\"source\": \"x\", \"cost_usd\": 1, \"task\": \"DEMO-999\"}", "task"),
        ("not json", "JSON"),
    ] {
        let (status, reply) = http(&addr, "POST", "/api/usage/ingest", Some(&ingester), body);
        assert_eq!(status, 400, "{body}: {reply}");
        assert!(reply["message"].as_str().unwrap().contains(field), "{body}: {reply}");
    }

    // The Python client of the docs stores a record, and fails open (False, no exception) on a
    // bad token and on a closed port.
    let script = format!(
        "{}\nprint(report_usage({{'source': 'py-client', 'cost_usd': 0.5, 'idempotency_key': 'py-1'}}, url='http://{addr}', token='{ingester}'))\n\
         print(report_usage({{'source': 'py-client', 'cost_usd': 0.5}}, url='http://{addr}', token='wrong'))\n\
         print(report_usage({{'source': 'py-client', 'cost_usd': 0.5}}, url='http://127.0.0.1:9', token='{ingester}', timeout=0.5))\n\
         print(report_usage({{'source': object()}}, url='http://{addr}', token='{ingester}'))\n",
        python_client()
    );
    let out = std::process::Command::new("python3").arg("-c").arg(&script).output().expect("python3 runs");
    assert!(out.status.success(), "the client raised: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>(),
        ["True", "False", "False", "False"]
    );

    // Read side: categories mapped at read time, sources and unit kinds apart, $ per unit.
    let by_category = env.json(&["usage", "--by", "category"]);
    close(&row(&by_category, "audio")["cost_usd"], 0.06);
    assert_eq!(row(&by_category, "audio")["records"], 1);
    close(&row(&by_category, "audio-out")["cost_usd"], table_usd);
    assert_eq!(
        (row(&by_category, "crm")["records"].as_u64(), row(&by_category, "crm")["unpriced"].as_u64()),
        (Some(2), Some(1))
    );
    let text = env.run(&["usage", "--by", "category"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("audio-out") && text.contains("INGESTED") && text.contains("per audio_minute"), "{text}");
    let by_source = env.json(&["usage", "--by", "source"]);
    assert_eq!(row(&by_source, "narrator")["records"], 1, "the replay counted once");
    close(&row(&by_source, "py-client")["cost_usd"], 0.5);
    let by_unit = env.json(&["usage", "--by", "unit_kind"]);
    let per_unit = by_unit["unit_economics"]["per_unit"].as_array().unwrap();
    let per = |kind: &str| per_unit.iter().find(|u| u["unit_kind"] == kind).unwrap()["usd_per_unit"].clone();
    close(&per("audio_minute"), 0.006);
    close(&per("tts_minute"), table_usd);
    assert_eq!(by_unit["pricing_version"], "2026-11-01+acme-1");
    // The API says the same (reads are open here).
    let (status, api) = http(&addr, "GET", "/api/usage?by=category", None, "");
    assert_eq!(status, 200);
    assert_eq!(api["rows"], by_category["rows"]);
}

// Two tasks go through the whole pipeline with scripted costs, one with ingested spend linked to
// it: $ per merged task, $ per stage and the engineering category come out right; `budget show`
// counts the ingested spend toward the repository and forecasts the day at the current rate.
#[test]
fn unit_economics_follow_tasks_to_done_and_budgets_forecast_the_day() {
    let costs =
        [("analysis", 0.01), ("architecture", 0.02), ("development", 0.04), ("review", 0.02), ("testing", 0.01)];
    let mut script = COMMON_STEPS.to_string();
    for (stage, cost) in costs {
        let step = format!("[[task.step]]\nstage = \"{stage}\"\n");
        script = script.replacen(&step, &format!("{step}cost_usd = {cost}\n"), 1);
    }
    let env = Env::with_config(&script, "", SECTIONS);
    std::fs::write(env.root.join("prices.toml"), PRICES).unwrap();
    let (_server, addr) = start(&env);
    env.add_task("First feature");
    env.add_task("Second feature");
    env.drive(Duration::from_secs(240), |tasks| tasks.len() == 2 && all_done(tasks));

    // `test-token` is server.api_token (admin), which may ingest too.
    let (status, linked) =
        ingest(&addr, "test-token", json!({"source": "ci-review", "cost_usd": 0.05, "task": "DEMO-001"}));
    assert_eq!((status, &linked["record"]["repo"]), (201, &json!("demo")), "{linked}");
    let (status, _) = ingest(&addr, "test-token", json!({"source": "notes", "cost_usd": 7.0}));
    assert_eq!(status, 201);

    let by_stage = env.json(&["usage", "--by", "stage"]);
    let economics = &by_stage["unit_economics"];
    assert_eq!(economics["per_merged_task"]["done_tasks"], 2);
    close(&economics["per_merged_task"]["usd_per_task"], (2.0 * 0.10 + 0.05) / 2.0);
    let development = economics["per_stage"].as_array().unwrap().iter().find(|s| s["stage"] == "development").unwrap();
    assert_eq!(development["tasks"], 2);
    close(&development["usd_per_task"], 0.04);
    close(&row(&by_stage, "(ingested)")["cost_usd"], 7.05);
    let by_category = env.json(&["usage", "--by", "category"]);
    assert_eq!(row(&by_category, "engineering")["runs"], 10);
    close(&row(&by_category, "engineering")["cost_usd"], 0.20);

    let budget = env.json(&["budget", "show"]);
    let scope = |name: &str| budget["spend"].as_array().unwrap().iter().find(|s| s["scope"] == name).unwrap().clone();
    let global = scope("global");
    // The unlinked $7 has no repository: it counts toward no cap.
    close(&global["spent_usd"], 0.25);
    close(&scope("repo:demo")["spent_usd"], 0.25);
    close(&global["ratio"], 0.25 / 50.0);
    let hours = budget["forecast"]["elapsed_hours"].as_f64().unwrap();
    assert!((1.0..=24.0).contains(&hours), "{hours}");
    close(&global["forecast_usd"], 0.25 * 24.0 / hours);
    assert!(budget["forecast"]["method"].as_str().unwrap().contains("× 24 h"));
    let (status, api) = http(&addr, "GET", "/api/budgets", None, "");
    assert_eq!(status, 200);
    close(&api["caps"][0]["spent_usd"], 0.25);
    let text = String::from_utf8_lossy(&env.run(&["budget", "show"]).stdout).to_string();
    assert!(text.contains("FORECAST TODAY") && text.contains("forecast:"), "{text}");
}

// A bad pricing file fails `baton config check` with the file's line and field; a bad category key
// is named too; a good file passes.
#[test]
fn config_check_names_the_line_of_a_bad_pricing_file() {
    let env = Env::with_config("", "", SECTIONS);
    std::fs::write(env.root.join("prices.toml"), PRICES.replace("output = 8", "output = -8")).unwrap();
    let out = env.run(&["config", "check"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("pricing.file") && stderr.contains("(line 10)") && stderr.contains("`output`"), "{stderr}");
    std::fs::write(env.root.join("prices.toml"), PRICES).unwrap();
    assert!(env.run(&["config", "check"]).status.success());
    let bad_map = Env::with_config("", "", "[usage.categories]\n\"agent:\" = \"x\"\n");
    let out = bad_map.run(&["config", "check"]);
    let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && text.contains("usage.categories"), "{text}");
}
