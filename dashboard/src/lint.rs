//! `POST /api/lint`: the playground's verdict, diagnostics and rewrite for a TwiML document,
//! computed by the functions behind the npm package's `lint` and `rewrite`
//! (`twiml::report`), so the page shows exactly what the package and the CLI say.
//! The module is not embedded in the binary: it is a `make npm` artifact, and a plain
//! `cargo build` of a fresh clone must work without it.

use crate::error::DashboardError;
use axum::body::Body;
use axum::extract::Query;
use axum::Json;
use serde_json::Value;

/// Documents larger than this are refused (the filter's own default `max_body_bytes` is 64 KiB).
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, serde::Deserialize)]
pub struct LintQuery {
    /// `strip` (default) or `start-recording`.
    action: Option<String>,
}

/// Lint and rewrite `body` as the npm package would.
pub fn lint_and_rewrite(body: &[u8], action: &str) -> Result<Value, DashboardError> {
    let action = match action {
        "strip" => twiml::RewriteAction::Strip,
        "start-recording" => twiml::RewriteAction::StartRecording,
        other => {
            return Err(DashboardError::BadRequest(format!(
                "action must be strip or start-recording, not {:?}",
                other.chars().take(20).collect::<String>()
            )))
        }
    };
    let lint = twiml::report::lint_json(body);
    let rewrite = twiml::report::rewrite_json(body, action, None);
    let parse = |b: Vec<u8>| {
        serde_json::from_slice::<Value>(&b).map_err(|e| DashboardError::Internal(e.to_string()))
    };
    Ok(serde_json::json!({ "lint": parse(lint)?, "rewrite": parse(rewrite)? }))
}

pub async fn lint(Query(q): Query<LintQuery>, body: Body) -> Result<Json<Value>, DashboardError> {
    let bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| DashboardError::BodyTooLarge(MAX_BODY))?;
    Ok(Json(lint_and_rewrite(
        &bytes,
        q.action.as_deref().unwrap_or("strip"),
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = include_str!("../../twiml/fixtures/seed_001.xml");

    #[test]
    fn the_seed_is_tg001_and_its_rewrite_has_no_record() {
        let v = lint_and_rewrite(SEED.as_bytes(), "strip").unwrap();
        assert_eq!(v["lint"]["verdict"], "conflict");
        assert_eq!(v["lint"]["diagnostics"][0]["code"], "TG001");
        assert_eq!(v["rewrite"]["changed"], true);
        assert_eq!(v["rewrite"]["action"], "strip");
        let out = v["rewrite"]["twiml"].as_str().unwrap();
        assert!(!out.contains("<Record"), "{out}");
        assert_eq!(out, include_str!("../../twiml/fixtures/seed_001.strip.xml"));
        let v = lint_and_rewrite(SEED.as_bytes(), "start-recording").unwrap();
        let out = v["rewrite"]["twiml"].as_str().unwrap();
        assert!(
            out.contains("<Start><Recording channels=\"dual\"/></Start>")
                && !out.contains("<Record "),
            "{out}"
        );
    }

    #[test]
    fn a_bad_action_is_a_bad_request() {
        let e = lint_and_rewrite(b"<Response/>", "delete").unwrap_err();
        assert_eq!(e.code(), "bad_request");
    }
}
