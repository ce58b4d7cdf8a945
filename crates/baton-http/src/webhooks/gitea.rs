//! Gitea and Forgejo: `X-Gitea-Signature: <hex>` (no prefix), `X-Gitea-Delivery` (a UUID), and
//! the event in `X-Gitea-Event-Type` (fine-grained; the only one set for `status` in Gitea
//! 1.23.0) falling back to `X-Gitea-Event`.

use super::SourceSpec;

pub static SPEC: SourceSpec = SourceSpec {
    name: "gitea",
    display: "Gitea",
    signature_header: "x-gitea-signature",
    signature_prefix: "",
    delivery_header: "x-gitea-delivery",
    event_headers: &["x-gitea-event-type", "x-gitea-event"],
    secret_key: "webhooks.gitea_secret",
    secret_env: "GITEA_WEBHOOK_SECRET",
    secret: |s| s.gitea.as_deref(),
};
