//! A minimal client for the AWS-style HTTP APIs of the moto server (S3 and SQS): one request
//! per connection over HTTP/1.1.
//!
//! moto does not check signatures; it routes a request to a service by the credential scope
//! of its `Authorization` header, so requests carry a syntactically valid, unsigned SigV4
//! header naming the service.

use bytes::Bytes;
use http::Method;

pub use super::http::Response;

/// The region requests are scoped to.
pub const REGION: &str = "us-east-1";

/// A request to `http://<hostport><path>` for `service` (`s3`, `sqs`).
pub struct Call<'a> {
    /// The method.
    pub method: Method,
    /// The path and query.
    pub path: &'a str,
    /// The AWS service the request is for.
    pub service: &'a str,
    /// The access key id named in the (unsigned) credential.
    pub access_key: &'a str,
    /// Extra headers.
    pub headers: &'a [(&'a str, &'a str)],
    /// The body.
    pub body: Bytes,
}

/// Sends `call` to `hostport` and reads the whole response.
pub async fn send(hostport: &str, call: Call<'_>) -> Result<Response, String> {
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/20240101/{REGION}/{}/aws4_request, \
         SignedHeaders=host, Signature=0",
        call.access_key, call.service
    );
    let mut headers = vec![("authorization", authorization.as_str())];
    headers.extend_from_slice(call.headers);
    super::http::send(hostport, call.method, call.path, &headers, call.body).await
}

/// Percent-encodes an S3 object key for a path (`/` kept).
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The texts of every `<tag>...</tag>` element in `xml`, entities decoded.
pub fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut values = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        values.push(decode_entities(&after[..end]));
        rest = &after[end + close.len()..];
    }
    values
}

fn decode_entities(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_encoded_for_paths() {
        assert_eq!(encode_key("a/b c+d.txt"), "a/b%20c%2Bd.txt");
        assert_eq!(encode_key("é"), "%C3%A9");
    }

    #[test]
    fn xml_values_are_found_and_decoded() {
        let xml = "<R><Key>a&amp;b</Key><Key>c</Key><IsTruncated>false</IsTruncated></R>";
        assert_eq!(xml_values(xml, "Key"), ["a&b", "c"]);
        assert_eq!(xml_values(xml, "IsTruncated"), ["false"]);
        assert!(xml_values("<Key>unclosed", "Key").is_empty());
    }
}
