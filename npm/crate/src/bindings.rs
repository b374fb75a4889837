//! What JavaScript sees (wasm-bindgen): `lint`, `analyze`, `rewrite` and `sniff` answering plain
//! objects shaped by `twiml::report` (their TypeScript declarations derived from the same types),
//! and `Guard`, the filter's response decisions for the Express middleware and `guardResponse`.

use js_sys::{JsString, Uint8Array};
use serde::{Deserialize, Serialize};
use tsify::Tsify;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::guard::{self, GuardOptions};
use twiml::report::{self, ActionName};
use twiml_guard_edge::config::Config;
use twiml_guard_edge::decide::{self, Effect, Encoding, ResponseInfo, ResponseStart};

/// The arguments of `rewrite` after the TwiML.
#[derive(Debug, Default, Deserialize, Tsify)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RewriteOptions {
    /// Default `strip`.
    #[tsify(optional)]
    pub action: Option<ActionName>,
    /// start-recording: the recordingStatusCallback to add when the `<Record>` had none.
    #[tsify(optional)]
    pub recording_status_callback: Option<String>,
}

fn type_error(message: &str) -> JsValue {
    js_sys::TypeError::new(&format!("twiml-guard: {message}")).into()
}

/// The bytes of a `string | Uint8Array` argument (a Node `Buffer` is a `Uint8Array`).
fn bytes(value: &JsValue, what: &str) -> Result<Vec<u8>, JsValue> {
    if let Some(s) = value.dyn_ref::<JsString>() {
        return Ok(String::from(s).into_bytes());
    }
    if let Some(a) = value.dyn_ref::<Uint8Array>() {
        return Ok(a.to_vec());
    }
    Err(type_error(&format!(
        "{what} must be a string or a Uint8Array"
    )))
}

/// An options object (`undefined` and `null` mean all defaults); a wrong one is a TypeError. It
/// goes through a JSON value so that unknown keys are refused (read straight from the JavaScript
/// object, only the known keys would be looked at).
fn read_options<T: Default + for<'de> Deserialize<'de>>(
    value: JsValue,
    what: &str,
) -> Result<T, JsValue> {
    if value.is_undefined() || value.is_null() {
        return Ok(T::default());
    }
    let json: serde_json::Value = serde_wasm_bindgen::from_value(value).map_err(|e| {
        let e = JsValue::from(e);
        let message = e
            .dyn_ref::<js_sys::Error>()
            .map_or_else(|| format!("{e:?}"), |e| String::from(e.message()));
        type_error(&format!("{what}: {message}"))
    })?;
    serde_json::from_value(json).map_err(|e| type_error(&format!("{what}: {e}")))
}

/// Plain objects, `null` for `None`: what `JSON.parse` of the CLI's JSON gives.
fn to_js(value: &impl Serialize) -> Result<JsValue, JsValue> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| JsValue::from(js_sys::Error::new(&format!("twiml-guard: {e}"))))
}

/// Every lint rule over a TwiML document.
#[wasm_bindgen(unchecked_return_type = "LintReport")]
pub fn lint(
    #[wasm_bindgen(unchecked_param_type = "string | Uint8Array")] xml: JsValue,
) -> Result<JsValue, JsValue> {
    to_js(&report::lint(&bytes(&xml, "the TwiML")?))
}

/// The edge filter's verdict for a document.
#[wasm_bindgen(unchecked_return_type = "Analysis")]
pub fn analyze(
    #[wasm_bindgen(unchecked_param_type = "string | Uint8Array")] xml: JsValue,
) -> Result<JsValue, JsValue> {
    to_js(&report::analyze(&bytes(&xml, "the TwiML")?))
}

/// Rewrite a conflicting document so its `<Record>` no longer blocks the `<Stream>`; any other
/// document comes back as it is (`changed: false`).
#[wasm_bindgen(unchecked_return_type = "RewriteResult")]
pub fn rewrite(
    #[wasm_bindgen(unchecked_param_type = "string | Uint8Array")] xml: JsValue,
    #[wasm_bindgen(unchecked_param_type = "RewriteOptions")] options: JsValue,
) -> Result<JsValue, JsValue> {
    let body = bytes(&xml, "the TwiML")?;
    let options: RewriteOptions = read_options(options, "rewrite options")?;
    let core = twiml::RewriteOptions {
        action: options.action.unwrap_or(ActionName::Strip).into(),
        recording_status_callback: options.recording_status_callback,
    };
    let result = report::rewrite(&body, &core)
        .map_err(|e| JsValue::from(js_sys::Error::new(&format!("twiml-guard: {e}"))))?;
    to_js(&result)
}

/// Whether a whole body opens with a `<Response>` element (how `text/html` answers are told
/// apart from web pages).
#[wasm_bindgen]
pub fn sniff(
    #[wasm_bindgen(unchecked_param_type = "string | Uint8Array")] xml: JsValue,
) -> Result<bool, JsValue> {
    Ok(report::sniff(&bytes(&xml, "the TwiML")?).twiml)
}

/// One response's outcome: the `x-twiml-guard` value and what to send.
#[derive(Debug, Serialize, Tsify)]
pub struct GuardOutcome {
    #[tsify(
        type = "\"clean\" | \"rewritten\" | \"rejected\" | \"detected\" | \"oversize\" | \"malformed\""
    )]
    pub label: &'static str,
    /// The `x-twiml-guard` value: the label, and for a conflict the stream it blocks
    /// (`rewritten; blocks=Connect/Stream`), as the filter sets it.
    pub header: String,
    /// The bytes to send instead of the response's own (in its content-encoding), if any.
    #[serde(skip)]
    #[tsify(optional, type = "Uint8Array")]
    pub body: Option<Vec<u8>>,
    /// A rejection's status (its body is JSON, `application/json`); absent when the status stays.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[tsify(optional)]
    pub status: Option<u32>,
}

impl From<decide::Outcome> for GuardOutcome {
    fn from(o: decide::Outcome) -> Self {
        let header = decide::guard_header(&o, None);
        let (body, status) = match o.effect {
            Effect::Keep => (None, None),
            Effect::Replace(body) => (Some(body), None),
            Effect::Reply { status, body, .. } => (Some(body), Some(status)),
        };
        GuardOutcome {
            label: o.label.as_str(),
            header,
            body,
            status,
        }
    }
}

fn set(object: &JsValue, key: &str, value: &JsValue) -> Result<(), JsValue> {
    js_sys::Reflect::set(object, &JsValue::from_str(key), value).map(drop)
}

/// The outcome as a plain object, its body a `Uint8Array`.
fn outcome_to_js(outcome: decide::Outcome) -> Result<JsValue, JsValue> {
    let outcome = GuardOutcome::from(outcome);
    let object = to_js(&outcome)?;
    if let Some(body) = &outcome.body {
        set(&object, "body", &Uint8Array::from(body.as_slice()).into())?;
    }
    Ok(object)
}

/// What a response's status and headers decide.
#[derive(Debug, Serialize, Tsify)]
pub struct GuardStart {
    /// `pass`: not a candidate, send it untouched; `inspect`: buffer the body, then `evaluate`;
    /// `sniff`: `sniff` the first bytes first; `decided`: `outcome` is known already.
    #[tsify(type = "\"pass\" | \"inspect\" | \"sniff\" | \"decided\"")]
    pub kind: &'static str,
    /// The body is gzip: pass this to `sniff` and `evaluate`.
    pub gzip: bool,
    #[serde(skip)]
    #[tsify(optional)]
    pub outcome: Option<GuardOutcome>,
}

fn encoding(gzip: bool) -> Encoding {
    if gzip {
        Encoding::Gzip
    } else {
        Encoding::Identity
    }
}

/// The edge filter's response decisions (`twiml_guard_edge::decide`) under one configuration,
/// validated once.
#[wasm_bindgen]
pub struct Guard {
    config: Config,
}

#[wasm_bindgen]
impl Guard {
    /// A bad option is a TypeError naming it.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "GuardOptions")] options: JsValue,
    ) -> Result<Guard, JsValue> {
        let options: GuardOptions = read_options(options, "options")?;
        let config = guard::config(&options).map_err(|e| type_error(&e))?;
        Ok(Guard { config })
    }

    #[wasm_bindgen(getter, js_name = maxBodyBytes)]
    pub fn max_body_bytes(&self) -> usize {
        self.config.max_body_bytes
    }

    /// A response's status and headers (each repeated header's values joined with `, `).
    #[wasm_bindgen(unchecked_return_type = "GuardStart")]
    pub fn start(
        &self,
        status: u16,
        content_type: Option<String>,
        content_encoding: Option<String>,
        content_length: Option<String>,
    ) -> Result<JsValue, JsValue> {
        let info = ResponseInfo {
            status: Some(status.to_string()),
            content_type,
            content_encoding,
            content_length,
            end_of_stream: false,
        };
        let (kind, gzip, outcome) = match decide::start_response(&self.config, &info) {
            ResponseStart::Pass(_) => ("pass", false, None),
            ResponseStart::Inspect(e) => ("inspect", e == Encoding::Gzip, None),
            ResponseStart::Sniff(e) => ("sniff", e == Encoding::Gzip, None),
            ResponseStart::Early(o) => ("decided", false, Some(o)),
        };
        let start = to_js(&GuardStart {
            kind,
            gzip,
            outcome: None,
        })?;
        if let Some(outcome) = outcome {
            set(&start, "outcome", &outcome_to_js(outcome)?)?;
        }
        Ok(start)
    }

    /// For `sniff`: whether the first bytes received (`complete`: the whole body) open TwiML.
    #[wasm_bindgen(unchecked_return_type = "\"twiml\" | \"not_twiml\" | \"need_more\"")]
    pub fn sniff(&self, received: &[u8], gzip: bool, complete: bool) -> String {
        match decide::sniff_body(&self.config, received, encoding(gzip), complete) {
            twiml::Sniff::Twiml => "twiml",
            twiml::Sniff::NotTwiml => "not_twiml",
            twiml::Sniff::NeedMore => "need_more",
        }
        .to_owned()
    }

    /// The whole body, as received, to its outcome.
    #[wasm_bindgen(unchecked_return_type = "GuardOutcome")]
    pub fn evaluate(&self, body: &[u8], gzip: bool) -> Result<JsValue, JsValue> {
        outcome_to_js(decide::evaluate(&self.config, body, encoding(gzip)))
    }
}
