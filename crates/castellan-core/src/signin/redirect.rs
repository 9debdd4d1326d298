//! Redirect URIs: what may be registered, and the exact match an authorization request must make.
//!
//! Registered: `https` URIs; `http` only on a loopback host (`127.0.0.1`, `[::1]`, `localhost`); or a
//! private-use scheme with a dot in it (`com.example.app:/callback`, RFC 8252 §7.1). Never a fragment
//! or user information, never `javascript:`, `data:` or `file:`.
//!
//! Matched: the presented URI equals a registered one byte for byte (no prefix, no wildcard, no
//! normalization); only a registered `http` loopback IP literal (`127.0.0.1`, `[::1]`) accepts any port
//! (RFC 8252 §7.3: a native app's port is chosen when it runs).

use url::{Host, Url};

/// Why a redirect URI cannot be registered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("redirect URI `{uri}`: {why}")]
pub struct RedirectError {
    /// The URI (as given, cut to 200 characters).
    pub uri: String,
    /// Why.
    pub why: &'static str,
}

/// Checks a redirect URI for registration.
pub fn validate(uri: &str) -> Result<(), RedirectError> {
    let err = |why| RedirectError {
        uri: uri.chars().take(200).collect(),
        why,
    };
    if uri.len() > 2000 || uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(err(
            "must be at most 2000 characters, without spaces or control characters",
        ));
    }
    let url = Url::parse(uri).map_err(|_| err("is not an absolute URI"))?;
    if url.fragment().is_some() {
        return Err(err("must not have a fragment (RFC 6749 §3.1.2)"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(err("must not carry user information"));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&url) || url.host_str() == Some("localhost") => Ok(()),
        "http" => Err(err(
            "http is allowed only on 127.0.0.1, [::1] or localhost; use https",
        )),
        "javascript" | "data" | "file" | "vbscript" | "blob" | "about" => {
            Err(err("this scheme cannot be a redirect URI"))
        }
        s if s.contains('.') => Ok(()),
        _ => Err(err(
            "a private-use scheme must be a reverse domain name with a dot (RFC 8252 §7.1), e.g. com.example.app",
        )),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        _ => false,
    }
}

/// Whether `presented` matches one of `registered` (see the module's rule).
pub fn matches<'a>(registered: impl IntoIterator<Item = &'a str>, presented: &str) -> bool {
    let presented_url = Url::parse(presented).ok();
    registered.into_iter().any(|r| {
        if r == presented {
            return true;
        }
        // A loopback IP literal registered over http: any port, everything else exact.
        let (Ok(mut reg), Some(mut pre)) = (Url::parse(r), presented_url.clone()) else {
            return false;
        };
        if reg.scheme() != "http" || !is_loopback(&reg) || pre.scheme() != "http" {
            return false;
        }
        // The presented text must be what its parsed form prints (no normalization hides in it).
        if pre.as_str() != presented {
            return false;
        }
        reg.set_port(None).is_ok() && pre.set_port(None).is_ok() && reg.as_str() == pre.as_str()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_rules() {
        for ok in [
            "https://app.example.com/callback",
            "http://127.0.0.1/cb",
            "http://[::1]:8080/cb",
            "http://localhost:3000/cb",
            "com.example.app:/oauth",
        ] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
        for bad in [
            "/relative",
            "https://app.example.com/cb#frag",
            "http://app.example.com/cb",
            "https://user:pw@app.example.com/cb",
            "javascript:alert(1)",
            "myapp:/cb",
            "https://app.example.com/c b",
        ] {
            assert!(validate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn matching_is_exact_except_loopback_ports() {
        let reg = ["https://app.example.com/cb", "http://127.0.0.1/native"];
        let reg = || reg.iter().copied();
        assert!(matches(reg(), "https://app.example.com/cb"));
        for bad in [
            "https://app.example.com/cb/",
            "https://app.example.com/cb?x=1",
            "https://app.example.com/cbx",
            "https://APP.example.com/cb",
            "https://app.example.com:443/cb",
            "https://evil.example/cb",
            "http://127.0.0.1:5000/other",
            "http://localhost:5000/native",
        ] {
            assert!(!matches(reg(), bad), "{bad}");
        }
        assert!(matches(reg(), "http://127.0.0.1:5000/native"));
        assert!(matches(reg(), "http://127.0.0.1/native"));
        // localhost is matched exactly, port included.
        assert!(!matches(
            ["http://localhost:3000/cb"],
            "http://localhost:3001/cb"
        ));
    }
}
