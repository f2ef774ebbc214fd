//! The `sqs` type (pooled): one SQS-compatible server per rigd, a queue per environment
//! service.
//!
//! Config: `{"backend": "native" | "container" | "auto", "image": "..."}`. Both backends run
//! moto's server, shared with `s3`: native is `moto_server` (PyPI `moto[server]`), the
//! container upstream moto's image (`motoserver/moto:5.2.1`; upstream rig's container is
//! ElasticMQ). Every ingress gets the server's address and the attributes `SQS_ENDPOINT=http://${HOST}:${PORT}`,
//! `SQS_QUEUE_URL`, `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (both `rig`), and rig-rs's
//! `AWS_REGION=us-east-1`. Unlike upstream, whose queue URL names the server itself, the queue
//! URL is a template (`http://${HOST}:${PORT}/<account>/rig-<n>`), so in observe mode it points
//! at the proxy like the endpoint does; moto's own URL names the address rigd reached it at
//! (the container's published port on 127.0.0.1, not its port inside). On teardown the queue is deleted.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde_json::{json, Value};

use super::infra::{Infra, Pooled};
use super::moto::{self, MotoSource, SharedMoto};
use crate::pool::Backend;
use crate::wire::aws::REGION;

/// The access key id and secret of the published credentials (upstream's values).
pub const CREDENTIAL: &str = "rig";

/// The `sqs` service type.
pub type Sqs = Pooled<SqsInfra>;

/// How `sqs` finds, starts and leases its backend.
pub struct SqsInfra;

impl Infra for SqsInfra {
    type Backend = SqsBackend;
    const NAME: &'static str = "sqs";
    /// Upstream: 10 minutes.
    const IDLE: Duration = Duration::from_secs(600);
    const MISSING: &'static str = moto::MISSING;

    fn find_native() -> Option<PathBuf> {
        moto::find_binary()
    }

    async fn start_native(program: PathBuf) -> Result<SqsBackend, String> {
        Ok(SqsBackend {
            moto: SharedMoto::acquire(MotoSource::Program(program)).await?,
        })
    }

    const DEFAULT_IMAGE: Option<&'static str> = Some(moto::DEFAULT_IMAGE);

    async fn start_container(image: String) -> Result<SqsBackend, String> {
        Ok(SqsBackend {
            moto: SharedMoto::acquire(MotoSource::Image(image)).await?,
        })
    }

    fn port(backend: &SqsBackend) -> u16 {
        backend.moto.server().port()
    }

    fn attributes(queue: &Queue) -> BTreeMap<String, Value> {
        BTreeMap::from([
            ("SQS_ENDPOINT".to_string(), json!("http://${HOST}:${PORT}")),
            (
                "SQS_QUEUE_URL".to_string(),
                json!(format!("http://${{HOST}}:${{PORT}}{}", queue.path)),
            ),
            ("AWS_ACCESS_KEY_ID".to_string(), json!(CREDENTIAL)),
            ("AWS_SECRET_ACCESS_KEY".to_string(), json!(CREDENTIAL)),
            ("AWS_REGION".to_string(), json!(REGION)),
        ])
    }
}

/// A leased queue.
#[derive(Clone, Debug)]
pub struct Queue {
    /// The queue URL the server returned.
    pub url: String,
    /// Its path (`/<account>/rig-<n>`).
    pub path: String,
}

/// A moto server handing out queues.
pub struct SqsBackend {
    moto: SharedMoto,
}

impl SqsBackend {
    /// Calls SQS action `action` with the JSON protocol.
    async fn call(&self, action: &str, body: Value) -> Result<Value, String> {
        let target = format!("AmazonSQS.{action}");
        let response = self
            .moto
            .server()
            .call(
                "sqs",
                CREDENTIAL,
                Method::POST,
                "/",
                &[
                    ("x-amz-target", &target),
                    ("content-type", "application/x-amz-json-1.0"),
                ],
                Bytes::from(body.to_string()),
            )
            .await?;
        if !response.ok() {
            return Err(format!(
                "HTTP {}: {}",
                response.status,
                response.body.trim()
            ));
        }
        serde_json::from_str(&response.body)
            .map_err(|e| format!("{action}: response is not JSON ({e}): {}", response.body))
    }
}

impl Backend for SqsBackend {
    type Lease = Queue;

    async fn new_lease(&self) -> Result<Queue, String> {
        let name = self.moto.server().unique_name();
        let created = self
            .call("CreateQueue", json!({"QueueName": name}))
            .await
            .map_err(|e| format!("create queue {name}: {e}"))?;
        let url = created["QueueUrl"]
            .as_str()
            .ok_or_else(|| format!("create queue {name}: no QueueUrl in {created}"))?
            .to_string();
        let path = url_path(&url)
            .ok_or_else(|| format!("create queue {name}: unexpected queue URL {url:?}"))?
            .to_string();
        Ok(Queue { url, path })
    }

    async fn drop_lease(&self, queue: Queue) {
        if let Err(e) = self
            .call("DeleteQueue", json!({"QueueUrl": queue.url}))
            .await
        {
            eprintln!("rigd: sqs pool: delete queue {}: {e}", queue.url);
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

/// The path of an `http://host:port/path` URL.
fn url_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    rest.find('/').map(|i| &rest[i..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_url_paths() {
        assert_eq!(
            url_path("http://127.0.0.1:9324/123456789012/rig-1"),
            Some("/123456789012/rig-1")
        );
        assert_eq!(url_path("http://host"), None);
        assert_eq!(url_path("queue"), None);
        let attrs = SqsInfra::attributes(&Queue {
            url: "http://127.0.0.1:1/1/rig-1".into(),
            path: "/1/rig-1".into(),
        });
        assert_eq!(
            attrs["SQS_QUEUE_URL"],
            json!("http://${HOST}:${PORT}/1/rig-1")
        );
    }
}
