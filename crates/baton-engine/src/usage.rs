//! Usage ingest (SPEC §9): outside tools report what they spent on AI (`POST /api/usage/ingest`),
//! checked field by field, priced from the pricing table when they report no cost, and stored once
//! per (source, idempotency key). Also the usage settings every read of usage applies: the price
//! table in force (built in, or a user's file laid over it from its effective date) and the
//! read-time category map.
//!
//! Pricing of a record without `cost_usd`: tokens at the model's rates (the long-context tier by the
//! record's own prompt size), plus `units` at the unit price of `unit_kind` when the table has one
//! (the model's `[model.units]`, else the table's `[units]`); units without a price beside priced
//! tokens are only counted (they feed $ per unit). When tokens have no price, or units without
//! tokens have none, the record is stored unpriced (`priced_by = none`, cost unknown rather than
//! $0) and the answer says why.

use crate::{Engine, EngineError};
use baton_domain::Usage;
use baton_domain::pricing::{PriceTable, utc_date};
use baton_domain::usage::CategoryMap;
use baton_store::{NewUsageRecord, TaskKey, UsageInsert};
use serde_json::{Map, Value};

/// Longest `source`, `category`, `model`, `idempotency_key`, `task` or `repo` accepted.
pub const INGEST_TEXT_CHARS_MAX: usize = 200;
/// Largest token count of one record (a trillion: far above any single report).
pub const INGEST_TOKENS_MAX: u64 = 1_000_000_000_000;
/// Largest `units` of one record.
pub const INGEST_UNITS_MAX: f64 = 1_000_000_000.0;
/// Largest `cost_usd` of one record.
pub const INGEST_COST_USD_MAX: f64 = 1_000_000.0;
/// Longest `unit_kind` (`[a-z0-9_]`).
pub const UNIT_KIND_CHARS_MAX: usize = 40;

/// The fields of an ingest body; any other is refused.
pub const INGEST_FIELDS: [&str; 14] = [
    "source",
    "category",
    "model",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "units",
    "unit_kind",
    "cost_usd",
    "idempotency_key",
    "task",
    "repo",
    "at_ms",
];

/// `[usage]` and `[pricing]`: what every read and ingest of usage applies.
#[derive(Debug, Clone, Default)]
pub struct UsageSettings {
    /// `[usage.categories]`.
    pub categories: CategoryMap,
    /// `pricing.file`, parsed: laid over the built-in table from its effective date on.
    pub user_prices: Option<PriceTable>,
}

/// The price tables an engine uses: the built-in one, and the merged one once a user's file is in
/// force.
#[derive(Debug, Clone)]
pub struct Prices {
    merged: Option<PriceTable>,
}

impl Prices {
    pub fn new(user: Option<&PriceTable>) -> Prices {
        Prices { merged: user.map(|user| PriceTable::embedded().overlaid(user)) }
    }

    /// The table in force at `now_ms`: the merged one from the user's effective date (a UTC day) on.
    pub fn at(&self, now_ms: i64) -> &PriceTable {
        match &self.merged {
            Some(merged) if utc_date(now_ms) >= merged.effective_date => merged,
            _ => PriceTable::embedded(),
        }
    }
}

/// A field of an ingest body that was refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestProblem {
    pub field: String,
    pub problem: String,
}

impl std::fmt::Display for IngestProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` {}", self.field, self.problem)
    }
}

/// A checked ingest body.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestRequest {
    pub source: String,
    pub category: String,
    pub model: Option<String>,
    pub usage: Usage,
    pub units: f64,
    pub unit_kind: Option<String>,
    pub cost_usd: Option<f64>,
    pub idempotency_key: Option<String>,
    pub task: Option<String>,
    pub repo: Option<String>,
}

/// What an ingest did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IngestOutcome {
    #[serde(flatten)]
    pub insert: UsageInsert,
    /// Why the record is unpriced, or other things worth knowing; empty when all is well.
    pub warnings: Vec<String>,
}

fn problem(field: &str, text: impl Into<String>) -> IngestProblem {
    IngestProblem { field: field.to_owned(), problem: text.into() }
}

impl IngestRequest {
    /// Checks a JSON body: an object of [`INGEST_FIELDS`] only, with `source` and at least one of
    /// tokens, units or `cost_usd`; counts are whole numbers of 0 or more; amounts finite and not
    /// negative; texts within [`INGEST_TEXT_CHARS_MAX`] and free of control characters.
    /// `idempotency_key` falls back to `header_key` (the `Idempotency-Key` header).
    pub fn from_json(body: &Value, header_key: Option<&str>) -> Result<IngestRequest, IngestProblem> {
        let Value::Object(fields) = body else {
            return Err(problem("body", "must be a JSON object such as {\"source\": \"tts\", \"units\": 2, ...}"));
        };
        if let Some(unknown) = fields.keys().find(|k| !INGEST_FIELDS.contains(&k.as_str())) {
            return Err(problem(
                unknown,
                format!("is not a field of a usage record (known: {})", INGEST_FIELDS.join(", ")),
            ));
        }
        let source =
            text(fields, "source")?.ok_or_else(|| problem("source", "is required: name the tool that spent it"))?;
        let category = text(fields, "category")?.unwrap_or_else(|| source.clone());
        let model = text(fields, "model")?;
        let usage = Usage {
            input_tokens: count(fields, "input_tokens")?,
            output_tokens: count(fields, "output_tokens")?,
            cache_read_tokens: count(fields, "cache_read_tokens")?,
            cache_write_tokens: count(fields, "cache_write_tokens")?,
            reasoning_tokens: 0,
        };
        let units = amount(fields, "units", INGEST_UNITS_MAX)?.unwrap_or(0.0);
        let unit_kind = text(fields, "unit_kind")?;
        if let Some(kind) = &unit_kind
            && (kind.chars().count() > UNIT_KIND_CHARS_MAX
                || !kind.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
        {
            return Err(problem(
                "unit_kind",
                format!("must be 1 to {UNIT_KIND_CHARS_MAX} of a-z, 0-9 and `_` (e.g. audio_minute), not {kind:?}"),
            ));
        }
        if units > 0.0 && unit_kind.is_none() {
            return Err(problem("unit_kind", "is required with `units`: say what was counted (e.g. audio_minute)"));
        }
        let cost_usd = amount(fields, "cost_usd", INGEST_COST_USD_MAX)?;
        if fields.contains_key("at_ms") {
            return Err(problem("at_ms", "is set by Baton's clock when the record arrives; remove it"));
        }
        let tokens = usage.input_tokens + usage.output_tokens + usage.cache_read_tokens + usage.cache_write_tokens;
        if tokens == 0 && units == 0.0 && cost_usd.is_none() {
            return Err(problem("body", "records nothing: give tokens, `units` with `unit_kind`, or `cost_usd`"));
        }
        let idempotency_key = match text(fields, "idempotency_key")? {
            Some(key) => Some(key),
            None => header_key.map(|k| k.trim().to_owned()).filter(|k| !k.is_empty()),
        };
        if idempotency_key.as_ref().is_some_and(|k| k.chars().count() > INGEST_TEXT_CHARS_MAX) {
            return Err(problem("idempotency_key", format!("is longer than {INGEST_TEXT_CHARS_MAX} characters")));
        }
        Ok(IngestRequest {
            source,
            category,
            model,
            usage,
            units,
            unit_kind,
            cost_usd,
            idempotency_key,
            task: text(fields, "task")?,
            repo: text(fields, "repo")?,
        })
    }

    /// The cost, how it was found (`reported`, `table`, `none`) and why it is unknown, if it is.
    pub fn price(&self, table: &PriceTable) -> (Option<f64>, &'static str, Vec<String>) {
        if let Some(cost) = self.cost_usd {
            return (Some(cost), "reported", Vec::new());
        }
        let mut total = 0.0;
        let mut unpriced = Vec::new();
        let tokens = self.usage.input_tokens
            + self.usage.output_tokens
            + self.usage.cache_read_tokens
            + self.usage.cache_write_tokens;
        if tokens > 0 {
            match self.model.as_deref().and_then(|model| table.cost_usd(model, &self.usage)) {
                Some(priced) => total += priced.usd,
                None => unpriced.push(match &self.model {
                    Some(model) => format!(
                        "model {model:?} is not in the pricing table {} (add it to the file of `pricing.file`, or send cost_usd)",
                        table.version
                    ),
                    None => "tokens without a `model` cannot be priced (send model or cost_usd)".to_owned(),
                }),
            }
        }
        if self.units > 0.0
            && let Some(kind) = &self.unit_kind
        {
            match table.unit_price(self.model.as_deref(), kind) {
                Some(per_unit) => total += per_unit * self.units,
                // Units beside priced tokens are counted, not priced again (a TTS model's audio
                // minutes are its output tokens): they only feed $ per unit.
                None if tokens > 0 => {}
                None => unpriced.push(format!(
                    "unit kind {kind:?} has no price in the pricing table {} (add it under [units] of `pricing.file`, or send cost_usd)",
                    table.version
                )),
            }
        }
        if unpriced.is_empty() {
            (Some(total), "table", Vec::new())
        } else {
            let mut warnings = vec!["recorded unpriced (its cost is unknown, not $0)".to_owned()];
            warnings.extend(unpriced);
            (None, "none", warnings)
        }
    }
}

/// An optional text field: a string, trimmed, not empty, within the length limit, no control characters.
fn text(fields: &Map<String, Value>, field: &str) -> Result<Option<String>, IngestProblem> {
    match fields.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.is_empty() {
                Err(problem(field, "must not be empty"))
            } else if s.chars().count() > INGEST_TEXT_CHARS_MAX {
                Err(problem(field, format!("is longer than {INGEST_TEXT_CHARS_MAX} characters")))
            } else if s.chars().any(char::is_control) {
                Err(problem(field, "must not contain control characters"))
            } else {
                Ok(Some(s.to_owned()))
            }
        }
        Some(other) => Err(problem(field, format!("must be a string, not {}", json_type(other)))),
    }
}

/// An optional token count: a whole number from 0 to [`INGEST_TOKENS_MAX`] (absent: 0).
fn count(fields: &Map<String, Value>, field: &str) -> Result<u64, IngestProblem> {
    match fields.get(field) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) if v <= INGEST_TOKENS_MAX => Ok(v),
            Some(_) => Err(problem(field, format!("is above {INGEST_TOKENS_MAX}"))),
            None if n.as_f64().is_some_and(|f| f < 0.0) => {
                Err(problem(field, format!("must not be negative, got {n}")))
            }
            None => Err(problem(field, format!("must be a whole number of tokens, got {n}"))),
        },
        Some(other) => Err(problem(field, format!("must be a number, not {}", json_type(other)))),
    }
}

/// An optional amount: a finite number from 0 to `max`.
fn amount(fields: &Map<String, Value>, field: &str, max: f64) -> Result<Option<f64>, IngestProblem> {
    match fields.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) if v < 0.0 => Err(problem(field, format!("must not be negative, got {n}"))),
            Some(v) if v.is_finite() && v <= max => Ok(Some(v)),
            _ => Err(problem(field, format!("must be at most {max}, got {n}"))),
        },
        Some(other) => Err(problem(field, format!("must be a number, not {}", json_type(other)))),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Why an ingest was refused: a bad field (400) or a store failure.
#[derive(Debug)]
pub enum IngestError {
    Field(IngestProblem),
    Engine(EngineError),
}

impl From<EngineError> for IngestError {
    fn from(error: EngineError) -> Self {
        IngestError::Engine(error)
    }
}

impl From<baton_store::StoreError> for IngestError {
    fn from(error: baton_store::StoreError) -> Self {
        IngestError::Engine(error.into())
    }
}

impl Engine {
    /// The price table in force now.
    pub fn prices(&self) -> &PriceTable {
        self.prices_state().at(self.clock().now_ms())
    }

    /// Stores a reported usage record for `principal`: the task and repository it names must
    /// exist (a task gives the record its repository), it is priced when it carries no cost, and a
    /// replay of its (source, idempotency key) returns the first record. Never touches a task.
    pub async fn ingest_usage(&self, request: IngestRequest, principal: &str) -> Result<IngestOutcome, IngestError> {
        let task = match &request.task {
            None => None,
            Some(key) => match self.store().task(&TaskKey::parse(key)).await? {
                Some(task) => Some(task),
                None => return Err(IngestError::Field(problem("task", format!("names no task: {key:?}")))),
            },
        };
        let repo = match (&request.repo, &task) {
            (Some(repo), Some(task)) if *repo != task.repo => {
                return Err(IngestError::Field(problem(
                    "repo",
                    format!("is {repo:?} but task {} belongs to {:?}; send one of them", task.work_item_id, task.repo),
                )));
            }
            (Some(repo), _) if self.settings().repo(repo).is_none() => {
                let known: Vec<&str> = self.settings().repos.iter().map(|r| r.name.as_str()).collect();
                return Err(IngestError::Field(problem(
                    "repo",
                    format!("names no configured repository: {repo:?} (known: {})", known.join(", ")),
                )));
            }
            (Some(repo), _) => Some(repo.clone()),
            (None, Some(task)) => Some(task.repo.clone()),
            (None, None) => None,
        };
        let now = self.clock().now_ms();
        let (cost_usd, priced_by, warnings) = request.price(self.prices_state().at(now));
        let record = NewUsageRecord {
            source: request.source,
            category: request.category,
            model: request.model,
            input_tokens: request.usage.input_tokens,
            output_tokens: request.usage.output_tokens,
            cache_read_tokens: request.usage.cache_read_tokens,
            cache_write_tokens: request.usage.cache_write_tokens,
            units: request.units,
            unit_kind: request.unit_kind,
            cost_usd,
            priced_by: priced_by.to_owned(),
            idempotency_key: request.idempotency_key,
            task: task.map(|t| t.id),
            repo,
            at_ms: now,
            principal: principal.to_owned(),
        };
        let insert = self.store().insert_usage_record(record).await?;
        let warnings = if insert.created {
            warnings
        } else {
            vec!["a record with this source and idempotency key exists; it was kept and nothing was added".to_owned()]
        };
        Ok(IngestOutcome { insert, warnings })
    }

    /// The read-time category map (`[usage.categories]`).
    pub fn categories(&self) -> &CategoryMap {
        &self.usage_settings().categories
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refused(body: Value) -> String {
        IngestRequest::from_json(&body, None).unwrap_err().to_string()
    }

    // Bad bodies are refused with the field named; unknown fields, negatives and oversize values included.
    #[test]
    fn bad_bodies_name_the_field() {
        assert!(refused(json!([])).starts_with("`body`"));
        assert!(refused(json!({"units": 1, "unit_kind": "x"})).starts_with("`source` is required"));
        assert!(
            refused(json!({"source": "a", "input_tokens": 1, "colour": "red"})).starts_with("`colour` is not a field")
        );
        assert!(refused(json!({"source": "a", "input_tokens": -5})).starts_with("`input_tokens` must not be negative"));
        assert!(
            refused(json!({"source": "a", "input_tokens": 1.5})).starts_with("`input_tokens` must be a whole number")
        );
        assert!(refused(json!({"source": "a", "cost_usd": -0.1})).starts_with("`cost_usd` must not be negative"));
        assert!(refused(json!({"source": "a", "units": 2})).starts_with("`unit_kind` is required"));
        assert!(
            refused(json!({"source": "a", "units": 2, "unit_kind": "Audio Minute"})).starts_with("`unit_kind` must be")
        );
        assert!(refused(json!({"source": "x".repeat(201), "cost_usd": 1})).starts_with("`source` is longer"));
        assert!(refused(json!({"source": "a", "model": 5, "cost_usd": 1})).starts_with("`model` must be a string"));
        assert!(refused(json!({"source": "a"})).starts_with("`body` records nothing"));
        assert!(refused(json!({"source": "a", "cost_usd": 1e7})).starts_with("`cost_usd` must be at most"));
        assert!(refused(json!({"source": "a", "cost_usd": 1, "at_ms": 5})).starts_with("`at_ms`"));
    }

    // Priced from the table by model and by unit kind; unknown model → unpriced with a warning; a
    // reported cost wins.
    #[test]
    fn pricing_of_records() {
        let user = PriceTable::from_toml(
            "version = \"u1\"\neffective_date = \"2020-01-01\"\n[units]\naudio_minute = 0.006\n\
             [[model]]\nid = \"house\"\ninput = 1\noutput = 2\ncache_read = 0\ncache_write = 1\n",
        )
        .unwrap();
        let table = PriceTable::embedded().overlaid(&user);
        let tts = IngestRequest::from_json(
            &json!({"source": "tts", "model": "gemini-2.5-pro-preview-tts", "input_tokens": 100, "output_tokens": 1500}),
            None,
        )
        .unwrap();
        let (cost, by, warnings) = tts.price(&table);
        assert!((cost.unwrap() - 0.0301).abs() < 1e-12 && by == "table" && warnings.is_empty());
        // Minutes counted beside priced tokens add nothing when their kind has no price.
        let counted = IngestRequest { units: 1.0, unit_kind: Some("tts_minute".into()), ..tts.clone() };
        assert!((counted.price(&table).0.unwrap() - 0.0301).abs() < 1e-12);
        let alone = IngestRequest::from_json(&json!({"source": "x", "units": 3, "unit_kind": "page"}), None).unwrap();
        assert_eq!(alone.price(&table).1, "none");
        let minutes =
            IngestRequest::from_json(&json!({"source": "stt", "units": 10, "unit_kind": "audio_minute"}), None)
                .unwrap();
        let (cost, by, _) = minutes.price(&table);
        assert!((cost.unwrap() - 0.06).abs() < 1e-12 && by == "table");
        let unknown =
            IngestRequest::from_json(&json!({"source": "x", "model": "mystery-9", "input_tokens": 5}), None).unwrap();
        let (cost, by, warnings) = unknown.price(&table);
        assert_eq!((cost, by), (None, "none"));
        assert!(warnings.iter().any(|w| w.contains("mystery-9")), "{warnings:?}");
        let reported = IngestRequest::from_json(
            &json!({"source": "x", "model": "mystery-9", "input_tokens": 5, "cost_usd": 0.2}),
            None,
        )
        .unwrap();
        assert_eq!(reported.price(&table), (Some(0.2), "reported", vec![]));
        let keyed = IngestRequest::from_json(&json!({"source": "x", "cost_usd": 1}), Some(" k-9 ")).unwrap();
        assert_eq!(keyed.idempotency_key.as_deref(), Some("k-9"));
    }

    // A user's file is in force from its effective date (UTC) on, the built-in table before.
    #[test]
    fn user_prices_take_effect_on_their_date() {
        let user = PriceTable::from_toml(
            "version = \"u2\"\neffective_date = \"2026-12-01\"\n[[model]]\nid = \"gpt-5\"\ninput = 99\noutput = 99\ncache_read = 0\ncache_write = 99\n",
        )
        .unwrap();
        let prices = Prices::new(Some(&user));
        let nov_30 = 1_764_547_200_000 + 365 * 86_400_000 - 1; // 2026-11-30T23:59:59.999Z
        assert_eq!(utc_date(nov_30), "2026-11-30");
        assert_eq!(prices.at(nov_30).version, "2026-11-01");
        assert_eq!(prices.at(nov_30 + 1).version, "2026-11-01+u2");
        assert_eq!(prices.at(nov_30 + 1).lookup("gpt-5").unwrap().entry.base.input_usd_per_mtok, 99.0);
    }
}
