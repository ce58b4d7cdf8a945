//! Plane: `X-Plane-Signature: <hex>` (no prefix; absent when the webhook has no secret, which
//! Baton refuses), `X-Plane-Delivery` (a UUID), `X-Plane-Event` (`issue`, `issue_comment`, ...).

use super::SourceSpec;

pub static SPEC: SourceSpec = SourceSpec {
    name: "plane",
    display: "Plane",
    signature_header: "x-plane-signature",
    signature_prefix: "",
    delivery_header: "x-plane-delivery",
    event_headers: &["x-plane-event"],
    secret_key: "webhooks.plane_secret",
    secret_env: "PLANE_WEBHOOK_SECRET",
    secret: |s| s.plane.as_deref(),
};
