//! Extraction through `POST {base_url}/v1/chat/completions` with a strict JSON schema: the
//! request, the schema, and the answer checked against what the schema promised.

use super::client::Api;
use crate::extract::{resolve_timezone, segment_listing};
use crate::{
    EngineError, ExtractRequest, Extraction, Extractor, OpenAiConfig, OpenAiExtractionConfig,
};
use serde_json::{json, Value};

pub struct OpenAiExtractor {
    api: Api,
    model: String,
    tz: jiff::tz::TimeZone,
}

impl OpenAiExtractor {
    /// The `[openai]` client with `[extraction.openai]`'s model and time zone.
    pub fn new(client: &OpenAiConfig, cfg: &OpenAiExtractionConfig) -> Result<Self, EngineError> {
        cfg.validate()?;
        Ok(OpenAiExtractor {
            api: Api::new(client)?,
            model: cfg.model.clone(),
            tz: resolve_timezone(&cfg.timezone, "extraction.openai.timezone")?,
        })
    }

    /// The chat completion request body (public so its shape is tested without a server).
    pub fn request_body(&self, req: &ExtractRequest) -> Value {
        let started = jiff::Timestamp::from_millisecond(req.call_started_at_ms)
            .map(|t| {
                t.to_zoned(self.tz.clone())
                    .strftime("%Y-%m-%dT%H:%M:%S%:z (%A)")
                    .to_string()
            })
            .unwrap_or_else(|_| "unknown".into());
        json!({
            "model": self.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": format!(
                    "The call started at {started}.\nTranscript segments (index, speaker, \
                     seconds, text):\n{}",
                    segment_listing(&req.transcript.segments)
                )},
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "call_fields", "strict": true, "schema": schema()},
            },
        })
    }
}

const SYSTEM_PROMPT: &str = "You extract facts from a phone call transcript for the business \
that took the call. Use only what the transcript says. Phone numbers in E.164. Dates and times \
in ISO 8601 with the UTC offset of the call's start time, relative ones (\"tomorrow at nine\") \
resolved against it. Every item names the index of the segment it came from. The summary is at \
most three sentences.";

/// The answer's JSON schema: every field of the local engine plus intent and sentiment.
pub fn schema() -> Value {
    let item = |extra: Value| {
        let mut props = json!({
            "value": {"type": "string"},
            "text": {"type": "string"},
            "segment": {"type": "integer"},
        });
        if let (Some(p), Some(e)) = (props.as_object_mut(), extra.as_object()) {
            p.extend(e.clone());
        }
        let required: Vec<&String> = props
            .as_object()
            .map(|p| p.keys().collect())
            .unwrap_or_default();
        json!({"type": "object", "additionalProperties": false, "properties": props, "required": required})
    };
    json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "summary": {"type": "string"},
            "summary_segments": {"type": "array", "items": {"type": "integer"}},
            "intent": {"type": "string"},
            "sentiment": {"type": "string", "enum": ["positive", "neutral", "negative"]},
            "phone_numbers": {"type": "array", "items": item(json!({}))},
            "emails": {"type": "array", "items": item(json!({}))},
            "datetimes": {"type": "array", "items": item(json!({}))},
            "callback": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "requested": {"type": "boolean"},
                    "segment": {"type": ["integer", "null"]},
                    "at": {"type": ["string", "null"]},
                },
                "required": ["requested", "segment", "at"],
            },
        },
        "required": ["summary", "summary_segments", "intent", "sentiment", "phone_numbers",
                     "emails", "datetimes", "callback"],
    })
}

/// Check a model's answer against what the schema promised: a model can still break it, and
/// a segment index outside the transcript would send a reader to the wrong line.
pub fn parse_answer(body: &str, segments: usize) -> Result<Extraction, EngineError> {
    let bad = |why: String| EngineError::Transient(format!("extraction answer: {why}"));
    let outer: Value = serde_json::from_str(body).map_err(|e| bad(e.to_string()))?;
    let content = outer
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            match outer
                .pointer("/choices/0/message/refusal")
                .and_then(Value::as_str)
            {
                Some(r) => EngineError::Permanent(format!("extraction refused: {r}")),
                None => bad("no choices[0].message.content".into()),
            }
        })?;
    let mut fields: Value = serde_json::from_str(content).map_err(|e| bad(e.to_string()))?;
    let summary = fields
        .get("summary")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no summary".into()))?
        .to_string();
    for key in ["phone_numbers", "emails", "datetimes"] {
        let items = fields
            .get(key)
            .and_then(Value::as_array)
            .ok_or_else(|| bad(format!("no {key} list")))?;
        for item in items {
            check_segment(item.get("segment"), segments).map_err(|e| bad(format!("{key}: {e}")))?;
        }
    }
    let callback = fields
        .get("callback")
        .ok_or_else(|| bad("no callback".into()))?;
    if !callback.get("requested").is_some_and(Value::is_boolean) {
        return Err(bad("callback.requested is not a boolean".into()));
    }
    if let Some(seg) = callback.get("segment").filter(|v| !v.is_null()) {
        check_segment(Some(seg), segments).map_err(|e| bad(format!("callback: {e}")))?;
    }
    if let Some(obj) = fields.as_object_mut() {
        obj.remove("summary");
    }
    Ok(Extraction {
        summary,
        fields,
        engine: "openai".into(),
    })
}

fn check_segment(v: Option<&Value>, segments: usize) -> Result<(), String> {
    match v.and_then(Value::as_u64) {
        Some(i) if (i as usize) < segments => Ok(()),
        Some(i) => Err(format!("segment {i} does not exist ({segments} segments)")),
        None => Err("segment index missing".into()),
    }
}

#[async_trait::async_trait]
impl Extractor for OpenAiExtractor {
    async fn extract(&self, req: &ExtractRequest) -> Result<Extraction, EngineError> {
        let body = self.request_body(req);
        let answer = self
            .api
            .post("chat/completions", |r| Ok(r.json(&body)))
            .await?;
        parse_answer(&answer, req.transcript.segments.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(content: &Value) -> String {
        json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": content.to_string()}}]})
            .to_string()
    }

    fn good_fields() -> Value {
        json!({
            "summary": "Caller wants a callback.",
            "summary_segments": [0],
            "intent": "callback",
            "sentiment": "neutral",
            "phone_numbers": [{"value": "+15551234567", "text": "555 123 4567", "segment": 1}],
            "emails": [],
            "datetimes": [],
            "callback": {"requested": true, "segment": 0, "at": null},
        })
    }

    #[test]
    fn answers_are_checked() {
        let e = parse_answer(&answer(&good_fields()), 2).unwrap();
        assert_eq!(e.summary, "Caller wants a callback.");
        assert_eq!(e.engine, "openai");
        assert_eq!(e.fields["intent"], "callback");
        assert!(e.fields.get("summary").is_none());

        let err = parse_answer(&answer(&good_fields()), 1).unwrap_err();
        assert_eq!(
            err,
            EngineError::Transient(
                "extraction answer: phone_numbers: segment 1 does not exist (1 segments)".into()
            )
        );
        let mut f = good_fields();
        f["callback"]["requested"] = json!("yes");
        assert!(parse_answer(&answer(&f), 2).is_err());
        let refusal = json!({"choices": [{"message": {"content": null, "refusal": "no"}}]});
        assert_eq!(
            parse_answer(&refusal.to_string(), 2).unwrap_err(),
            EngineError::Permanent("extraction refused: no".into())
        );
        assert!(parse_answer("not json", 2).is_err());
    }

    #[test]
    fn schema_is_strict() {
        let s = schema();
        assert_eq!(s["additionalProperties"], false);
        let props = s["properties"].as_object().unwrap();
        let required: Vec<&str> = s["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        // Strict mode requires every property to be listed as required.
        assert_eq!(props.len(), required.len());
        for k in props.keys() {
            assert!(required.contains(&k.as_str()), "{k}");
        }
        assert_eq!(
            s["properties"]["phone_numbers"]["items"]["required"],
            json!(["segment", "text", "value"])
        );
    }
}
