//! Announcing the close in the response's `Connection` header.

use http::{header, HeaderMap, HeaderValue, Response, Version};

/// Adds `close` to the response's `Connection` header.
///
/// The other tokens stay: a `426` keeps `upgrade` (RFC 9110 §7.8 wants it
/// listed beside `Upgrade`), and other hop-by-hop names keep their meaning
/// (§7.6.1). Only `keep-alive`, which would contradict `close`, is dropped.
/// Several `Connection` lines become one value, `upgrade, close`.
///
/// For an HTTP/1.0 request the response is marked HTTP/1.0 as well (hyper
/// sends it as HTTP/1.0 anyway): hyper would otherwise append `keep-alive`
/// for a client that asked for it, next to the `close`.
pub(crate) fn mark_close<ResBody>(response: &mut Response<ResBody>, request: Version) {
    // `decide` never asks for it on HTTP/2: connection-specific headers are
    // forbidden there (RFC 9113 §8.2.2), and a stream's end never closes the
    // connection.
    debug_assert!(
        request < Version::HTTP_2,
        "Connection: close on {request:?}"
    );
    if request >= Version::HTTP_2 {
        return;
    }
    if request == Version::HTTP_10 {
        *response.version_mut() = Version::HTTP_10;
    }
    let headers = response.headers_mut();
    if lists(headers, b"close") {
        return;
    }
    let mut tokens = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
        for token in value.as_bytes().split(|&b| b == b',') {
            let token = token.trim_ascii();
            if token.is_empty() || token.eq_ignore_ascii_case(b"keep-alive") {
                continue;
            }
            tokens.extend_from_slice(token);
            tokens.extend_from_slice(b", ");
        }
    }
    let value = if tokens.is_empty() {
        HeaderValue::from_static("close")
    } else {
        tokens.extend_from_slice(b"close");
        // The bytes come from valid values; the fallback cannot happen.
        HeaderValue::from_bytes(&tokens).unwrap_or(HeaderValue::from_static("close"))
    };
    headers.insert(header::CONNECTION, value);
}

/// Whether a message of `version` with these headers ends its connection, as hyper reads
/// it: `Connection: close`, or HTTP/1.0 without `Connection: keep-alive`.
pub(crate) fn ends_connection(version: Version, headers: &HeaderMap) -> bool {
    if version == Version::HTTP_10 {
        !lists(headers, b"keep-alive")
    } else {
        lists(headers, b"close")
    }
}

/// Whether a `Connection` header lists `token`.
fn lists(headers: &HeaderMap, token: &[u8]) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|listed| listed.trim_ascii().eq_ignore_ascii_case(token))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marked(version: Version, connection: &[&str]) -> Response<()> {
        let mut response = Response::new(());
        for value in connection {
            response
                .headers_mut()
                .append(header::CONNECTION, HeaderValue::from_str(value).unwrap());
        }
        mark_close(&mut response, version);
        response
    }

    fn connection(response: &Response<()>) -> Vec<&str> {
        response
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .map(|value| value.to_str().unwrap())
            .collect()
    }

    #[test]
    fn close_is_added_alone() {
        assert_eq!(connection(&marked(Version::HTTP_11, &[])), ["close"]);
    }

    #[test]
    fn other_tokens_stay_and_keep_alive_goes() {
        let response = marked(Version::HTTP_11, &["upgrade", "keep-alive, x-hop"]);
        assert_eq!(connection(&response), ["upgrade, x-hop, close"]);
        assert_eq!(
            connection(&marked(Version::HTTP_11, &["Keep-Alive"])),
            ["close"]
        );
    }

    #[test]
    fn an_existing_close_is_left_as_it_is() {
        let response = marked(Version::HTTP_11, &["upgrade", "Close"]);
        assert_eq!(connection(&response), ["upgrade", "Close"]);
    }

    #[test]
    fn connections_end_as_hyper_reads_it() {
        let headers = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(header::CONNECTION, HeaderValue::from_str(value).unwrap());
            }
            headers
        };
        assert!(!ends_connection(Version::HTTP_11, &headers(&[])));
        assert!(ends_connection(
            Version::HTTP_11,
            &headers(&["upgrade, Close"])
        ));
        assert!(ends_connection(Version::HTTP_10, &headers(&[])));
        assert!(!ends_connection(
            Version::HTTP_10,
            &headers(&["Keep-Alive"])
        ));
    }

    #[test]
    fn an_http_10_request_gets_an_http_10_response() {
        assert_eq!(marked(Version::HTTP_10, &[]).version(), Version::HTTP_10);
        assert_eq!(marked(Version::HTTP_11, &[]).version(), Version::HTTP_11);
    }
}
