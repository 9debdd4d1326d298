//! Getting the JWKS document: the [`JwksFetcher`] trait and, with the `http` feature, [`HttpFetcher`].

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A boxed future, as returned by [`JwksFetcher::fetch`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What one fetch of the JWKS produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// A JWKS document.
    Keys {
        /// The response body: `{"keys": [...]}`.
        body: Vec<u8>,
        /// `Cache-Control: max-age`, if the response had one (`no-cache`/`no-store` count as 0). The
        /// verifier clamps it to its configured bounds.
        max_age: Option<Duration>,
        /// The `ETag`, sent back as `If-None-Match` next time.
        etag: Option<String>,
    },
    /// The server answered `304 Not Modified` to `If-None-Match`: the cached keys are still current.
    NotModified {
        /// `Cache-Control: max-age` of the 304 response, if any.
        max_age: Option<Duration>,
    },
}

/// Why a fetch failed. The verifier logs it and keeps the keys it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchError(String);

impl FetchError {
    /// An error with a message for logs (it must not contain secrets).
    pub fn new(message: impl std::fmt::Display) -> Self {
        Self(message.to_string())
    }
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FetchError {}

/// Fetches the JWKS document. The verifier calls it at most once at a time, and wraps every call in
/// its fetch timeout.
///
/// Implement it to serve keys from memory in tests, or to fetch them some other way.
pub trait JwksFetcher: Send + Sync + 'static {
    /// Fetches the JWKS. `etag` is the `ETag` of the document the verifier holds, if any.
    fn fetch<'a>(&'a self, etag: Option<&'a str>) -> BoxFuture<'a, Result<Fetched, FetchError>>;
}

/// The `max-age` of `Cache-Control` header values (directives are case-insensitive; the smallest
/// `max-age` wins when several are given; `no-cache` and `no-store` mean 0).
pub fn parse_max_age<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Duration> {
    let mut best: Option<u64> = None;
    let mut keep = |secs: u64| best = Some(best.map_or(secs, |b| b.min(secs)));
    for value in values {
        for directive in value.split(',') {
            let directive = directive.trim();
            let (name, arg) = match directive.split_once('=') {
                Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                None => (directive, None),
            };
            if name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store") {
                keep(0);
            } else if name.eq_ignore_ascii_case("max-age")
                && let Some(secs) = arg.and_then(|a| a.parse::<u64>().ok())
            {
                keep(secs);
            }
        }
    }
    best.map(Duration::from_secs)
}

#[cfg(feature = "http")]
pub use http_fetcher::HttpFetcher;

#[cfg(feature = "http")]
mod http_fetcher {
    use super::{BoxFuture, FetchError, Fetched, JwksFetcher, parse_max_age};
    use reqwest::StatusCode;
    use reqwest::header::{ACCEPT, CACHE_CONTROL, ETAG, IF_NONE_MATCH};
    use std::time::Duration;

    /// The largest JWKS body accepted. A key ring holds a handful of keys (an RSA-4096 JWK is under
    /// 1 KiB); anything near this is not a JWKS.
    const MAX_BODY: usize = 512 * 1024;

    /// Fetches the JWKS over HTTP(S) with reqwest and rustls (system trust roots). Follows no
    /// redirects, sends `If-None-Match`, and reads at most 512 KiB.
    ///
    /// The URL must be `https://`, or plain `http://` to a loopback host (`localhost`, `127.0.0.0/8`,
    /// `[::1]`). A loopback URL is always fetched directly, never through a proxy from
    /// `HTTP_PROXY`/`ALL_PROXY`/`HTTPS_PROXY`: no proxy can reach this host's loopback, and one
    /// handed a plain-`http` request could answer it with keys of its own choosing.
    #[derive(Debug, Clone)]
    pub struct HttpFetcher {
        client: reqwest::Client,
        url: reqwest::Url,
    }

    impl HttpFetcher {
        /// A fetcher for `url` whose every request (connect, headers and body) ends within `timeout`.
        /// A config error if `url` is neither `https://` nor `http://` to a loopback host.
        pub fn new(url: &str, timeout: Duration) -> Result<Self, crate::Error> {
            Self::build(url, timeout, None, false)
        }

        /// Like [`HttpFetcher::new`], but an `https://` URL is trusted through the certificates of
        /// `ca_pem` alone (PEM), not the system's roots: for a Castellan that serves HTTPS with a
        /// certificate from its own CA, give its `root.pem`.
        pub fn with_ca_pem(
            url: &str,
            timeout: Duration,
            ca_pem: &[u8],
        ) -> Result<Self, crate::Error> {
            Self::build(url, timeout, Some(ca_pem), false)
        }

        /// `allow_http`: also plain `http://` to hosts that are not loopback
        /// ([`crate::VerifierBuilder::insecure_allow_http`]).
        pub(crate) fn build(
            url: &str,
            timeout: Duration,
            ca_pem: Option<&[u8]>,
            allow_http: bool,
        ) -> Result<Self, crate::Error> {
            let raw = url;
            let url = reqwest::Url::parse(raw)
                .map_err(|e| crate::Error::Config(format!("JWKS URL {raw:?}: {e}")))?;
            let loopback = is_loopback(&url);
            match url.scheme() {
                "https" => {}
                "http" if loopback || allow_http => {}
                "http" => {
                    return Err(crate::Error::Config(format!(
                        "JWKS URL {raw:?} is plain HTTP to a host that is not loopback (use \
                         https, or VerifierBuilder::insecure_allow_http(true) if the network is \
                         trusted)"
                    )));
                }
                other => {
                    return Err(crate::Error::Config(format!(
                        "JWKS URL scheme {other:?} is not HTTP(S)"
                    )));
                }
            }
            let mut builder = reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("castellan-verify/", env!("CARGO_PKG_VERSION")));
            if loopback {
                // reqwest honours HTTP_PROXY/ALL_PROXY by default, and hands a plain-http request to
                // the proxy, which would defeat the loopback exception above. No proxy can reach
                // this host's loopback anyway.
                builder = builder.no_proxy();
            }
            if let Some(pem) = ca_pem {
                let certs = reqwest::Certificate::from_pem_bundle(pem)
                    .map_err(|e| crate::Error::Config(format!("CA certificates: {e}")))?;
                if certs.is_empty() {
                    return Err(crate::Error::Config(
                        "CA certificates: no PEM CERTIFICATE block".into(),
                    ));
                }
                builder = builder.tls_certs_only(certs);
            }
            let client = builder
                .build()
                .map_err(|e| crate::Error::Config(format!("HTTP client: {e}")))?;
            Ok(Self { client, url })
        }
    }

    impl JwksFetcher for HttpFetcher {
        fn fetch<'a>(
            &'a self,
            etag: Option<&'a str>,
        ) -> BoxFuture<'a, Result<Fetched, FetchError>> {
            Box::pin(async move {
                let mut request = self
                    .client
                    .get(self.url.clone())
                    .header(ACCEPT, "application/jwk-set+json, application/json");
                if let Some(etag) = etag {
                    request = request.header(IF_NONE_MATCH, etag);
                }
                let mut response = request.send().await.map_err(|e| {
                    FetchError::new(format_args!("GET {}: {}", self.url, error_chain(&e)))
                })?;
                let headers = response.headers();
                let max_age = parse_max_age(
                    headers
                        .get_all(CACHE_CONTROL)
                        .iter()
                        .filter_map(|v| v.to_str().ok()),
                );
                let new_etag = headers
                    .get(ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                match response.status() {
                    StatusCode::OK => {}
                    StatusCode::NOT_MODIFIED if etag.is_some() => {
                        return Ok(Fetched::NotModified { max_age });
                    }
                    status => {
                        return Err(FetchError::new(format_args!(
                            "GET {}: HTTP status {status}",
                            self.url
                        )));
                    }
                }
                if response
                    .content_length()
                    .is_some_and(|n| n > MAX_BODY as u64)
                {
                    return Err(FetchError::new(format_args!(
                        "GET {}: body larger than {MAX_BODY} bytes",
                        self.url
                    )));
                }
                let mut body = Vec::new();
                while let Some(chunk) = response.chunk().await.map_err(|e| {
                    FetchError::new(format_args!("GET {}: {}", self.url, error_chain(&e)))
                })? {
                    if body.len() + chunk.len() > MAX_BODY {
                        return Err(FetchError::new(format_args!(
                            "GET {}: body larger than {MAX_BODY} bytes",
                            self.url
                        )));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(Fetched::Keys {
                    body,
                    max_age,
                    etag: new_etag,
                })
            })
        }
    }

    /// `localhost` or a loopback IP literal (IPv6 in brackets).
    fn is_loopback(url: &reqwest::Url) -> bool {
        let host = url.host_str().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// reqwest's top-level message ("error sending request") hides the cause; show the chain.
    fn error_chain(e: &dyn std::error::Error) -> String {
        let mut out = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            out.push_str(": ");
            out.push_str(&s.to_string());
            source = s.source();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_parsing() {
        assert_eq!(
            parse_max_age(["public, max-age=300"]),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            parse_max_age(["Max-Age=\"60\""]),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_max_age(["max-age=600", "max-age=30"]),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_max_age(["no-cache, max-age=600"]),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_max_age(["public"]), None);
        assert_eq!(parse_max_age(["max-age=-5", "max-age=abc"]), None);
        assert_eq!(parse_max_age(Vec::<&str>::new()), None);
    }
}
