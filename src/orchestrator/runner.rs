//! Creating an environment and running its services to the end.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rig_types::{Environment, Event, EventType};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::lifecycle::{run_service, ServiceTask};
use super::{summary, Instance, OrchestrateError, Orchestrator};
use crate::artifacts::{resolve_all, Artifact, Cache, Outputs, Reporter};
use crate::services::ArtifactRequest;
use crate::spec::{insert_test_node, transform_observe};

/// The synchronous part of creating an environment, then the runner in the background.
pub(super) fn start(
    orch: &Orchestrator,
    mut env: Environment,
) -> Result<Arc<Instance>, OrchestrateError> {
    let no_ingress = insert_test_node(&mut env);
    if env.observe {
        transform_observe(&mut env);
    }
    let mut artifacts = Vec::new();
    for (name, service) in &env.services {
        let Ok(service_type) = orch.registry.get(&service.service_type) else {
            return Err(OrchestrateError::UnknownType {
                service: name.clone(),
                service_type: service.service_type.clone(),
            });
        };
        if service.injected {
            continue;
        }
        crate::services::check_hooks(service, service_type.init_hook_types()).map_err(
            |message| OrchestrateError::Hooks {
                service: name.clone(),
                message,
            },
        )?;
        let request = ArtifactRequest {
            service: name,
            spec: service,
            spec_dir: &env.dir,
            host_env: &env.host_env,
            cache_root: orch.cache.root(),
        };
        let needed = service_type
            .artifacts(&request)
            .map_err(|e| OrchestrateError::Artifacts {
                service: name.clone(),
                message: e.to_string(),
            })?;
        artifacts.extend(needed);
    }

    let id = new_instance_id();
    let env_dir = orch.temp_base.join(&id);
    orch.dirs
        .create(&env_dir)
        .map_err(|source| OrchestrateError::EnvDir {
            path: env_dir.clone(),
            source,
        })?;

    let (done_tx, done_rx) = watch::channel(false);
    if let Some(reaper) = &orch.reaper {
        reaper.track_dir(&env_dir);
    }
    let instance = Arc::new(
        Instance::new(
            id,
            Arc::new(env),
            env_dir,
            orch.dirs.clone(),
            orch.ports.clone(),
            orch.reaper.clone(),
            done_rx,
        )
        .with_event_memory(orch.settings.event_memory),
    );
    let mut settings = orch.settings.clone();
    if let Some(timeout) = instance
        .spec()
        .callback_timeout
        .to_std()
        .filter(|t| !t.is_zero())
    {
        settings.callback_timeout = timeout;
    }
    let deps = RunDeps {
        registry: orch.registry.clone(),
        ports: orch.ports.clone(),
        settings,
        no_ingress: Arc::new(no_ingress),
        artifacts,
        cache: orch.cache.clone(),
    };
    tokio::spawn(run(instance.clone(), deps, done_tx));
    Ok(instance)
}

struct RunDeps {
    registry: Arc<crate::services::Registry>,
    ports: Arc<crate::ports::PortAllocator>,
    settings: super::Settings,
    no_ingress: Arc<Vec<String>>,
    artifacts: Vec<Artifact>,
    cache: Cache,
}

/// Runs every service concurrently; the first failure stops the rest. Then publishes
/// `environment.failing` (unless this was a teardown) and always `environment.down`.
async fn run(instance: Arc<Instance>, deps: RunDeps, done: watch::Sender<bool>) {
    match resolve_artifacts(&instance, &deps).await {
        Ok(outputs) => run_services(&instance, &deps, Arc::new(outputs)).await,
        Err(err) => {
            if !instance.teardown_token().is_cancelled() {
                instance.emit(Event::new(EventType::EnvironmentFailing).with_error(err));
            }
        }
    }
    let message = summary::down_summary(instance.log());
    instance.emit(Event::new(EventType::EnvironmentDown).with_message(message));
    let _ = done.send(true);
}

/// The artifact phase: everything the services need, built or fetched before any starts.
async fn resolve_artifacts(instance: &Arc<Instance>, deps: &RunDeps) -> Result<Outputs, String> {
    if deps.artifacts.is_empty() {
        return Ok(Outputs::new());
    }
    let reporter = Reporter {
        log: instance.log().clone(),
        environment: instance.name().to_string(),
        reaper: instance.reaper().cloned(),
    };
    resolve_all(
        &deps.artifacts,
        &deps.cache,
        &reporter,
        instance.services_token(),
    )
    .await
}

/// The service phase: every service concurrently; the first failure stops the rest; then
/// `environment.failing` unless this was a teardown.
async fn run_services(instance: &Arc<Instance>, deps: &RunDeps, artifacts: Arc<Outputs>) {
    let mut tasks = JoinSet::new();
    for (name, spec) in &instance.spec().services {
        let Ok(service_type) = deps.registry.get(&spec.service_type) else {
            // Checked in `start`; the registry cannot shrink.
            continue;
        };
        let task = ServiceTask {
            instance: instance.clone(),
            name: name.clone(),
            spec: Arc::new(spec.clone()),
            service_type,
            ports: deps.ports.clone(),
            settings: deps.settings.clone(),
            no_ingress: deps.no_ingress.clone(),
            artifacts: artifacts.clone(),
        };
        let name = name.clone();
        tasks.spawn(async move { (name, run_service(task).await) });
    }

    let watchdog_stop = tokio_util::sync::CancellationToken::new();
    let watchdog = tokio::spawn(super::watchdog::watch(
        instance.clone(),
        deps.settings.stall_threshold,
        watchdog_stop.clone(),
    ));

    let mut first_failure: Option<(String, String)> = None;
    while let Some(joined) = tasks.join_next().await {
        let failure = match joined {
            Ok((_, Ok(()))) => continue,
            Ok((name, Err(err))) => (name, err),
            Err(join_error) => (
                String::new(),
                format!("service task ended abnormally: {join_error}"),
            ),
        };
        if first_failure.is_none() {
            first_failure = Some(failure);
            instance.services_token().cancel();
        }
    }

    watchdog_stop.cancel();
    let _ = watchdog.await;

    if !instance.teardown_token().is_cancelled() {
        // A failure recorded as it happened (by a service or the client) cancelled the
        // services, so it came first; the joins only catch what records nothing (a service
        // that would not stop, a task that panicked).
        if let Some((service, err)) = instance.first_failure().or(first_failure) {
            let mut event = Event::new(EventType::EnvironmentFailing);
            event.error = if service.is_empty() {
                err
            } else {
                format!("service {service:?}: {err}")
            };
            event.service = service;
            instance.emit(event);
        }
    }
}

/// `<unix millis in lowercase hex>-<8 random lowercase hex digits>`, as upstream.
fn new_instance_id() -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(millis);
    format!("{millis:x}-{:08x}", hasher.finish() as u32)
}

#[cfg(test)]
mod tests {
    use super::new_instance_id;

    #[test]
    fn instance_ids_have_upstream_shape_and_differ() {
        let a = new_instance_id();
        let b = new_instance_id();
        let (millis, random) = a.split_once('-').unwrap();
        assert!(millis
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(random.len(), 8);
        assert_ne!(a, b);
    }
}
