//! Upstreams for end-to-end tests: a raw HTTP/1.1 server that writes exactly the bytes a test asks
//! for (Content-Length or chunked framing with chosen chunk boundaries, gzip, bodiless replies),
//! and a WebSocket echo server for the media path.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::{HarnessError, Result};

/// A request as the upstream received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// How the body goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// No body and no framing header (for 204 and 304).
    None,
    /// `content-length` framing. For HEAD the header is sent and the body is not.
    Length(Vec<u8>),
    /// `transfer-encoding: chunked`, one HTTP chunk per element, written and flushed apart.
    Chunked(Vec<Vec<u8>>),
}

/// A scripted reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Reply {
    pub fn new(status: u16, body: Body) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body,
        }
    }

    /// 200 with `content-type` and a Content-Length body.
    pub fn ok(content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Reply::new(200, Body::Length(body.into())).header("content-type", content_type)
    }

    /// 200 with `content-type` and a chunked body split at the given byte offsets.
    pub fn chunked(content_type: &str, body: &[u8], splits: &[usize]) -> Self {
        let mut chunks = Vec::new();
        let mut start = 0;
        for &at in splits.iter().chain(std::iter::once(&body.len())) {
            let at = at.clamp(start, body.len());
            if at > start {
                chunks.push(body[start..at].to_vec());
            }
            start = at;
        }
        Reply::new(200, Body::Chunked(chunks)).header("content-type", content_type)
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

/// Between chunks of a chunked reply the server pauses briefly, so that Envoy reads them apart
/// and the filter sees each boundary (a chunk ending inside `<Record` arrives in two body
/// callbacks). This paces the server; no test waits on it.
const CHUNK_GAP: Duration = Duration::from_millis(30);

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// A raw HTTP/1.1 upstream on an ephemeral port. Stops when dropped.
pub struct RawUpstream {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    task: JoinHandle<()>,
}

impl RawUpstream {
    pub async fn start(
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> Result<Self> {
        let listener =
            TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|source| HarnessError::Io {
                    context: "binding the raw upstream".into(),
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| HarnessError::Io {
            context: "raw upstream address".into(),
            source,
        })?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let seen = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let handler = Arc::clone(&handler);
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    let _ = serve(stream, handler, seen).await;
                });
            }
        });
        Ok(RawUpstream {
            addr,
            requests,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    stream: TcpStream,
    handler: Arc<Handler>,
    seen: Arc<Mutex<Vec<Request>>>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    loop {
        let Some(req) = read_request(&mut read).await? else {
            return Ok(());
        };
        let reply = handler(&req);
        let head_only = req.method.eq_ignore_ascii_case("HEAD");
        if let Ok(mut s) = seen.lock() {
            s.push(req);
        }
        write_reply(&mut write, &reply, head_only).await?;
    }
}

async fn read_request<R: AsyncBufReadExt + Unpin>(r: &mut R) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    if r.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).await? == 0 {
            return Ok(None);
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let mut req = Request {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    if let Some(len) = req
        .header("content-length")
        .and_then(|l| l.parse::<usize>().ok())
    {
        let mut body = vec![0; len];
        r.read_exact(&mut body).await?;
        req.body = body;
    } else if req
        .header("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).await?;
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).await?;
            if n == 0 {
                break;
            }
            chunk.truncate(n);
            req.body.extend(chunk);
        }
    }
    Ok(Some(req))
}

async fn write_reply<W: AsyncWriteExt + Unpin>(
    w: &mut W,
    reply: &Reply,
    head_only: bool,
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (n, v) in &reply.headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    match &reply.body {
        Body::None => {}
        Body::Length(b) => head.push_str(&format!("content-length: {}\r\n", b.len())),
        Body::Chunked(_) => head.push_str("transfer-encoding: chunked\r\n"),
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes()).await?;
    w.flush().await?;
    if head_only {
        return Ok(());
    }
    match &reply.body {
        Body::None => {}
        Body::Length(b) => w.write_all(b).await?,
        Body::Chunked(chunks) => {
            for c in chunks {
                tokio::time::sleep(CHUNK_GAP).await;
                w.write_all(format!("{:x}\r\n", c.len()).as_bytes()).await?;
                w.write_all(c).await?;
                w.write_all(b"\r\n").await?;
                w.flush().await?;
            }
            tokio::time::sleep(CHUNK_GAP).await;
            w.write_all(b"0\r\n\r\n").await?;
        }
    }
    w.flush().await
}

/// A WebSocket server that echoes every text and binary message back, on an ephemeral port.
/// Counts the handshakes it accepted. Stops when dropped.
pub struct WsEcho {
    addr: SocketAddr,
    accepted: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl WsEcho {
    // The handshake callback's error type is tungstenite's, large by its design.
    #[allow(clippy::result_large_err)]
    pub async fn start() -> Result<Self> {
        let listener =
            TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|source| HarnessError::Io {
                    context: "binding the websocket echo".into(),
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| HarnessError::Io {
            context: "websocket echo address".into(),
            source,
        })?;
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    let path = Arc::new(Mutex::new(String::new()));
                    let p = Arc::clone(&path);
                    let callback =
                        move |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                              resp| {
                            if let Ok(mut p) = p.lock() {
                                *p = req.uri().to_string();
                            }
                            Ok(resp)
                        };
                    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await
                    else {
                        return;
                    };
                    if let (Ok(mut s), Ok(p)) = (seen.lock(), path.lock()) {
                        s.push(p.clone());
                    }
                    while let Some(Ok(msg)) = ws.next().await {
                        if msg.is_text() || msg.is_binary() {
                            if ws.send(msg).await.is_err() {
                                return;
                            }
                        } else if msg.is_close() {
                            return;
                        }
                    }
                });
            }
        });
        Ok(WsEcho {
            addr,
            accepted,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The request URIs of the handshakes accepted so far.
    pub fn accepted(&self) -> Vec<String> {
        self.accepted.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

impl Drop for WsEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}
