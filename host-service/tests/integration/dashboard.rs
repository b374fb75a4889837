//! The dashboard's routes through the router with `oneshot`: sign-in for a session cookie that
//! the API accepts, the sign-in page for pages without one, loopback only without a token, the
//! playground's lint, the edge panel against a stand-in Envoy admin on a real socket, and the
//! live feed's first event and its answer while the database hangs.

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use axum::response::Response;
use host_service::config::Config;
use http_body_util::BodyExt;
use std::net::SocketAddr;
use tower::ServiceExt;

const TOKEN: &str = "a-long-enough-api-token";

struct Fixture {
    _data: tempfile::TempDir,
    _stop: tokio::sync::watch::Sender<bool>,
    app: axum::Router,
}

async fn fixture(token: Option<&str>, edge: Option<String>) -> Fixture {
    let data = tempfile::tempdir().unwrap();
    let mut c = Config {
        data_dir: data.path().join("data"),
        api_token: token.map(str::to_owned),
        ..Config::default()
    };
    c.twilio.validate_signatures = false;
    c.edge.envoy_admin_url = edge;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let state = host_service::open(c, rx).await.unwrap();
    Fixture {
        _data: data,
        _stop: tx,
        app: host_service::app(state),
    }
}

async fn send(app: &axum::Router, mut req: Request<Body>, peer: &str) -> Response {
    req.extensions_mut()
        .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
    app.clone().oneshot(req).await.unwrap()
}

async fn text(resp: Response) -> String {
    String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut r = Request::get(path);
    if let Some(c) = cookie {
        r = r.header(header::COOKIE, c);
    }
    r.body(Body::empty()).unwrap()
}

fn sign_in(token: &str, next: &str) -> Request<Body> {
    let form: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("token", token)
        .append_pair("next", next)
        .finish();
    Request::post("/dashboard/signin")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .unwrap()
}

#[tokio::test]
async fn a_signed_in_session_reads_the_api_and_pages_until_signed_out() {
    let f = fixture(Some(TOKEN), None).await;
    const PEER: &str = "198.51.100.4:4000";
    // Without a session: the sign-in page for pages, 401 JSON for the API.
    let resp = send(&f.app, get("/dashboard/", None), PEER).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let csp = resp.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let page = text(resp).await;
    assert!(page.contains("action=\"/dashboard/signin\""), "{page}");
    assert!(!page.contains("signin-error"));
    let resp = send(&f.app, get("/api/calls", None), PEER).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // A wrong token: the page again, with the notice, and no cookie.
    let resp = send(&f.app, sign_in("not-the-token", "/dashboard/edge"), PEER).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().get(header::SET_COOKIE).is_none());
    assert!(text(resp).await.contains("signin-error"));

    // The token: a cookie, and back to where the page was asked for.
    let resp = send(&f.app, sign_in(TOKEN, "/dashboard/edge"), PEER).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[header::LOCATION], "/dashboard/edge");
    let set = resp.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(
        set.ends_with("; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_owned();
    assert_eq!(cookie.len(), "tg_session=".len() + 64);

    let resp = send(&f.app, get("/api/calls", Some(&cookie)), PEER).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = send(
        &f.app,
        get("/dashboard/", Some(&format!("a=b; {cookie}"))),
        PEER,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(text(resp).await.contains("<h1>Calls</h1>"));

    // An off-site `next` is not followed.
    let resp = send(&f.app, sign_in(TOKEN, "https://evil.example/"), PEER).await;
    assert_eq!(resp.headers()[header::LOCATION], "/dashboard/");

    // Signing out ends the session server-side, not only in the browser.
    let out = Request::post("/dashboard/signout")
        .header(header::COOKIE, &cookie)
        .body(Body::empty())
        .unwrap();
    let resp = send(&f.app, out, PEER).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert!(resp.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let resp = send(&f.app, get("/api/calls", Some(&cookie)), PEER).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn without_a_token_the_dashboard_is_loopback_only() {
    let f = fixture(None, None).await;
    let resp = send(&f.app, get("/dashboard/", None), "10.0.0.9:1").await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(text(resp).await.contains("Loopback only"));
    let resp = send(&f.app, get("/dashboard/playground", None), "127.0.0.1:1").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(text(resp).await.contains("TwiML playground"));
    // Assets carry no data: open to all, with their types.
    let resp = send(&f.app, get("/dashboard/assets/list.js", None), "10.0.0.9:1").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    let resp = send(
        &f.app,
        get("/dashboard/assets/nope.js", None),
        "127.0.0.1:1",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = send(&f.app, get("/dashboard/calls/CA123", None), "127.0.0.1:1").await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // Signing in means nothing without a token.
    let resp = send(&f.app, sign_in("anything", "/dashboard/"), "10.0.0.9:1").await;
    assert!(resp.headers().get(header::SET_COOKIE).is_none());
}

#[tokio::test]
async fn the_playground_lints_and_rewrites_the_seed() {
    let f = fixture(None, None).await;
    let seed = include_str!("../../../twiml/fixtures/seed_001.xml");
    let req = Request::post("/api/lint?action=strip")
        .body(Body::from(seed))
        .unwrap();
    let resp = send(&f.app, req, "127.0.0.1:1").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&text(resp).await).unwrap();
    assert_eq!(v["lint"]["verdict"], "conflict");
    assert_eq!(v["lint"]["diagnostics"][0]["code"], "TG001");
    assert_eq!(
        v["rewrite"]["twiml"],
        include_str!("../../../twiml/fixtures/seed_001.strip.xml")
    );
    let big = vec![b' '; 64 * 1024 + 1];
    let resp = send(
        &f.app,
        Request::post("/api/lint").body(Body::from(big)).unwrap(),
        "127.0.0.1:1",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Behind the API's rule like the rest.
    let resp = send(
        &f.app,
        Request::post("/api/lint").body(Body::from(seed)).unwrap(),
        "10.0.0.9:1",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}

/// A stand-in for Envoy's admin: answers `/stats` with a fixed text and records the query.
async fn admin_stand_in(
    body: &'static str,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/stats",
        axum::routing::get(move |uri: axum::http::Uri| {
            let log = log.clone();
            async move {
                log.lock()
                    .unwrap()
                    .push(uri.query().unwrap_or_default().to_owned());
                body
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn the_edge_panel_reads_envoys_admin_and_says_when_it_cannot() {
    let (url, seen) = admin_stand_in(
        "wasmcustom.twiml_guard.responses.rewritten_total: 7\n\
         wasmcustom.twiml_guard.mode.strict: 1\n\
         wasmcustom.twiml_guard.rules: 2\n",
    )
    .await;
    let f = fixture(None, Some(url.clone())).await;
    let resp = send(&f.app, get("/api/edge", None), "127.0.0.1:1").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&text(resp).await).unwrap();
    assert_eq!(v["mode"], "strict");
    assert_eq!(v["rules"], 2);
    assert_eq!(v["counters"]["rewritten"], 7);
    assert_eq!(v["counters"]["rejected"], 0);
    assert_eq!(seen.lock().unwrap().as_slice(), ["filter=twiml_guard"]);

    // An answer that is not the admin's stats text: an error naming the line, not zeros.
    let (url, _) = admin_stand_in("<html>\n").await;
    let f = fixture(None, Some(url)).await;
    let resp = send(&f.app, get("/api/edge", None), "127.0.0.1:1").await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let v: serde_json::Value = serde_json::from_str(&text(resp).await).unwrap();
    assert_eq!(v["error"]["code"], "edge_bad_answer");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .ends_with("line 1 is not `name: value`: \"<html>\""));

    // Nothing listening: an error with the URL, not zeros.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let f = fixture(None, Some(format!("http://{dead}"))).await;
    let resp = send(&f.app, get("/api/edge", None), "127.0.0.1:1").await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let v: serde_json::Value = serde_json::from_str(&text(resp).await).unwrap();
    assert_eq!(v["error"]["code"], "edge_unreachable");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains(&dead.to_string()));

    let f = fixture(None, None).await;
    let resp = send(&f.app, get("/api/edge", None), "127.0.0.1:1").await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let v: serde_json::Value = serde_json::from_str(&text(resp).await).unwrap();
    assert_eq!(v["error"]["code"], "edge_not_configured");
}

#[tokio::test]
async fn the_feed_starts_with_a_snapshot() {
    let f = fixture(None, None).await;
    let resp = send(&f.app, get("/api/events", None), "127.0.0.1:1").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = resp.into_body();
    let frame = tokio::time::timeout(std::time::Duration::from_secs(5), body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let chunk = String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap();
    assert_eq!(
        chunk,
        "event: snapshot\ndata: {\"calls\":[]}\nretry: 1000\n\n"
    );
}

/// A hung database (the whole PostgreSQL cluster frozen) answers the live feed's snapshot with
/// 503 `database_unavailable` within `database.read_timeout_ms`, as it answers the calls API:
/// the feed's read is bounded like every other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (test-support's PgCluster): `make test` runs it"]
async fn a_hung_database_answers_the_feed_with_unavailable_within_the_read_timeout() {
    let pg = test_support::PgCluster::started().await;
    let data = tempfile::tempdir().unwrap();
    let mut c = Config {
        data_dir: data.path().join("data"),
        ..Config::default()
    };
    c.twilio.validate_signatures = false;
    c.database.url = Some(pg.database("host_service").unwrap());
    c.database.read_timeout_ms = 300;
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let app = host_service::app(host_service::open(c, rx).await.unwrap());
    pg.pause().unwrap();
    // Well under the pool's own wait for a connection (10 s), which is all that bounded it.
    let answered = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        send(&app, get("/api/events", None), "127.0.0.1:1"),
    )
    .await;
    pg.resume().unwrap();
    let resp = answered.expect("the feed answered while the database was frozen");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let v: serde_json::Value = serde_json::from_str(&text(resp).await).unwrap();
    assert_eq!(v["error"]["code"], "database_unavailable");
    assert_eq!(v["error"]["message"], "database: no answer within 300 ms");
}
