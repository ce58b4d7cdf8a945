//! GitHub: `X-Hub-Signature-256: sha256=<hex>`, `X-GitHub-Delivery` (a GUID), `X-GitHub-Event`.

use super::SourceSpec;

pub static SPEC: SourceSpec = SourceSpec {
    name: "github",
    display: "GitHub",
    signature_header: "x-hub-signature-256",
    signature_prefix: "sha256=",
    delivery_header: "x-github-delivery",
    event_headers: &["x-github-event"],
    secret_key: "webhooks.github_secret",
    secret_env: "GITHUB_WEBHOOK_SECRET",
    secret: |s| s.github.as_deref(),
};
