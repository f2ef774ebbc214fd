//! The `s3` type (pooled): one S3-compatible server per rigd, a bucket per environment
//! service.
//!
//! Config: `{"backend": "native" | "container" | "auto"}`. Native is moto's server
//! (`moto_server`, PyPI `moto[server]`; one process shared with `sqs`); upstream's container
//! is MinIO. Every ingress gets the server's address and the attributes `S3_ENDPOINT=http://${HOST}:${PORT}`,
//! `S3_BUCKET=rig-<n>`, `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (both `rigadmin`), and
//! rig-rs's `AWS_REGION=us-east-1`. Clients use path-style addressing. On teardown the
//! bucket's objects are deleted, then the bucket.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde_json::{json, Value};

use super::infra::{Infra, Pooled};
use super::moto::{self, SharedMoto};
use crate::pool::Backend;
use crate::wire::aws::{encode_key, xml_values, REGION};

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
            moto: SharedMoto::acquire(program).await?,
            next: AtomicU64::new(1),
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
    next: AtomicU64,
}

impl S3Backend {
    async fn call(&self, method: Method, path: &str) -> Result<String, String> {
        let response = self
            .moto
            .server()
            .call("s3", CREDENTIAL, method, path, &[], Bytes::new())
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

    /// Deletes every object of `bucket`, then the bucket.
    async fn empty_and_delete(&self, bucket: &str) -> Result<(), String> {
        loop {
            let listing = self
                .call(Method::GET, &format!("/{bucket}?list-type=2&max-keys=1000"))
                .await?;
            let keys = xml_values(&listing, "Key");
            if keys.is_empty() {
                break;
            }
            for key in keys {
                self.call(Method::DELETE, &format!("/{bucket}/{}", encode_key(&key)))
                    .await?;
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
        let bucket = format!("rig-{}", self.next.fetch_add(1, Ordering::Relaxed));
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
}
