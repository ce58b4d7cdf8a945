//! Tests of the pricing table (SPEC §9; integrations.md §6): the embedded file parses, every id resolves to
//! its own row whatever the entry order, the prefix-match pitfalls are pinned, costs match real CLI totals,
//! and a bad override file is rejected with an error naming the entry and field.
#![allow(clippy::unwrap_used)]

use baton_domain::pricing::normalize_model_id;
use baton_domain::{MatchKind, PriceTable, PriceTier, PricingError, Usage};

/// Renders how each query resolves: `query → id (how) in/out`, or `query → unpriced`.
fn resolve_all(table: &PriceTable, queries: &[&str]) -> String {
    let mut out = String::new();
    for query in queries {
        let line = match table.lookup(query) {
            Some(found) => format!(
                "{query} → {} ({:?}) {}/{}",
                found.entry.id, found.how, found.entry.base.input_usd_per_mtok, found.entry.base.output_usd_per_mtok
            ),
            None => format!("{query} → unpriced"),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn usage(input: u64, output: u64, cache_read: u64, cache_write: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        cache_read_tokens: cache_read,
        cache_write_tokens: cache_write,
        reasoning_tokens: 0,
    }
}

fn assert_usd(actual: f64, expected: f64) {
    assert!((actual - expected).abs() < 1e-12, "cost {actual} USD, expected {expected} USD");
}

/// Every id integrations.md §6 names (plus the family ids and TTS rows) that the embedded table must price.
const REQUIRED_IDS: [&str; 31] = [
    "claude-opus-4",
    "claude-opus-4-0",
    "claude-opus-4-1",
    "claude-opus-4-5",
    "claude-opus-4-6",
    "claude-opus-4-7",
    "claude-opus-4-8",
    "claude-sonnet-4",
    "claude-sonnet-4-0",
    "claude-sonnet-4-5",
    "claude-sonnet-4-6",
    "claude-sonnet-5",
    "claude-haiku-4-5",
    "claude-3-5-haiku",
    "gpt-5",
    "gpt-5-codex",
    "gpt-5.1",
    "gpt-5.1-codex",
    "gpt-5-mini",
    "gpt-5.1-codex-mini",
    "gpt-5-nano",
    "gpt-5.2",
    "gpt-5.2-codex",
    "gpt-5.3-codex",
    "gpt-5.4",
    "gpt-5.5",
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "gemini-2.5-pro-preview-tts",
    "gemini-2.5-flash-preview-tts",
];

// The embedded file parses, carries its version and effective date, and prices every required id exactly.
#[test]
fn embedded_table_parses_and_covers_every_required_id() {
    let table = PriceTable::embedded();
    assert_eq!(table.version, "2026-11-01");
    assert_eq!(table.effective_date, "2026-11-01");
    for id in REQUIRED_IDS {
        let found = table.lookup(id).unwrap_or_else(|| panic!("{id} is unpriced"));
        assert_eq!((found.entry.id.as_str(), found.how), (id, MatchKind::Exact));
    }
    assert!(std::ptr::eq(table, PriceTable::embedded()), "parsed once and shared");
}

// Entry order never changes a lookup: reversed, rotated and sorted copies resolve every id to itself.
#[test]
fn order_of_entries_does_not_matter() {
    let original = PriceTable::embedded();
    let pitfalls = [
        "claude-opus-4-5-20251101",
        "claude-sonnet-4-5-experimental-x",
        "gpt-5-mini-preview",
        "gemini-2.5-flash-lite-preview-06-17",
        "gemini-2.5-pro-preview-tts-x",
    ];
    let expected = resolve_all(original, &pitfalls);
    let mut orders: Vec<Vec<_>> = Vec::new();
    orders.push(original.models.iter().rev().cloned().collect());
    for shift in [1, 7, 13] {
        let mut rotated = original.models.clone();
        rotated.rotate_left(shift);
        orders.push(rotated);
    }
    let mut by_length = original.models.clone();
    by_length.sort_by_key(|m| m.id.len()); // shortest (most generic) first: the first-match trap
    orders.push(by_length);
    for models in orders {
        let table = PriceTable { models, ..original.clone() };
        for entry in &original.models {
            let found = table.lookup(&entry.id).unwrap();
            assert_eq!((found.entry, found.how), (entry, MatchKind::Exact));
        }
        assert_eq!(resolve_all(&table, &pitfalls), expected);
    }
}

// Ids that start with another model's id resolve to their own price, never the shorter id's.
#[test]
fn prefix_pitfalls_resolve_to_their_own_rows() {
    insta::assert_snapshot!(resolve_all(PriceTable::embedded(), &[
        "claude-opus-4",
        "claude-opus-4-5",
        "claude-opus-4-5-20251101",
        "claude-opus-4-1",
        "gpt-5",
        "gpt-5-mini",
        "gpt-5-nano",
        "gpt-5.2",
        "gpt-5.2-codex",
        "gemini-2.5-flash",
        "gemini-2.5-flash-lite",
        "gemini-2.5-pro-preview-tts",
    ]), @r"
    claude-opus-4 → claude-opus-4 (Exact) 15/75
    claude-opus-4-5 → claude-opus-4-5 (Exact) 5/25
    claude-opus-4-5-20251101 → claude-opus-4-5 (Normalized) 5/25
    claude-opus-4-1 → claude-opus-4-1 (Exact) 15/75
    gpt-5 → gpt-5 (Exact) 1.25/10
    gpt-5-mini → gpt-5-mini (Exact) 0.25/2
    gpt-5-nano → gpt-5-nano (Exact) 0.05/0.4
    gpt-5.2 → gpt-5.2 (Exact) 1.75/14
    gpt-5.2-codex → gpt-5.2-codex (Exact) 1.75/14
    gemini-2.5-flash → gemini-2.5-flash (Exact) 0.3/2.5
    gemini-2.5-flash-lite → gemini-2.5-flash-lite (Exact) 0.1/0.4
    gemini-2.5-pro-preview-tts → gemini-2.5-pro-preview-tts (Exact) 1/20
    ");
}

// Dated snapshots, provider prefixes, Bedrock/Vertex forms, bracket suffixes and case normalize to the table id.
#[test]
fn provider_forms_normalize_to_the_table_id() {
    insta::assert_snapshot!(resolve_all(PriceTable::embedded(), &[
        "claude-sonnet-4-5-20250929",
        "anthropic/claude-haiku-4-5",
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "eu.anthropic.claude-opus-4-5-20251101-v1:0",
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        "claude-sonnet-4-5@20250929",
        "claude-opus-4-7@latest",
        "claude-sonnet-4-5[1m]",
        "Claude-Opus-4-5",
        "openai/gpt-5-mini",
        "gpt-5-mini-2025-08-07",
        "google/gemini-2.5-pro",
        "models/gemini-2.5-flash-lite",
    ]), @r"
    claude-sonnet-4-5-20250929 → claude-sonnet-4-5 (Normalized) 3/15
    anthropic/claude-haiku-4-5 → claude-haiku-4-5 (Normalized) 1/5
    us.anthropic.claude-sonnet-4-5-20250929-v1:0 → claude-sonnet-4-5 (Normalized) 3/15
    eu.anthropic.claude-opus-4-5-20251101-v1:0 → claude-opus-4-5 (Normalized) 5/25
    anthropic.claude-3-5-haiku-20241022-v1:0 → claude-3-5-haiku (Normalized) 0.8/4
    claude-sonnet-4-5@20250929 → claude-sonnet-4-5 (Normalized) 3/15
    claude-opus-4-7@latest → claude-opus-4-7 (Normalized) 5/25
    claude-sonnet-4-5[1m] → claude-sonnet-4-5 (Normalized) 3/15
    Claude-Opus-4-5 → claude-opus-4-5 (Normalized) 5/25
    openai/gpt-5-mini → gpt-5-mini (Normalized) 0.25/2
    gpt-5-mini-2025-08-07 → gpt-5-mini (Normalized) 0.25/2
    google/gemini-2.5-pro → gemini-2.5-pro (Normalized) 1.25/10
    models/gemini-2.5-flash-lite → gemini-2.5-flash-lite (Normalized) 0.1/0.4
    ");
    assert_eq!(normalize_model_id(" US.Anthropic.Claude-Sonnet-4-5-20250929-V1:0 "), "claude-sonnet-4-5");
}

// The fallback takes the LONGEST table id that ends at a separator, and says it guessed.
#[test]
fn unknown_variants_fall_back_to_the_longest_bounded_prefix() {
    insta::assert_snapshot!(resolve_all(PriceTable::embedded(), &[
        "claude-sonnet-4-5-experimental-x",
        "claude-opus-4-5-fast",
        "anthropic/claude-opus-4-1-preview",
        "gpt-5-mini-preview",
        "gpt-5.2-codex-max",
        "gemini-2.5-flash-lite-preview-06-17",
        "gemini-2.5-pro-preview-tts-x",
        "gemini-2.5-pro:experimental",
    ]), @r"
    claude-sonnet-4-5-experimental-x → claude-sonnet-4-5 (Prefix) 3/15
    claude-opus-4-5-fast → claude-opus-4-5 (Prefix) 5/25
    anthropic/claude-opus-4-1-preview → claude-opus-4-1 (Prefix) 15/75
    gpt-5-mini-preview → gpt-5-mini (Prefix) 0.25/2
    gpt-5.2-codex-max → gpt-5.2-codex (Prefix) 1.75/14
    gemini-2.5-flash-lite-preview-06-17 → gemini-2.5-flash-lite (Prefix) 0.1/0.4
    gemini-2.5-pro-preview-tts-x → gemini-2.5-pro-preview-tts (Prefix) 1/20
    gemini-2.5-pro:experimental → gemini-2.5-pro (Prefix) 1.25/10
    ");
}

// A prefix counts only when a separator follows it, and an unknown model is unpriced, never $0.
#[test]
fn non_separator_prefixes_and_unknown_models_are_unpriced() {
    // The CLIs' placeholder model names (claude's `<synthetic>` on an API error, gemini's `auto`
    // aliases) match no row: the adapters never record them, and the lookup is not fooled either.
    let table = PriceTable::embedded();
    insta::assert_snapshot!(resolve_all(table, &[
        "gpt-50",
        "gpt-5x",
        "claude-opus-45",
        "gemini-2.5-proto",
        "mystery-model",
        "",
        "<synthetic>",
        "auto",
        "auto-gemini-3",
    ]), @r"
    gpt-50 → unpriced
    gpt-5x → unpriced
    claude-opus-45 → unpriced
    gemini-2.5-proto → unpriced
    mystery-model → unpriced
     → unpriced
    <synthetic> → unpriced
    auto → unpriced
    auto-gemini-3 → unpriced
    ");
    assert_eq!(table.cost_usd("mystery-model", &usage(1000, 1000, 0, 0)), None);
    // Odd input (non-ASCII, bare suffixes) never panics in normalization.
    for odd in ["é", "ü-12345678", "模型-2025-01-01", "模型@latest", "[1m]", "-v1:0", "@20250101", "gpt-5-ü"] {
        assert!(table.lookup(odd).is_none() || odd == "gpt-5-ü", "{odd}");
    }
}

// The Claude CLI sample (claude_json.json: 2200 in, 70 out, 300 cache read, 850 cache write) costs
// exactly the CLI's own total_cost_usd of 0.0109275, stamped with the table version.
#[test]
fn claude_sample_matches_the_cli_total() {
    let table = PriceTable::embedded();
    let cost = table.cost_usd("claude-sonnet-4-5", &usage(2200, 70, 300, 850)).unwrap();
    assert_usd(cost.usd, 0.0109275);
    assert_eq!(
        (cost.matched_id.as_str(), cost.how, cost.tier, cost.version.as_str(), cost.effective_date.as_str()),
        ("claude-sonnet-4-5", MatchKind::Exact, PriceTier::Base, "2026-11-01", "2026-11-01")
    );
    let dated = table.cost_usd("claude-sonnet-4-5-20250929", &usage(2200, 70, 300, 850)).unwrap();
    assert_usd(dated.usd, 0.0109275);
    assert_eq!(dated.how, MatchKind::Normalized);
}

// Reasoning tokens are a breakdown inside output_tokens and are not billed twice (Codex sample:
// 1200 input incl. 1000 cached, 300 output incl. 100 reasoning).
#[test]
fn reasoning_tokens_are_not_billed_twice() {
    let codex = Usage { reasoning_tokens: 100, ..usage(200, 300, 1000, 0) };
    let cost = PriceTable::embedded().cost_usd("gpt-5", &codex).unwrap();
    assert_usd(cost.usd, (200.0 * 1.25 + 1000.0 * 0.125 + 300.0 * 10.0) / 1e6);
}

// OpenAI and Gemini bill written cache tokens as plain input, so moving tokens between the input and
// cache-write buckets does not change their cost.
#[test]
fn openai_and_gemini_cache_writes_cost_the_same_as_input() {
    let table = PriceTable::embedded();
    for model in ["gpt-5", "gpt-5-mini", "gpt-5.2-codex", "gemini-2.5-pro", "gemini-2.5-flash"] {
        let as_input = table.cost_usd(model, &usage(1000, 10, 0, 0)).unwrap().usd;
        let as_write = table.cost_usd(model, &usage(400, 10, 0, 600)).unwrap().usd;
        assert_usd(as_write, as_input);
    }
}

// A gemini-2.5-pro request whose prompt (input + cached) exceeds 200K tokens is priced at the higher tier;
// at exactly 200K it is not.
#[test]
fn long_context_requests_use_the_higher_tier() {
    let table = PriceTable::embedded();
    let at_threshold = table.cost_usd("gemini-2.5-pro", &usage(200_000, 1_000, 0, 0)).unwrap();
    assert_eq!(at_threshold.tier, PriceTier::Base);
    assert_usd(at_threshold.usd, 200_000.0 * 1.25 / 1e6 + 1_000.0 * 10.0 / 1e6);

    let long = table.cost_usd("gemini-2.5-pro", &usage(150_000, 1_000, 60_000, 0)).unwrap();
    assert_eq!(long.tier, PriceTier::LongContext);
    assert_usd(long.usd, (150_000.0 * 2.5 + 1_000.0 * 15.0 + 60_000.0 * 0.25) / 1e6);

    let sonnet =
        table.cost_usd("us.anthropic.claude-sonnet-4-5-20250929-v1:0", &usage(190_000, 2_000, 0, 20_000)).unwrap();
    assert_eq!(sonnet.tier, PriceTier::LongContext);
    assert_usd(sonnet.usd, (190_000.0 * 6.0 + 2_000.0 * 22.5 + 20_000.0 * 7.5) / 1e6);

    let opus = table.cost_usd("claude-opus-4-5", &usage(500_000, 0, 0, 0)).unwrap();
    assert_eq!(opus.tier, PriceTier::Base, "models without a tier never switch");
}

// Regression for seed H4: '…pro-preview-tts' starts with 'gemini-2.5-pro' yet keeps its own audio price;
// 100 text tokens in and 1500 audio tokens out cost $0.0301, as in the AI-usage-funnel run.
#[test]
fn tts_model_is_not_priced_as_its_prefix() {
    let cost = PriceTable::embedded().cost_usd("gemini-2.5-pro-preview-tts", &usage(100, 1500, 0, 0)).unwrap();
    assert_eq!(cost.matched_id, "gemini-2.5-pro-preview-tts");
    assert_usd(cost.usd, 0.0301);
}

const VALID_OVERRIDE: &str = r#"
version = "acme-3"
effective_date = 2026-12-01

[[model]]
id = "house-model"
input = 2
output = 8
cache_read = 0.2
cache_write = 2
long_context_threshold_tokens = 100000
input_long = 4
output_long = 16
cache_read_long = 0.4
cache_write_long = 4
notes = "in-house"

[model.units]
audio_minute = 0.03
"#;

// An override file with integer prices, a bare TOML date, a long-context tier and unit prices parses.
#[test]
fn override_file_parses() {
    let table = PriceTable::from_toml(VALID_OVERRIDE).unwrap();
    assert_eq!((table.version.as_str(), table.effective_date.as_str()), ("acme-3", "2026-12-01"));
    let model = &table.models[0];
    assert_eq!(model.units_usd.get("audio_minute"), Some(&0.03));
    assert_eq!(model.long_context.unwrap().threshold_tokens, 100_000);
    assert_eq!(model.notes.as_deref(), Some("in-house"));
    assert_usd(table.cost_usd("house-model", &usage(50_000, 0, 0, 0)).unwrap().usd, 0.1);
    assert_usd(table.cost_usd("house-model", &usage(150_000, 0, 0, 0)).unwrap().usd, 0.6);
}

/// The override text with one line replaced (or, with an empty `from`, one line appended).
fn broken(from: &str, to: &str) -> String {
    if from.is_empty() {
        return format!("{VALID_OVERRIDE}{to}\n");
    }
    assert!(VALID_OVERRIDE.contains(from), "{from}");
    VALID_OVERRIDE.replacen(from, to, 1)
}

// A bad override file is rejected with a message naming the entry and the offending field.
#[test]
fn override_errors_name_the_entry_and_field() {
    let cases = [
        broken("input = 2\n", "input = \"cheap\"\n"),
        broken("output = 8\n", "output = -8\n"),
        broken("input = 2\n", "inptu = 2\n"),
        broken("cache_read = 0.2\n", ""),
        broken("cache_write_long = 4\n", ""),
        broken("long_context_threshold_tokens = 100000\n", ""),
        broken("audio_minute = 0.03", "audio_minute = \"cheap\""),
        broken("id = \"house-model\"", "id = \"House-Model\""),
        broken("effective_date = 2026-12-01", "effective_date = \"December\""),
        broken("version = \"acme-3\"\n", ""),
        broken("", "[[model]]\nid = \"house-model\"\ninput = 1\noutput = 1\ncache_read = 1\ncache_write = 1"),
        broken("", "[[model]]\nid = \"other\"\ninput = nan\noutput = 1\ncache_read = 1\ncache_write = 1"),
        "version = \"x\"\neffective_date = \"2026-01-01\"\nmodel = []\n".to_owned(),
        "version = \n".to_owned(),
    ];
    let rendered: Vec<String> = cases.iter().map(|text| PriceTable::from_toml(text).unwrap_err().to_string()).collect();
    insta::assert_snapshot!(rendered[..12].join("\n"), @r#"
    pricing file, model "house-model" (entry 1): field `input` must be a number of USD, found string
    pricing file, model "house-model" (entry 1): field `output` must be a finite price of 0 or more, found -8
    pricing file, model "house-model" (entry 1): field `inptu` is not a known field (known: id, input, output, cache_read, cache_write, cache_write_1h, long_context_threshold_tokens, input_long, output_long, cache_read_long, cache_write_long, units, notes)
    pricing file, model "house-model" (entry 1): field `cache_read` is required
    pricing file, model "house-model" (entry 1): field `cache_write_long` is required when long_context_threshold_tokens is set
    pricing file, model "house-model" (entry 1): field `input_long` needs long_context_threshold_tokens to be set
    pricing file, model "house-model" (entry 1): field `units.audio_minute` must be a number of USD, found string
    pricing file, model entry 1: field `id` must be lowercase without spaces (lookups lowercase), found "House-Model"
    pricing file, the top level: field `effective_date` must be a date YYYY-MM-DD, found "December"
    pricing file, the top level: field `version` is required
    pricing file: model id "house-model" appears more than once; keep one entry per id
    pricing file, model "other" (entry 2): field `input` must be a finite price of 0 or more, found NaN
    "#);
    assert_eq!(
        PriceTable::from_toml(&cases[12]).unwrap_err(),
        PricingError::Field {
            entry: "the top level".to_owned(),
            field: "model".to_owned(),
            problem: "needs at least one [[model]] entry".to_owned()
        }
    );
    assert!(matches!(PriceTable::from_toml(&cases[13]).unwrap_err(), PricingError::Syntax { .. }));
}

/// A user's pricing file: one id that is a prefix of built-in ids (`claude-opus-4-5-fast` is not, but
/// `gpt-5.2-codex-max` extends a built-in id), one built-in id overridden, and table-wide unit prices.
const USER_FILE: &str = r#"
version = "acme-7"
effective_date = "2026-12-01"

[units]
audio_minute = 0.006
image = 0.04

[[model]]
id = "gpt-5.2-codex-max"
input = 3
output = 30
cache_read = 0.3
cache_write = 3

[[model]]
id = "claude-sonnet"
input = 9
output = 90
cache_read = 0.9
cache_write = 9

[[model]]
id = "gpt-5-mini"
input = 0.2
output = 1.6
cache_read = 0.02
cache_write = 0.2

[model.units]
audio_minute = 0.003
"#;

// The user's rows override and extend the built-in ones, and lookup stays exact-then-longest-prefix
// across the merged rows: a user id that extends a built-in id and a user id that is a prefix of
// built-in ids each resolve to their own row, never the other's.
#[test]
fn user_file_overrides_and_extends_without_the_prefix_pitfall() {
    let user = PriceTable::from_toml(USER_FILE).unwrap();
    let merged = PriceTable::embedded().overlaid(&user);
    assert_eq!((merged.version.as_str(), merged.effective_date.as_str()), ("2026-11-01+acme-7", "2026-12-01"));
    insta::assert_snapshot!(resolve_all(&merged, &[
        "gpt-5.2-codex-max",
        "gpt-5.2-codex-max-preview",
        "gpt-5.2-codex",
        "gpt-5.2",
        "claude-sonnet",
        "claude-sonnet-4-5",
        "claude-sonnet-4-5-20250929",
        "claude-sonnet-9",
        "gpt-5-mini",
        "gpt-5-mini-2025-08-07",
        "gpt-5",
    ]), @r"
    gpt-5.2-codex-max → gpt-5.2-codex-max (Exact) 3/30
    gpt-5.2-codex-max-preview → gpt-5.2-codex-max (Prefix) 3/30
    gpt-5.2-codex → gpt-5.2-codex (Exact) 1.75/14
    gpt-5.2 → gpt-5.2 (Exact) 1.75/14
    claude-sonnet → claude-sonnet (Exact) 9/90
    claude-sonnet-4-5 → claude-sonnet-4-5 (Exact) 3/15
    claude-sonnet-4-5-20250929 → claude-sonnet-4-5 (Normalized) 3/15
    claude-sonnet-9 → claude-sonnet (Prefix) 9/90
    gpt-5-mini → gpt-5-mini (Exact) 0.2/1.6
    gpt-5-mini-2025-08-07 → gpt-5-mini (Normalized) 0.2/1.6
    gpt-5 → gpt-5 (Exact) 1.25/10
    ");
    // One row per id: the overridden built-in row is gone, the others stay.
    assert_eq!(merged.models.len(), PriceTable::embedded().models.len() + 2);
    // Reversing the merged rows changes nothing.
    let reversed = PriceTable { models: merged.models.iter().rev().cloned().collect(), ..merged.clone() };
    assert_eq!(
        resolve_all(&reversed, &["claude-sonnet-9", "gpt-5.2-codex-max-x"]),
        resolve_all(&merged, &["claude-sonnet-9", "gpt-5.2-codex-max-x"])
    );
}

// Per-unit prices: a model's own `[model.units]` price first, then the table's `[units]`, else none.
#[test]
fn unit_prices_come_from_the_model_then_the_table() {
    let merged = PriceTable::embedded().overlaid(&PriceTable::from_toml(USER_FILE).unwrap());
    assert_eq!(merged.unit_price(Some("gpt-5-mini"), "audio_minute"), Some(0.003));
    assert_eq!(merged.unit_price(Some("gpt-5"), "audio_minute"), Some(0.006));
    assert_eq!(merged.unit_price(None, "image"), Some(0.04));
    assert_eq!(merged.unit_price(Some("mystery"), "audio_minute"), Some(0.006));
    assert_eq!(merged.unit_price(None, "page"), None);
    assert_eq!(PriceTable::embedded().unit_price(None, "audio_minute"), None);
}

// A rejected file's error points at the offending line (the field's, or its entry's header when the
// field is missing); syntax errors carry their line in the message.
#[test]
fn errors_name_the_line() {
    let line_of = |text: &str| {
        let error = PriceTable::from_toml(text).unwrap_err();
        (PriceTable::error_line(text, &error), error.to_string())
    };
    let negative = USER_FILE.replace("output = 1.6", "output = -1.6");
    assert_eq!(line_of(&negative).0, Some(26));
    let unit = USER_FILE.replace("audio_minute = 0.003", "audio_minute = \"cheap\"");
    assert_eq!(line_of(&unit).0, Some(31));
    let top_unit = USER_FILE.replace("image = 0.04", "image = -1");
    assert_eq!(line_of(&top_unit).0, Some(7));
    let missing = USER_FILE.replace("cache_read = 0.9\n", "");
    assert_eq!(line_of(&missing).0, Some(16));
    let duplicate = USER_FILE.replace("id = \"claude-sonnet\"", "id = \"gpt-5-mini\"");
    assert_eq!(line_of(&duplicate).0, Some(24));
    let top = USER_FILE.replace("version = \"acme-7\"", "version = 7");
    assert_eq!(line_of(&top).0, Some(2));
    let (line, message) = line_of("version = \"x\"\neffective_date = \n");
    assert_eq!(line, None);
    assert!(message.contains("line 2"), "{message}");
}

// The effective date of a file is compared with the UTC day of the engine clock.
#[test]
fn utc_dates_of_clock_times() {
    use baton_domain::pricing::utc_date;
    assert_eq!(utc_date(0), "1970-01-01");
    assert_eq!(utc_date(1_764_547_200_000), "2025-12-01");
    assert_eq!(utc_date(1_764_547_199_999), "2025-11-30");
    assert_eq!(utc_date(951_782_400_000), "2000-02-29");
}
