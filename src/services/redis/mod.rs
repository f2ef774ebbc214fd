//! The `redis` type (pooled): one Redis server per rigd, a database number (0–15) per
//! environment service.
//!
//! Config: `{"backend": "native" | "container" | "auto", "image": "<container image>"}`. Every
//! ingress gets the server's address and the attribute `REDIS_URL=redis://${HOST}:${PORT}/<db>`
//! (upstream). Readiness is a `PING`. On teardown the database is flushed (`FLUSHDB`) and its
//! number goes back to the end of the free list.

mod native;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rig_types::Endpoint;
use serde_json::json;

pub use native::RedisBackend;

use super::infra::{run_leased, CommonConfig, Leases};
use super::{
    service_key, PublishContext, ReleaseFuture, RunContext, RunFuture, ServiceError, ServiceRef,
    ServiceType, StepFuture,
};
use crate::pool::Pool;
use crate::ready::ProbeKind;

/// How long an unused server keeps running (upstream: 2 minutes).
pub const IDLE: Duration = Duration::from_secs(120);

/// The `redis` service type.
#[derive(Clone)]
pub struct Redis {
    pool: Pool<RedisBackend>,
    leases: Arc<Leases<RedisBackend>>,
}

impl Default for Redis {
    fn default() -> Self {
        Redis::new(Pool::new("redis", IDLE))
    }
}

impl Redis {
    /// A `redis` type drawing on `pool`.
    pub fn new(pool: Pool<RedisBackend>) -> Redis {
        Redis {
            pool,
            leases: Arc::new(Leases::default()),
        }
    }

    /// The pool (rigd closes it at shutdown).
    pub fn pool(&self) -> &Pool<RedisBackend> {
        &self.pool
    }
}

impl ServiceType for Redis {
    fn prepare(&self, service: &ServiceRef) -> StepFuture {
        let this = self.clone();
        let service = service.clone();
        Box::pin(async move {
            let config = CommonConfig::of("redis", &service)?;
            let program = native::find_binary();
            config
                .backend
                .resolve("redis", program.is_some(), native::MISSING)?;
            let Some(program) = program else {
                return Err(ServiceError::new(native::MISSING));
            };
            let key = format!("native:{}", program.display());
            let lease = this
                .pool
                .acquire(&key, move || RedisBackend::start(program))
                .await
                .map_err(|e| ServiceError::new(format!("redis: {e}")))?;
            this.leases.insert(&service, lease);
            Ok(())
        })
    }

    fn release(&self, service: &ServiceRef) -> ReleaseFuture {
        let leases = self.leases.clone();
        let service = service.clone();
        Box::pin(async move { leases.release(&service).await })
    }

    fn publish(
        &self,
        ctx: &mut PublishContext<'_>,
    ) -> Result<BTreeMap<String, Endpoint>, ServiceError> {
        let lease = self
            .leases
            .get("redis", &service_key(ctx.instance_id, ctx.service))?;
        let port = lease.backend().port();
        let url = format!("redis://${{HOST}}:${{PORT}}/{}", lease.get());
        Ok(ctx
            .spec
            .ingresses
            .iter()
            .map(|(name, ingress)| {
                (
                    name.clone(),
                    Endpoint {
                        hostport: format!("127.0.0.1:{port}"),
                        protocol: ingress.protocol.clone(),
                        attributes: Some(BTreeMap::from([("REDIS_URL".to_string(), json!(url))])),
                    },
                )
            })
            .collect())
    }

    fn run(&self, ctx: RunContext) -> RunFuture {
        let leases = self.leases.clone();
        Box::pin(async move {
            let key = service_key(&ctx.instance_id, &ctx.service);
            let lease = leases.get("redis runner", &key)?;
            run_leased("redis", lease, ctx).await
        })
    }

    fn ready_probe(&self, _ingress: &str, _endpoint: &Endpoint) -> Option<ProbeKind> {
        Some(ProbeKind::Redis)
    }
}
