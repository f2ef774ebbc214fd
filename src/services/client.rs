//! The `client` type: a service whose code runs in the client (SDK) process.
//!
//! rigd allocates its ports and checks its readiness like any other service; starting it is
//! a `start` callback that the SDK answers once it has launched the function.

use rig_types::CallbackKind;
use serde::Deserialize;

use super::{ArtifactRequest, RunContext, RunFuture, ServiceError, ServiceType};
use crate::artifacts::Artifact;

/// The `client` service type.
pub struct Client;

#[derive(Default, Deserialize)]
struct ClientConfig {
    #[serde(default)]
    start_handler: String,
}

/// The keys a `client` config takes.
pub(crate) fn config_fields() -> &'static [&'static str] {
    super::config::struct_fields::<ClientConfig>()
}

/// The service's config, which must name its start handler.
fn decode(config: Option<&serde_json::Value>) -> Result<ClientConfig, ServiceError> {
    let config: ClientConfig = super::config::decode(
        config,
        "client config",
        r#"{"start_handler": "<the function the SDK registered>"}"#,
    )?;
    if config.start_handler.is_empty() {
        return Err(ServiceError::new(
            "client service needs config.start_handler: the name of the function the SDK registered",
        ));
    }
    Ok(config)
}

impl ServiceType for Client {
    /// Needs nothing built, but checks the config when the environment is created: a client
    /// service that names no start handler could never start.
    fn artifacts(&self, req: &ArtifactRequest<'_>) -> Result<Vec<Artifact>, ServiceError> {
        decode(req.spec.config.as_ref())?;
        Ok(Vec::new())
    }

    fn run(&self, ctx: RunContext) -> RunFuture {
        Box::pin(async move {
            let config = decode(ctx.spec.config.as_ref())?;
            tokio::select! {
                r = ctx.callbacks.call(&config.start_handler, CallbackKind::Start, None) => {
                    r.map_err(|e| ServiceError::new(format!("start callback: {e}")))?;
                }
                _ = ctx.cancel.cancelled() => return Ok(()),
            }
            ctx.cancel.cancelled().await;
            Ok(())
        })
    }
}
