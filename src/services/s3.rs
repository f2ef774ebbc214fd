//! The `s3` type (pooled): one S3-compatible server per rigd, a bucket per environment
//! service.
//!
//! Config: `{"backend": "native" | "container" | "auto", "image": "..."}`. Both backends run
//! moto's server, shared with `sqs`: native is `moto_server` (PyPI `moto[server]`), the
//! container upstream moto's image (`motoserver/moto:5.2.1`; upstream rig's container is
//! MinIO). Every ingress gets the server's address and the attributes `S3_ENDPOINT=http://${HOST}:${PORT}`,
//! `S3_BUCKET=rig-<n>`, `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (both `rigadmin`), and
//! rig-rs's `AWS_REGION=us-east-1`. Clients use path-style addressing. On teardown the
//! bucket's objects are deleted, then the bucket.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde_json::{json, Value};

use super::infra::{Infra, Pooled};
use super::moto::{self, MotoSource, SharedMoto};
use crate::pool::Backend;
use crate::wire::aws::{xml_values, REGION};

/// The access key id and secret of the published credentials (upstream's MinIO root user).
pub const CREDENTIAL: &str = "rigadmin";

/// The `s3` service type.
pub type S3 = Pooled<S3Infra>;

/// How `s3` finds, starts and leases its backend.
pub struct S3Infra;

impl Infra for S3Infra {
    type Backend = S3Backend;
    const NAME: &'static str = "s3";
    /// Upstream: 10 minutes.
    const IDLE: Duration = Duration::from_secs(600);
    const MISSING: &'static str = moto::MISSING;

    fn find_native() -> Option<PathBuf> {
        moto::find_binary()
    }

    async fn start_native(program: PathBuf) -> Result<S3Backend, String> {
        Ok(S3Backend {
            moto: SharedMoto::acquire(MotoSource::Program(program)).await?,
        })
    }

    const DEFAULT_IMAGE: Option<&'static str> = Some(moto::DEFAULT_IMAGE);

    async fn start_container(image: String) -> Result<S3Backend, String> {
        Ok(S3Backend {
            moto: SharedMoto::acquire(MotoSource::Image(image)).await?,
        })
    }

    fn port(backend: &S3Backend) -> u16 {
        backend.moto.server().port()
    }

    fn attributes(bucket: &String) -> BTreeMap<String, Value> {
        BTreeMap::from([
            ("S3_ENDPOINT".to_string(), json!("http://${HOST}:${PORT}")),
            ("S3_BUCKET".to_string(), json!(bucket)),
            ("AWS_ACCESS_KEY_ID".to_string(), json!(CREDENTIAL)),
            ("AWS_SECRET_ACCESS_KEY".to_string(), json!(CREDENTIAL)),
            ("AWS_REGION".to_string(), json!(REGION)),
        ])
    }
}

/// A moto server handing out buckets.
pub struct S3Backend {
    moto: SharedMoto,
}

impl S3Backend {
    async fn call(&self, method: Method, path: &str) -> Result<String, String> {
        self.call_with(method, path, Bytes::new()).await
    }

    async fn call_with(&self, method: Method, path: &str, body: Bytes) -> Result<String, String> {
        let response = self
            .moto
            .server()
            .call("s3", CREDENTIAL, method, path, &[], body)
            .await?;
        if response.ok() {
            Ok(response.body)
        } else {
            Err(format!(
                "HTTP {}: {}",
                response.status,
                response.body.trim()
            ))
        }
    }

    /// Deletes every object of `bucket`, a page of up to 1,000 at a time (one
    /// `DeleteObjects` request per page), then the bucket.
    async fn empty_and_delete(&self, bucket: &str) -> Result<(), String> {
        loop {
            let listing = self
                .call(Method::GET, &format!("/{bucket}?list-type=2&max-keys=1000"))
                .await?;
            let keys = xml_values(&listing, "Key");
            if keys.is_empty() {
                break;
            }
            let answer = self
                .call_with(
                    Method::POST,
                    &format!("/{bucket}?delete"),
                    Bytes::from(delete_objects_body(&keys)),
                )
                .await?;
            // Quiet mode: the answer lists only the keys that could not be deleted.
            if let Some(message) = xml_values(&answer, "Message").first() {
                return Err(format!("delete objects: {message}"));
            }
        }
        self.call(Method::DELETE, &format!("/{bucket}"))
            .await
            .map(drop)
    }
}

impl Backend for S3Backend {
    /// The bucket name, `rig-<n>`.
    type Lease = String;

    async fn new_lease(&self) -> Result<String, String> {
        let bucket = self.moto.server().unique_name();
        self.call(Method::PUT, &format!("/{bucket}"))
            .await
            .map_err(|e| format!("create bucket {bucket}: {e}"))?;
        Ok(bucket)
    }

    async fn drop_lease(&self, bucket: String) {
        if let Err(e) = self.empty_and_delete(&bucket).await {
            eprintln!("rigd: s3 pool: delete bucket {bucket}: {e}");
        }
    }

    async fn stop(&self) {
        self.moto.stop().await;
    }

    fn alive(&self) -> bool {
        self.moto.server().alive()
    }

    async fn last_output(&self) -> String {
        self.moto.server().log_tail().await
    }
}

/// The body of a quiet `DeleteObjects` request for `keys` (at most 1,000).
fn delete_objects_body(keys: &[String]) -> String {
    let mut body = String::from(
        "<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Quiet>true</Quiet>",
    );
    for key in keys {
        body.push_str("<Object><Key>");
        body.push_str(&escape_xml(key));
        body.push_str("</Key></Object>");
    }
    body.push_str("</Delete>");
    body
}

/// Escapes `text` for an XML element's content.
fn escape_xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_objects_bodies_escape_keys() {
        let body = delete_objects_body(&["a&b<c>.txt".into(), "d e".into()]);
        assert!(body.starts_with("<Delete xmlns="), "{body}");
        assert!(body.contains("<Quiet>true</Quiet>"), "{body}");
        assert!(
            body.ends_with(
                "<Object><Key>a&amp;b&lt;c&gt;.txt</Key></Object>\
                 <Object><Key>d e</Key></Object></Delete>"
            ),
            "{body}"
        );
    }
}
