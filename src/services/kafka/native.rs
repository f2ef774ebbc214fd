//! The native Kafka backend: a [tansu](https://tansu.io) broker with in-memory storage, run
//! as the service's own process (output in its log, stopped with it, killed with rigd).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rig_types::Service;

use crate::pool::native::find_program;
use crate::services::process::run_program;
use crate::services::{RunContext, ServiceError};

/// What to say when tansu is not found.
pub const MISSING: &str = "tansu not found on PATH or in ~/.cargo/bin (install it with `cargo \
                           install --locked tansu --features dynostore`, or use \"backend\": \
                           \"container\")";

/// `tansu` on rigd's `PATH`, else in Cargo's binary directory (where `cargo install` puts it).
pub fn find_binary() -> Option<PathBuf> {
    let mut extra = Vec::new();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        extra.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        extra.push(PathBuf::from(home).join(".cargo").join("bin"));
    }
    find_program("tansu", &extra)
}

/// tansu's (0.6) arguments for a broker listening on and advertising `broker`
/// (`127.0.0.1:<port>`).
fn broker_args(broker: &str, cluster: &str) -> Vec<String> {
    [
        "broker",
        "--cluster-id",
        cluster,
        "--listener-url",
        &format!("tcp://{broker}"),
        "--advertised-listener-url",
        &format!("tcp://{broker}"),
        "--storage-engine",
        "memory://tansu/",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Runs tansu as the service until it is told to stop; the spec's `args` are appended.
pub async fn run(mut ctx: RunContext, tansu: &Path, broker: &str) -> Result<(), ServiceError> {
    let mut spec = Service::clone(&ctx.spec);
    let mut args = broker_args(broker, &ctx.instance_id);
    args.append(&mut spec.args);
    // run_program expands templates in them, which leaves ours (no `${...}`) as they are.
    spec.args = args;
    ctx.spec = Arc::new(spec);
    let env = ctx.env.clone();
    let dir = (!ctx.temp_dir.as_os_str().is_empty()).then(|| ctx.temp_dir.clone());
    run_program(ctx, tansu, dir.as_deref(), &env).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_listens_on_and_advertises_its_ingress() {
        let args = broker_args("127.0.0.1:4321", "env1");
        let joined = args.join(" ");
        assert!(joined.starts_with("broker "), "{joined}");
        assert!(
            joined.contains("--listener-url tcp://127.0.0.1:4321"),
            "{joined}"
        );
        assert!(
            joined.contains("--advertised-listener-url tcp://127.0.0.1:4321"),
            "{joined}"
        );
        assert!(joined.contains("--storage-engine memory://"), "{joined}");
    }
}
