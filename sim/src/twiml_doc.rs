//! TwiML as Twilio reads it: a `<Response>` document parsed (quick-xml) into the verbs the
//! simulator executes. Pure: bytes in, verbs or a reason the document would be refused out.

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;
use quick_xml::Reader;

/// One `<Stream>`, from `<Connect>` or `<Start>`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StreamSpec {
    pub url: String,
    pub name: Option<String>,
    /// `inbound_track` (the default), `outbound_track` or `both_tracks`.
    pub track: String,
    pub status_callback: Option<String>,
    /// `<Parameter name value>` children, in document order.
    pub parameters: Vec<(String, String)>,
}

/// The HTTP method of a request Twilio makes (`method` attributes, the voice webhook).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
pub enum Method {
    #[serde(rename = "GET")]
    #[value(name = "GET")]
    Get,
    #[serde(rename = "POST")]
    #[value(name = "POST")]
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for Method {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Method {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A `<Record>`, with Twilio's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecordSpec {
    pub action: Option<String>,
    pub method: Method,
    /// Seconds of silence that end the recording; 0 disables silence detection.
    pub timeout: u32,
    pub max_length: u32,
    pub play_beep: bool,
    /// Every attribute as written, sorted, so two identical `<Record>`s compare equal.
    pub attributes: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "verb", rename_all = "snake_case")]
pub enum Verb {
    Say {
        text: String,
        loops: u32,
    },
    Play {
        url: String,
        loops: u32,
    },
    Pause {
        length: u32,
    },
    Record(RecordSpec),
    /// `<Connect>` blocks while its stream runs; `action` is requested when it ends.
    Connect {
        action: Option<String>,
        method: Method,
        stream: Option<StreamSpec>,
        /// The noun inside when it is not a `<Stream>` (`Conversation`, `VirtualAgent`, ...).
        other: Option<String>,
    },
    /// `<Start><Stream>` (non-blocking) or `<Start><Recording>`.
    Start {
        stream: Option<StreamSpec>,
        recording: bool,
    },
    /// `<Stop><Stream>`: ends a forked stream.
    Stop,
    Redirect {
        url: String,
        method: Method,
    },
    Hangup,
    Reject {
        reason: String,
    },
    /// A verb Twilio knows that the simulator does not play (`Gather`, `Dial`, ...).
    Unsupported {
        name: String,
    },
}

impl Verb {
    pub fn name(&self) -> &str {
        match self {
            Verb::Say { .. } => "Say",
            Verb::Play { .. } => "Play",
            Verb::Pause { .. } => "Pause",
            Verb::Record(_) => "Record",
            Verb::Connect { .. } => "Connect",
            Verb::Start { .. } => "Start",
            Verb::Stop => "Stop",
            Verb::Redirect { .. } => "Redirect",
            Verb::Hangup => "Hangup",
            Verb::Reject { .. } => "Reject",
            Verb::Unsupported { name } => name,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub verbs: Vec<Verb>,
}

/// Why Twilio would refuse a document (its error 12100, "Document parse failure").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocError {
    #[error("not well-formed XML: {0}")]
    Xml(String),
    #[error("the root element is <{0}>, not <Response>")]
    NotTwiml(String),
    #[error("empty document")]
    Empty,
    #[error("<{verb}> has an invalid {attribute}={value:?}")]
    BadAttribute {
        verb: String,
        attribute: &'static str,
        value: String,
    },
    #[error("<{verb}> is missing {what}")]
    Missing { verb: String, what: &'static str },
    #[error("<{0}> is not a TwiML verb")]
    UnknownVerb(String),
}

/// An element with its attributes, text and children: enough structure to read TwiML.
#[derive(Debug, Default)]
struct Element {
    name: String,
    attrs: Vec<(String, String)>,
    text: String,
    children: Vec<Element>,
}

impl Element {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn xml_err(e: impl std::fmt::Display, reader: &Reader<&[u8]>) -> DocError {
    DocError::Xml(format!("{e} (at byte {})", reader.buffer_position()))
}

fn read_element(start: &quick_xml::events::BytesStart<'_>) -> Result<Element, String> {
    let mut el = Element {
        name: String::from_utf8_lossy(start.name().as_ref()).into_owned(),
        ..Element::default()
    };
    for attr in start.attributes() {
        let attr = attr.map_err(|e| e.to_string())?;
        let key = String::from_utf8_lossy(attr.key.as_ref()).into_owned();
        let value = attr.unescape_value().map_err(|e| e.to_string())?;
        el.attrs.push((key, value.into_owned()));
    }
    Ok(el)
}

fn parse_tree(body: &[u8]) -> Result<Element, DocError> {
    let mut reader = Reader::from_reader(body);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let event = reader.read_event().map_err(|e| xml_err(e, &reader))?;
        match event {
            Event::Start(start) => {
                if root.is_some() {
                    return Err(DocError::Xml("content after the root element".into()));
                }
                stack.push(read_element(&start).map_err(|e| xml_err(e, &reader))?);
            }
            Event::Empty(start) => {
                if root.is_some() {
                    return Err(DocError::Xml("content after the root element".into()));
                }
                let el = read_element(&start).map_err(|e| xml_err(e, &reader))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::End(_) => {
                let el = stack
                    .pop()
                    .ok_or_else(|| DocError::Xml("unbalanced end tag".into()))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(text) => {
                let text = text.decode().map_err(|e| xml_err(e, &reader))?;
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => return Err(DocError::Xml("text outside the root element".into())),
                }
            }
            Event::CData(data) => {
                let text = data.decode().map_err(|e| xml_err(e, &reader))?;
                if let Some(el) = stack.last_mut() {
                    el.text.push_str(&text);
                }
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref().map_err(|e| xml_err(e, &reader))? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().map_err(|e| xml_err(e, &reader))?;
                        resolve_predefined_entity(&name)
                            .ok_or_else(|| DocError::Xml(format!("unknown entity &{name};")))?
                            .to_owned()
                    }
                };
                if let Some(el) = stack.last_mut() {
                    el.text.push_str(&resolved);
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
    if let Some(open) = stack.last() {
        return Err(DocError::Xml(format!("<{}> is never closed", open.name)));
    }
    root.ok_or(DocError::Empty)
}

fn number(el: &Element, attribute: &'static str, default: u32) -> Result<u32, DocError> {
    match el.attr(attribute) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| DocError::BadAttribute {
            verb: el.name.clone(),
            attribute,
            value: v.to_owned(),
        }),
    }
}

fn method(el: &Element) -> Result<Method, DocError> {
    match el.attr("method").map(|m| m.trim().to_ascii_uppercase()) {
        None => Ok(Method::Post),
        Some(m) if m == "POST" => Ok(Method::Post),
        Some(m) if m == "GET" => Ok(Method::Get),
        Some(m) => Err(DocError::BadAttribute {
            verb: el.name.clone(),
            attribute: "method",
            value: m,
        }),
    }
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn stream(el: &Element) -> Result<StreamSpec, DocError> {
    let url = non_empty(el.attr("url")).ok_or(DocError::Missing {
        verb: "Stream".into(),
        what: "its url",
    })?;
    let mut parameters = Vec::new();
    for child in &el.children {
        if child.name != "Parameter" {
            return Err(DocError::UnknownVerb(format!("Stream><{}", child.name)));
        }
        let name = non_empty(child.attr("name")).ok_or(DocError::Missing {
            verb: "Parameter".into(),
            what: "its name",
        })?;
        parameters.push((name, child.attr("value").unwrap_or_default().to_owned()));
    }
    Ok(StreamSpec {
        url,
        name: non_empty(el.attr("name")),
        track: non_empty(el.attr("track")).unwrap_or_else(|| "inbound_track".into()),
        status_callback: non_empty(el.attr("statusCallback")),
        parameters,
    })
}

fn verb(el: &Element) -> Result<Verb, DocError> {
    Ok(match el.name.as_str() {
        "Say" => Verb::Say {
            text: el.text.trim().to_owned(),
            loops: number(el, "loop", 1)?,
        },
        "Play" => Verb::Play {
            url: el.text.trim().to_owned(),
            loops: number(el, "loop", 1)?,
        },
        "Pause" => Verb::Pause {
            length: number(el, "length", 1)?,
        },
        "Record" => {
            let mut attributes = el.attrs.clone();
            attributes.sort();
            Verb::Record(RecordSpec {
                action: non_empty(el.attr("action")),
                method: method(el)?,
                timeout: number(el, "timeout", 5)?,
                max_length: number(el, "maxLength", 3600)?,
                play_beep: el.attr("playBeep").map(str::trim) != Some("false"),
                attributes,
            })
        }
        "Connect" => {
            let inner = el.children.first();
            let (stream_spec, other) = match inner {
                Some(c) if c.name == "Stream" => (Some(stream(c)?), None),
                Some(c) => (None, Some(c.name.clone())),
                None => (None, None),
            };
            Verb::Connect {
                action: non_empty(el.attr("action")),
                method: method(el)?,
                stream: stream_spec,
                other,
            }
        }
        "Start" => {
            let mut stream_spec = None;
            let mut recording = false;
            for c in &el.children {
                match c.name.as_str() {
                    "Stream" => stream_spec = Some(stream(c)?),
                    "Recording" => recording = true,
                    "Siprec" | "Transcription" => {}
                    other => return Err(DocError::UnknownVerb(format!("Start><{other}"))),
                }
            }
            Verb::Start {
                stream: stream_spec,
                recording,
            }
        }
        "Stop" => Verb::Stop,
        "Redirect" => Verb::Redirect {
            url: non_empty(Some(&el.text)).ok_or(DocError::Missing {
                verb: "Redirect".into(),
                what: "a URL",
            })?,
            method: method(el)?,
        },
        "Hangup" => Verb::Hangup,
        "Reject" => Verb::Reject {
            reason: el.attr("reason").unwrap_or("rejected").to_owned(),
        },
        "Gather" | "Dial" | "Enqueue" | "Leave" | "Pay" | "Prompt" | "Refer" | "Sms"
        | "Message" | "Echo" | "Queue" => Verb::Unsupported {
            name: el.name.clone(),
        },
        other => return Err(DocError::UnknownVerb(other.to_owned())),
    })
}

/// Parse a webhook answer the way Twilio does before running it.
pub fn parse(body: &[u8]) -> Result<Document, DocError> {
    let root = parse_tree(body)?;
    if root.name != "Response" {
        return Err(DocError::NotTwiml(root.name));
    }
    let verbs = root.children.iter().map(verb).collect::<Result<_, _>>()?;
    Ok(Document { verbs })
}

#[cfg(test)]
#[path = "twiml_doc_tests.rs"]
pub(crate) mod tests;
