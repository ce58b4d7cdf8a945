//! The pricing table (SPEC §9): USD per 1M tokens per model, versioned with an effective date, and the
//! lookup that resolves a reported model id to its own row without the prefix-match pitfall.
//!
//! The table is data: `pricing/<effective date>.toml` is embedded in the binary ([`PriceTable::embedded`])
//! and a user may supply an override file in the same format ([`PriceTable::from_toml`]).
//!
//! **Lookup** ([`PriceTable::lookup`]) never takes the first `starts_with` hit, because many ids are
//! prefixes of differently priced ids (`claude-opus-4` / `claude-opus-4-5`, `gpt-5` / `gpt-5-mini`,
//! `gemini-2.5-flash` / `gemini-2.5-flash-lite`, `gemini-2.5-pro` / `gemini-2.5-pro-preview-tts`):
//! 1. exact id;
//! 2. the normalized id ([`normalize_model_id`]), exactly;
//! 3. the LONGEST table id that is a prefix of the normalized id and is followed there by a separator
//!    (`-`, `.`, `@`, `:`, `/`), reported as [`MatchKind::Prefix`] so the caller can log the guess;
//! 4. otherwise `None`: the model is *unpriced*, never $0.
//!
//! The order of entries in the file therefore never matters.
//!
//! **Per-unit prices** (SPEC §9 unit economics: audio minutes, images, calls): a `[model.units]`
//! table prices units of one model, a top-level `[units]` table prices units whatever the model;
//! [`PriceTable::unit_price`] takes the model's price first.
//!
//! **A user's file** ([`PriceTable::overlaid`]) overrides rows of the built-in table by id and adds
//! new ones; lookups then run over the merged rows, so a user id that is a prefix of a built-in id
//! (or the reverse) still resolves each to its own row. [`PriceTable::error_line`] says which line
//! of a rejected file is at fault.
//!
//! **Contract for adapters filling [`Usage`]** (what [`PriceTable::cost_usd`] relies on):
//! - `input_tokens` excludes cache reads and cache writes. Codex and Gemini count cached tokens inside
//!   their input figure, so their adapters subtract them.
//! - `output_tokens` is everything billed at the output rate, reasoning/thinking tokens included.
//!   `reasoning_tokens` is only a breakdown of `output_tokens` and is never priced again. Claude and
//!   Codex (`reasoning_output_tokens` ⊂ `output_tokens`) already report this way; Gemini CLI's
//!   `candidates` excludes `thoughts`, so its adapter reports `output_tokens = candidates + thoughts`.
//! - All cache writes are priced at the 5-minute write rate: `Usage` does not split them by TTL.
//!
//! OpenAI and Gemini charge nothing extra for cache writes; the tokens written are billed as ordinary
//! input, so their rows set `cache_write` equal to `input` and the bucket an adapter uses cannot change
//! the cost.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::OnceLock;

use toml::Value;

use crate::agent::Usage;

/// The table compiled into Baton; its file name is its effective date.
const EMBEDDED_TOML: &str = include_str!("../pricing/2026-11-01.toml");

/// Prices are quoted per this many tokens.
const TOKENS_PER_PRICE: f64 = 1_000_000.0;

/// Characters that may follow a table id for a longer reported id to count as a variant of it.
const PREFIX_SEPARATORS: [char; 5] = ['-', '.', '@', ':', '/'];

/// Provider and gateway prefixes stripped by normalization (stripped repeatedly, in any order).
const PROVIDER_PREFIXES: [&str; 9] = [
    "anthropic/",
    "openai/",
    "google/",
    "models/",
    "us.anthropic.",
    "eu.anthropic.",
    "apac.anthropic.",
    "global.anthropic.",
    "anthropic.",
];

/// A versioned pricing table. Build it with [`PriceTable::embedded`] or [`PriceTable::from_toml`],
/// which validate it; the fields are public so callers can inspect or rearrange the entries.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceTable {
    /// Stamped on every priced usage row, with the effective date.
    pub version: String,
    /// `YYYY-MM-DD`.
    pub effective_date: String,
    pub models: Vec<ModelPrice>,
    /// Top-level `[units]`: USD per unit by unit kind, for units reported without a model (or
    /// whose model has no price for them).
    pub units_usd: BTreeMap<String, f64>,
}

/// One model's prices.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelPrice {
    /// Lowercase model id, e.g. `claude-sonnet-4-5`.
    pub id: String,
    /// Rates of a request whose prompt is within the long-context threshold (or of every request).
    pub base: TokenRates,
    /// Anthropic's 1-hour cache-write rate; informational, since costs use the 5-minute rate.
    pub cache_write_1h_usd_per_mtok: Option<f64>,
    /// Higher rates for requests with a long prompt (Sonnet 4/4.5, Gemini 2.5 Pro).
    pub long_context: Option<LongContextTier>,
    /// Per-unit prices in USD, keyed by unit kind (e.g. `audio_minute`), for SPEC §9 unit economics.
    pub units_usd: BTreeMap<String, f64>,
    /// Provenance; `UNCONFIRMED` marks a price no primary source confirmed.
    pub notes: Option<String>,
}

/// USD per 1M tokens of each token class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenRates {
    pub input_usd_per_mtok: f64,
    pub output_usd_per_mtok: f64,
    pub cache_read_usd_per_mtok: f64,
    /// The 5-minute cache-write rate for Anthropic; equal to input for OpenAI and Gemini.
    pub cache_write_usd_per_mtok: f64,
}

/// The rates that replace the base rates when one request's prompt exceeds `threshold_tokens`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LongContextTier {
    /// Prompt size (input + cache read + cache write tokens) above which the tier applies.
    pub threshold_tokens: u64,
    pub rates: TokenRates,
}

/// How a reported model id found its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    /// The reported id is a table id.
    Exact,
    /// The reported id, normalized ([`normalize_model_id`]), is a table id.
    Normalized,
    /// The longest table id that prefixes the normalized id at a separator: a guess worth logging.
    Prefix,
}

/// Which rates priced a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriceTier {
    Base,
    LongContext,
}

/// The row a reported model id resolved to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PriceMatch<'a> {
    pub entry: &'a ModelPrice,
    pub how: MatchKind,
}

/// A priced request, stamped with what priced it.
#[derive(Debug, Clone, PartialEq)]
pub struct PricedCost {
    pub usd: f64,
    /// The table id whose prices were used.
    pub matched_id: String,
    pub how: MatchKind,
    pub tier: PriceTier,
    /// The table's version and effective date.
    pub version: String,
    pub effective_date: String,
}

impl TokenRates {
    /// Cost in USD of `usage` at these rates; `reasoning_tokens` are inside `output_tokens` (module docs).
    pub fn cost_usd(&self, usage: &Usage) -> f64 {
        let micro_usd = usage.input_tokens as f64 * self.input_usd_per_mtok
            + usage.output_tokens as f64 * self.output_usd_per_mtok
            + usage.cache_read_tokens as f64 * self.cache_read_usd_per_mtok
            + usage.cache_write_tokens as f64 * self.cache_write_usd_per_mtok;
        micro_usd / TOKENS_PER_PRICE
    }
}

impl ModelPrice {
    /// The rates for one request with this usage: the long-context tier when its prompt exceeds the threshold.
    pub fn rates_for(&self, usage: &Usage) -> (TokenRates, PriceTier) {
        let prompt_tokens =
            usage.input_tokens.saturating_add(usage.cache_read_tokens).saturating_add(usage.cache_write_tokens);
        match &self.long_context {
            Some(tier) if prompt_tokens > tier.threshold_tokens => (tier.rates, PriceTier::LongContext),
            _ => (self.base, PriceTier::Base),
        }
    }
}

impl PriceTable {
    /// The table compiled into Baton, parsed once.
    pub fn embedded() -> &'static PriceTable {
        static TABLE: OnceLock<PriceTable> = OnceLock::new();
        TABLE.get_or_init(|| {
            PriceTable::from_toml(EMBEDDED_TOML)
                .expect("the embedded pricing file is valid: tests/pricing.rs parses it on every test run")
        })
    }

    /// Parses and validates a pricing file (the embedded one or a user's override). Errors name the
    /// entry and field; unknown fields, duplicate ids and negative or non-finite prices are rejected.
    pub fn from_toml(text: &str) -> Result<PriceTable, PricingError> {
        let doc: toml::Table = toml::from_str(text).map_err(|e| PricingError::Syntax { message: e.to_string() })?;
        let top = Fields { entry: "the top level".to_owned(), table: &doc };
        top.deny_unknown(&["version", "effective_date", "model", "units"])?;
        let version = top.string("version")?;
        let effective_date = top.date("effective_date")?;
        let Value::Array(entries) = top.required("model")? else {
            return Err(top.problem("model", "must be a list of [[model]] tables"));
        };
        if entries.is_empty() {
            return Err(top.problem("model", "needs at least one [[model]] entry"));
        }
        let mut models = Vec::with_capacity(entries.len());
        let mut seen = BTreeSet::new();
        for (index, value) in entries.iter().enumerate() {
            let model = parse_model(index + 1, value)?;
            if !seen.insert(model.id.clone()) {
                return Err(PricingError::DuplicateId { id: model.id });
            }
            models.push(model);
        }
        let units_usd = top.units()?;
        Ok(PriceTable { version, effective_date, models, units_usd })
    }

    /// This table with `user`'s rows laid over it: a row of `user` replaces the row with the same id
    /// and every other row is added; `user`'s `[units]` replace ours kind by kind. The result is
    /// stamped `<ours>+<theirs>` and carries `user`'s effective date.
    pub fn overlaid(&self, user: &PriceTable) -> PriceTable {
        let mut models: Vec<ModelPrice> =
            self.models.iter().filter(|m| !user.models.iter().any(|u| u.id == m.id)).cloned().collect();
        models.extend(user.models.iter().cloned());
        let mut units_usd = self.units_usd.clone();
        units_usd.extend(user.units_usd.iter().map(|(k, v)| (k.clone(), *v)));
        PriceTable {
            version: format!("{}+{}", self.version, user.version),
            effective_date: user.effective_date.clone(),
            models,
            units_usd,
        }
    }

    /// USD per unit of `unit_kind`: the model's own `[model.units]` price when the model resolves
    /// and has one, else the table's `[units]` price; `None` when neither prices it.
    pub fn unit_price(&self, model: Option<&str>, unit_kind: &str) -> Option<f64> {
        let own = model.and_then(|m| self.lookup(m)).and_then(|found| found.entry.units_usd.get(unit_kind).copied());
        own.or_else(|| self.units_usd.get(unit_kind).copied())
    }

    /// The 1-based line of `text` (the file [`PriceTable::from_toml`] rejected with `error`) that the
    /// error is about: the field's line, or the entry's `[[model]]` line when the field is missing.
    /// TOML syntax errors name their line in their message already; `None` for those.
    pub fn error_line(text: &str, error: &PricingError) -> Option<usize> {
        let lines: Vec<&str> = text.lines().collect();
        let assigns = |line: &str, key: &str| {
            line.trim_start().strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('='))
        };
        match error {
            PricingError::Syntax { .. } => None,
            PricingError::DuplicateId { id } => {
                let quoted = format!("\"{id}\"");
                let hits: Vec<usize> =
                    (0..lines.len()).filter(|&i| assigns(lines[i], "id") && lines[i].contains(&quoted)).collect();
                hits.get(1).map(|i| i + 1)
            }
            PricingError::Field { entry, field, .. } => {
                // Which `[[model]]` block (entry strings end in "entry N" or "entry N)").
                let position = entry
                    .rsplit("entry ")
                    .next()
                    .and_then(|tail| tail.trim_end_matches(')').parse::<usize>().ok())
                    .filter(|_| entry != "the top level");
                let headers: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].trim() == "[[model]]").collect();
                let (start, end) = match position {
                    Some(n) => {
                        let start = *headers.get(n.checked_sub(1)?)?;
                        (start, headers.get(n).copied().unwrap_or(lines.len()))
                    }
                    None if field.starts_with("units.") => {
                        let start = lines.iter().position(|l| l.trim() == "[units]")?;
                        let after = lines.iter().skip(start + 1).position(|l| l.trim_start().starts_with('['));
                        (start, after.map_or(lines.len(), |n| start + 1 + n))
                    }
                    None => (0, lines.iter().position(|l| l.trim_start().starts_with('[')).unwrap_or(lines.len())),
                };
                let (key, within_units) = match field.strip_prefix("units.") {
                    Some(kind) => (kind, true),
                    None => (field.as_str(), false),
                };
                // The top-level `[units]` block is the range itself.
                let mut in_units = position.is_none() && within_units;
                for (i, line) in lines.iter().enumerate().take(end).skip(start) {
                    let trimmed = line.trim();
                    if trimmed.starts_with('[') && i != start {
                        in_units = trimmed == "[model.units]" || trimmed == "[units]";
                        continue;
                    }
                    if in_units == within_units && assigns(line, key) {
                        return Some(i + 1);
                    }
                }
                Some(start + 1)
            }
        }
    }

    /// Resolves a reported model id: exact, then normalized, then longest separator-bounded prefix.
    pub fn lookup(&self, model: &str) -> Option<PriceMatch<'_>> {
        if let Some(entry) = self.exact(model) {
            return Some(PriceMatch { entry, how: MatchKind::Exact });
        }
        let normalized = normalize_model_id(model);
        if let Some(entry) = self.exact(&normalized) {
            return Some(PriceMatch { entry, how: MatchKind::Normalized });
        }
        self.models
            .iter()
            .filter(|m| is_variant_of(&normalized, &m.id))
            .max_by_key(|m| m.id.len())
            .map(|entry| PriceMatch { entry, how: MatchKind::Prefix })
    }

    /// Cost of ONE model request's usage, or `None` when the model is unpriced. The long-context tier
    /// is decided on this usage's prompt size, so pass per-request usage where a model has such a tier;
    /// a sum over many requests can cross the threshold when no single request did.
    pub fn cost_usd(&self, model: &str, usage: &Usage) -> Option<PricedCost> {
        let found = self.lookup(model)?;
        let (rates, tier) = found.entry.rates_for(usage);
        Some(PricedCost {
            usd: rates.cost_usd(usage),
            matched_id: found.entry.id.clone(),
            how: found.how,
            tier,
            version: self.version.clone(),
            effective_date: self.effective_date.clone(),
        })
    }

    fn exact(&self, id: &str) -> Option<&ModelPrice> {
        self.models.iter().find(|m| m.id == id)
    }
}

/// Whether `reported` is `id` followed by a separator and more (`gpt-5-mini` of `gpt-5`; not `gpt-50`).
fn is_variant_of(reported: &str, id: &str) -> bool {
    reported.len() > id.len() && reported.starts_with(id) && reported[id.len()..].starts_with(PREFIX_SEPARATORS)
}

/// Reduces a reported model id to the shape of table ids: lowercase; without a `[1m]`-style bracket
/// suffix; without provider prefixes (`anthropic/`, `openai/`, `google/`, `models/`, Bedrock's
/// `us.`/`eu.`/`apac.`/`global.anthropic.` and its `-v1:0` suffix); without a Vertex `@YYYYMMDD` or
/// `@latest`; without a trailing `-YYYYMMDD` (Anthropic) or `-YYYY-MM-DD` (OpenAI) snapshot date.
pub fn normalize_model_id(model: &str) -> String {
    let mut id = model.trim().to_ascii_lowercase();
    if id.ends_with(']')
        && let Some(open) = id.rfind('[')
    {
        id.truncate(open);
    }
    while let Some(prefix) = PROVIDER_PREFIXES.iter().find(|p| id.len() > p.len() && id.starts_with(*p)) {
        id.drain(..prefix.len());
    }
    strip_bedrock_version(&mut id);
    strip_at_suffix(&mut id);
    strip_snapshot_date(&mut id);
    id
}

/// `…-v1:0` → `…`.
fn strip_bedrock_version(id: &mut String) {
    if let Some(dash) = id.rfind("-v")
        && let Some((major, minor)) = id[dash + 2..].split_once(':')
        && is_digits(major, None)
        && is_digits(minor, None)
        && dash > 0
    {
        id.truncate(dash);
    }
}

/// `…@20250929` or `…@latest` → `…`.
fn strip_at_suffix(id: &mut String) {
    if let Some(at) = id.rfind('@') {
        let suffix = &id[at + 1..];
        if at > 0 && (suffix == "latest" || is_digits(suffix, Some(8))) {
            id.truncate(at);
        }
    }
}

/// `…-20250929` or `…-2025-08-07` → `…`.
fn strip_snapshot_date(id: &mut String) {
    let bytes = id.as_bytes();
    let compact = bytes.len() > 9 && bytes[bytes.len() - 9] == b'-' && is_digits(&id[bytes.len() - 8..], None);
    if compact {
        id.truncate(id.len() - 9);
        return;
    }
    let n = bytes.len();
    let dashed = n > 11
        && bytes[n - 11] == b'-'
        && bytes[n - 6] == b'-'
        && bytes[n - 3] == b'-'
        && is_digits(&id[n - 10..n - 6], None)
        && is_digits(&id[n - 5..n - 3], None)
        && is_digits(&id[n - 2..], None);
    if dashed {
        id.truncate(n - 11);
    }
}

/// Non-empty ASCII digits, of exactly `len` characters when given.
fn is_digits(text: &str, len: Option<usize>) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && len.is_none_or(|n| text.len() == n)
}

const MODEL_FIELDS: [&str; 13] = [
    "id",
    "input",
    "output",
    "cache_read",
    "cache_write",
    "cache_write_1h",
    "long_context_threshold_tokens",
    "input_long",
    "output_long",
    "cache_read_long",
    "cache_write_long",
    "units",
    "notes",
];

const LONG_FIELDS: [&str; 4] = ["input_long", "output_long", "cache_read_long", "cache_write_long"];

/// Validates the `position`-th (1-based) `[[model]]` entry.
fn parse_model(position: usize, value: &Value) -> Result<ModelPrice, PricingError> {
    let Value::Table(table) = value else {
        return Err(PricingError::Field {
            entry: format!("model entry {position}"),
            field: "model".to_owned(),
            problem: format!("must be a table, found {}", value.type_str()),
        });
    };
    let mut fields = Fields { entry: format!("model entry {position}"), table };
    let id = fields.string("id")?;
    if id.chars().any(|c| c.is_uppercase() || c.is_whitespace()) {
        return Err(
            fields.problem("id", &format!("must be lowercase without spaces (lookups lowercase), found {id:?}"))
        );
    }
    fields.entry = format!("model {id:?} (entry {position})");
    fields.deny_unknown(&MODEL_FIELDS)?;
    let base = TokenRates {
        input_usd_per_mtok: fields.price("input")?,
        output_usd_per_mtok: fields.price("output")?,
        cache_read_usd_per_mtok: fields.price("cache_read")?,
        cache_write_usd_per_mtok: fields.price("cache_write")?,
    };
    Ok(ModelPrice {
        base,
        cache_write_1h_usd_per_mtok: fields.optional_price("cache_write_1h")?,
        long_context: fields.long_context()?,
        units_usd: fields.units()?,
        notes: fields.optional_string("notes")?,
        id,
    })
}

/// One TOML table being validated, with the name errors give it.
struct Fields<'a> {
    entry: String,
    table: &'a toml::Table,
}

impl Fields<'_> {
    fn problem(&self, field: &str, problem: &str) -> PricingError {
        PricingError::Field { entry: self.entry.clone(), field: field.to_owned(), problem: problem.to_owned() }
    }

    fn deny_unknown(&self, allowed: &[&str]) -> Result<(), PricingError> {
        match self.table.keys().find(|key| !allowed.contains(&key.as_str())) {
            Some(key) => Err(self.problem(key, &format!("is not a known field (known: {})", allowed.join(", ")))),
            None => Ok(()),
        }
    }

    fn required(&self, field: &str) -> Result<&Value, PricingError> {
        self.table.get(field).ok_or_else(|| self.problem(field, "is required"))
    }

    fn string(&self, field: &str) -> Result<String, PricingError> {
        match self.required(field)? {
            Value::String(text) if !text.trim().is_empty() => Ok(text.clone()),
            Value::String(_) => Err(self.problem(field, "must not be empty")),
            other => Err(self.problem(field, &format!("must be a string, found {}", other.type_str()))),
        }
    }

    fn optional_string(&self, field: &str) -> Result<Option<String>, PricingError> {
        match self.table.get(field) {
            None => Ok(None),
            Some(_) => self.string(field).map(Some),
        }
    }

    /// A `YYYY-MM-DD` date, written as a string or a bare TOML date.
    fn date(&self, field: &str) -> Result<String, PricingError> {
        let text = match self.required(field)? {
            Value::String(text) => text.clone(),
            Value::Datetime(date) => date.to_string(),
            other => return Err(self.problem(field, &format!("must be a date YYYY-MM-DD, found {}", other.type_str()))),
        };
        let b = text.as_bytes();
        let shaped = b.len() == 10
            && b[4] == b'-'
            && b[7] == b'-'
            && is_digits(&text[..4], None)
            && is_digits(&text[5..7], None)
            && is_digits(&text[8..], None);
        let in_range = shaped
            && (1..=12).contains(&text[5..7].parse::<u8>().unwrap_or(0))
            && (1..=31).contains(&text[8..].parse::<u8>().unwrap_or(0));
        if in_range {
            Ok(text)
        } else {
            Err(self.problem(field, &format!("must be a date YYYY-MM-DD, found {text:?}")))
        }
    }

    /// A price in USD: a finite number, 0 or more (integers accepted).
    fn price(&self, field: &str) -> Result<f64, PricingError> {
        let value = self.required(field)?;
        self.price_value(field, value)
    }

    fn price_value(&self, field: &str, value: &Value) -> Result<f64, PricingError> {
        let number = match value {
            Value::Float(f) => *f,
            Value::Integer(i) => *i as f64,
            other => {
                return Err(self.problem(field, &format!("must be a number of USD, found {}", other.type_str())));
            }
        };
        if number.is_finite() && number >= 0.0 {
            Ok(number)
        } else {
            Err(self.problem(field, &format!("must be a finite price of 0 or more, found {number}")))
        }
    }

    fn optional_price(&self, field: &str) -> Result<Option<f64>, PricingError> {
        self.table.get(field).map(|value| self.price_value(field, value)).transpose()
    }

    /// The long-context tier: all of its fields, or none of them.
    fn long_context(&self) -> Result<Option<LongContextTier>, PricingError> {
        const THRESHOLD: &str = "long_context_threshold_tokens";
        let Some(threshold) = self.table.get(THRESHOLD) else {
            return match LONG_FIELDS.iter().find(|f| self.table.contains_key(**f)) {
                Some(field) => Err(self.problem(field, &format!("needs {THRESHOLD} to be set"))),
                None => Ok(None),
            };
        };
        let threshold_tokens = match threshold {
            Value::Integer(n) if *n > 0 => *n as u64,
            other => return Err(self.problem(THRESHOLD, &format!("must be a positive integer, found {other}"))),
        };
        let mut rates = [0.0; 4];
        for (rate, field) in rates.iter_mut().zip(LONG_FIELDS) {
            let value = self
                .table
                .get(field)
                .ok_or_else(|| self.problem(field, &format!("is required when {THRESHOLD} is set")))?;
            *rate = self.price_value(field, value)?;
        }
        let [input, output, cache_read, cache_write] = rates;
        Ok(Some(LongContextTier {
            threshold_tokens,
            rates: TokenRates {
                input_usd_per_mtok: input,
                output_usd_per_mtok: output,
                cache_read_usd_per_mtok: cache_read,
                cache_write_usd_per_mtok: cache_write,
            },
        }))
    }

    /// `[model.units]`: unit kind → USD per unit.
    fn units(&self) -> Result<BTreeMap<String, f64>, PricingError> {
        match self.table.get("units") {
            None => Ok(BTreeMap::new()),
            Some(Value::Table(units)) => units
                .iter()
                .map(|(kind, value)| Ok((kind.clone(), self.price_value(&format!("units.{kind}"), value)?)))
                .collect(),
            Some(other) => {
                Err(self.problem("units", &format!("must be a table of USD per unit, found {}", other.type_str())))
            }
        }
    }
}

/// Why a pricing file was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PricingError {
    /// The text is not TOML.
    Syntax { message: String },
    /// A field is missing, unknown, of the wrong type or out of range.
    Field { entry: String, field: String, problem: String },
    /// Two `[[model]]` entries share an id.
    DuplicateId { id: String },
}

impl fmt::Display for PricingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PricingError::Syntax { message } => write!(f, "pricing file is not valid TOML: {message}"),
            PricingError::Field { entry, field, problem } => {
                write!(f, "pricing file, {entry}: field `{field}` {problem}")
            }
            PricingError::DuplicateId { id } => {
                write!(f, "pricing file: model id {id:?} appears more than once; keep one entry per id")
            }
        }
    }
}

impl std::error::Error for PricingError {}

/// `YYYY-MM-DD` (UTC) of a Unix time in milliseconds: the day a pricing file's effective date is
/// compared with.
pub fn utc_date(ms: i64) -> String {
    // Days to civil date (proleptic Gregorian), after Howard Hinnant's algorithm.
    let z = ms.div_euclid(86_400_000) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
