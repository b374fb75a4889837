//! Where a URL in TwiML is fetched versus which URL is signed. Twilio signs the public URL it
//! requests; `--local` sends the same request to a local address instead (the local Envoy), so the
//! signature still covers the public URL while the bytes go to 127.0.0.1.

use url::Url;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("{url:?} is not a valid URL: {reason}")]
    Invalid { url: String, reason: String },
    #[error("{0:?} is not a host:port address")]
    BadLocal(String),
    #[error("{url:?}: scheme {scheme:?} is not http, https, ws or wss")]
    Scheme { url: String, scheme: String },
}

/// One URL as Twilio sees it (`public`, what gets signed) and where the simulator sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub public: Url,
    pub fetch: Url,
}

impl Target {
    /// The `Host` header Twilio would send: the public authority.
    pub fn host_header(&self) -> String {
        let host = self.public.host_str().unwrap_or_default();
        match self.public.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        }
    }

    /// Whether the request goes somewhere other than the public URL.
    pub fn is_mapped(&self) -> bool {
        self.public != self.fetch
    }
}

/// `--local host:port`, or none: URLs are then fetched as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlMap {
    local: Option<(String, u16)>,
}

impl UrlMap {
    pub fn direct() -> Self {
        UrlMap { local: None }
    }

    pub fn local(addr: &str) -> Result<Self, UrlError> {
        let bad = || UrlError::BadLocal(addr.to_owned());
        let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains('/') {
            return Err(bad());
        }
        Ok(UrlMap {
            local: Some((host.to_owned(), port)),
        })
    }

    /// Resolve `raw` (absolute, or relative to the document that contained it, as Twilio does)
    /// and map it.
    pub fn resolve(&self, base: &Url, raw: &str) -> Result<Target, UrlError> {
        let public = base.join(raw.trim()).map_err(|e| UrlError::Invalid {
            url: raw.to_owned(),
            reason: e.to_string(),
        })?;
        self.map(public)
    }

    /// Parse an absolute URL (the webhook given on the command line) and map it.
    pub fn absolute(&self, raw: &str) -> Result<Target, UrlError> {
        let public = Url::parse(raw.trim()).map_err(|e| UrlError::Invalid {
            url: raw.to_owned(),
            reason: e.to_string(),
        })?;
        self.map(public)
    }

    fn map(&self, public: Url) -> Result<Target, UrlError> {
        let plain = match public.scheme() {
            "https" => "http",
            "wss" => "ws",
            "http" | "ws" => public.scheme(),
            other => {
                return Err(UrlError::Scheme {
                    url: public.to_string(),
                    scheme: other.to_owned(),
                })
            }
        }
        .to_owned();
        let Some((host, port)) = &self.local else {
            return Ok(Target {
                fetch: public.clone(),
                public,
            });
        };
        // Rebuild rather than mutate: `Url::set_scheme` refuses some special-scheme changes.
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let mut fetch =
            Url::parse(&format!("{plain}://{authority}/")).map_err(|e| UrlError::Invalid {
                url: format!("{host}:{port}"),
                reason: e.to_string(),
            })?;
        fetch.set_path(public.path());
        fetch.set_query(public.query());
        Ok(Target { public, fetch })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn local_maps_every_absolute_url_keeping_path_and_query() {
        let map = UrlMap::local("127.0.0.1:8080").unwrap();
        let base = url("https://voice.example.com/webhook/incoming_call");
        let t = map
            .resolve(&base, "wss://prosaas.pro/ws/twilio-media")
            .unwrap();
        assert_eq!(t.public.as_str(), "wss://prosaas.pro/ws/twilio-media");
        assert_eq!(t.fetch.as_str(), "ws://127.0.0.1:8080/ws/twilio-media");
        assert_eq!(t.host_header(), "prosaas.pro");
        let t = map
            .resolve(
                &base,
                "https://prosaas.pro:8443/webhook/stream_ended?x=1&y=2",
            )
            .unwrap();
        assert_eq!(
            t.fetch.as_str(),
            "http://127.0.0.1:8080/webhook/stream_ended?x=1&y=2"
        );
        assert_eq!(t.host_header(), "prosaas.pro:8443");
        let t = map.resolve(&base, "http://other:9/a").unwrap();
        assert_eq!(t.fetch.as_str(), "http://127.0.0.1:8080/a");
        assert!(t.is_mapped());
    }

    #[test]
    fn relative_urls_resolve_against_the_document() {
        let map = UrlMap::local("127.0.0.1:8080").unwrap();
        let base = url("https://voice.example.com/webhook/incoming_call?a=1");
        let t = map.resolve(&base, "stream_ended").unwrap();
        assert_eq!(
            t.public.as_str(),
            "https://voice.example.com/webhook/stream_ended"
        );
        assert_eq!(
            t.fetch.as_str(),
            "http://127.0.0.1:8080/webhook/stream_ended"
        );
        let t = map.resolve(&base, "/ws/media").unwrap();
        assert_eq!(t.public.as_str(), "https://voice.example.com/ws/media");
        let t = UrlMap::direct().resolve(&base, "").unwrap();
        assert_eq!(t.public, base);
    }

    #[test]
    fn direct_keeps_urls() {
        let t = UrlMap::direct()
            .absolute("http://127.0.0.1:8080/webhook/incoming_call")
            .unwrap();
        assert_eq!(t.public, t.fetch);
        assert!(!t.is_mapped());
        assert_eq!(t.host_header(), "127.0.0.1:8080");
    }

    #[test]
    fn refuses_bad_input() {
        assert_eq!(
            UrlMap::local("127.0.0.1"),
            Err(UrlError::BadLocal("127.0.0.1".into()))
        );
        assert!(UrlMap::local("host:99999").is_err());
        assert!(UrlMap::local(":80").is_err());
        assert!(matches!(
            UrlMap::direct().absolute("ftp://x/y"),
            Err(UrlError::Scheme { .. })
        ));
        assert!(matches!(
            UrlMap::direct().absolute("not a url"),
            Err(UrlError::Invalid { .. })
        ));
        assert_eq!(
            UrlMap::local("[::1]:8080")
                .unwrap()
                .absolute("https://a/b")
                .unwrap()
                .fetch
                .as_str(),
            "http://[::1]:8080/b"
        );
    }
}
