//! The injected `~test` node: publishes nothing and idles until the environment stops. Its
//! lifecycle ends with `environment.up` (see the orchestrator).

use super::{RunContext, RunFuture, ServiceType};

/// The `test` service type.
pub struct TestNode;

impl ServiceType for TestNode {
    fn run(&self, ctx: RunContext) -> RunFuture {
        Box::pin(async move {
            ctx.cancel.cancelled().await;
            Ok(())
        })
    }
}
