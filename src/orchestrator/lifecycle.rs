//! One service's lifecycle, in upstream's exact step order:
//!
//! 1. wait for every egress target's `service.ready`, then `wiring.resolved`;
//! 2. prepare (the type acquires shared resources, e.g. a pooled backend's lease), allocate
//!    ports and publish (`ingress.published` per ingress);
//! 3. prestart hooks (`service.prestart`);
//! 4. `service.starting`, build the environment, start the runner;
//! 5. concurrently with the runner: readiness checks (`health.check_failed` per failed
//!    probe), `service.healthy`, init hooks (`service.init`), `service.ready`, and for the
//!    injected `~test` node `environment.up`;
//! 6. whatever happened: `service.stopping` (when told to stop) or `service.failed`, the
//!    type releases what it prepared, then always `service.stopped`. A failed readiness
//!    check or init hook publishes `service.failed` before the runner is stopped (upstream:
//!    after), so the output the stop provokes follows it.
//!
//! A service that fails records its failure on the instance and stops every other service at
//! once (`Instance::record_failure`), before it waits for its own runner or gives back what
//! it prepared: the others start nothing more, and the environment names this failure.
//!
//! The runner exiting for any reason before the service is told to stop is a failure, even
//! with status 0: services run until the environment is torn down.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rig_types::{
    CallbackKind, Endpoint, Environment, Event, EventType, GoDuration, HookSpec, Service,
};
use tokio_util::sync::CancellationToken;

use super::callback::CallbackDispatcher;
use super::environment_up::emit_environment_up;
use super::{Instance, Settings};
use crate::ports::{Fence, PortAllocator};
use crate::ready::listen_watch::{self, Heard, Loopback};
use crate::ready::{poll_hinted, probe, Hint, PollSettings, ProbeKind};
use crate::services::{
    HookContext, OutputSink, PublishContext, RunContext, ServiceRef, ServiceType,
};
use crate::wiring::{build_service_env, wiring_context, ServiceEnvInput};

/// Everything one service task needs.
pub(super) struct ServiceTask {
    pub instance: Arc<Instance>,
    pub name: String,
    pub spec: Arc<Service>,
    pub service_type: Arc<dyn ServiceType>,
    pub ports: Arc<PortAllocator>,
    pub settings: Settings,
    /// Real services without ingresses, which `environment.up` waits for.
    pub no_ingress: Arc<Vec<String>>,
    /// The artifact phase's outputs.
    pub artifacts: Arc<crate::artifacts::Outputs>,
}

impl ServiceTask {
    fn emit(&self, event_type: EventType) {
        self.instance
            .emit(Event::for_service(event_type, &self.name));
    }

    fn cancel(&self) -> &CancellationToken {
        self.instance.services_token()
    }

    fn service_ref(&self) -> ServiceRef {
        ServiceRef {
            service: self.name.clone(),
            instance_id: self.instance.id().to_string(),
            spec: self.spec.clone(),
        }
    }

    fn output(&self) -> OutputSink {
        OutputSink::new(
            self.instance.log().clone(),
            self.instance.name(),
            &self.name,
        )
    }

    fn temp_dir(&self) -> PathBuf {
        if self.spec.injected {
            PathBuf::new()
        } else {
            self.instance.env_dir().join(&self.name)
        }
    }
}

/// Why the steps ended.
enum Ended {
    /// Told to stop; `service.stopping` was already published.
    Stopped,
    /// Told to stop but the runner did not exit within the shutdown timeout.
    StopTimedOut(String),
    /// Told to stop before the runner started.
    CancelledEarly,
    /// Failed.
    Failed(String),
    /// Failed, and `service.failed` was already published (before rigd stopped the runner).
    FailedReported(String),
}

/// Runs the service's lifecycle and publishes its terminal events. Returns the failure, if
/// the service failed on its own (not when it was told to stop).
pub(super) async fn run_service(task: ServiceTask) -> Result<(), String> {
    let ended = match steps(&task).await {
        // The other services stop now, not once this one has given back what it holds.
        Ended::Failed(err) => {
            fail(&task, &err);
            Ended::FailedReported(err)
        }
        ended => ended,
    };
    if task.service_type.release_after_dependents() && task.cancel().is_cancelled() {
        wait_for_dependents(&task).await;
    }
    // Whatever happened, give back what `prepare` acquired (a pooled backend's lease).
    task.service_type.release(&task.service_ref()).await;
    let result = match ended {
        Ended::Stopped => Ok(()),
        Ended::CancelledEarly => {
            task.emit(EventType::ServiceStopping);
            Ok(())
        }
        Ended::StopTimedOut(err) | Ended::Failed(err) | Ended::FailedReported(err) => Err(err),
    };
    task.emit(EventType::ServiceStopped);
    result
}

/// Waits until every service that reaches `task`'s (see [`dependents`]) has published
/// `service.stopped`, within the time a stopping service gets.
async fn wait_for_dependents(task: &ServiceTask) {
    let waiting = dependents(task.instance.spec(), &task.name);
    if waiting.is_empty() {
        return;
    }
    let log = task.instance.log();
    let all_stopped = async {
        for service in waiting {
            log.wait_for(move |e| {
                e.event_type == EventType::ServiceStopped && e.service == service
            })
            .await;
        }
    };
    let _ = tokio::time::timeout(task.settings.shutdown_wait(), all_stopped).await;
}

/// The services of `env` that reach `service` through their egresses, directly or through
/// other services (an app through the proxy in front of a database).
fn dependents(env: &Environment, service: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut frontier = vec![service.to_string()];
    while let Some(target) = frontier.pop() {
        for (name, spec) in &env.services {
            let reaches = spec.egresses.values().any(|e| e.service == target);
            if reaches && name != service && !found.contains(name) {
                found.push(name.clone());
                frontier.push(name.clone());
            }
        }
    }
    found
}

/// Publishes `service.failed`, records the failure on the instance and stops every service.
fn fail(task: &ServiceTask, error: &str) {
    task.instance
        .emit(Event::for_service(EventType::ServiceFailed, &task.name).with_error(error));
    task.instance.record_failure(&task.name, error);
}

/// Runs `fut` unless the service is told to stop first.
async fn unless_cancelled<T>(
    task: &ServiceTask,
    fut: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, Ended> {
    tokio::select! {
        biased;
        _ = task.cancel().cancelled() => Err(Ended::CancelledEarly),
        r = fut => r.map_err(Ended::Failed),
    }
}

async fn steps(task: &ServiceTask) -> Ended {
    match steps_until_start(task).await {
        Ok(started) => run_group(task, started).await,
        Err(ended) => ended,
    }
}

/// What the steps before the run group produce.
struct Started {
    ingresses: BTreeMap<String, Endpoint>,
    egresses: BTreeMap<String, Endpoint>,
    listeners: BTreeMap<String, std::net::TcpListener>,
    callbacks: CallbackDispatcher,
    env: BTreeMap<String, String>,
}

async fn steps_until_start(task: &ServiceTask) -> Result<Started, Ended> {
    if !task.spec.injected {
        let dir = task.temp_dir();
        task.instance
            .dirs()
            .create(&dir)
            .map_err(|e| Ended::Failed(format!("create temp dir {}: {e}", dir.display())))?;
    }
    let egresses = unless_cancelled(task, wait_for_egresses(task)).await?;
    if task.cancel().is_cancelled() {
        return Err(Ended::CancelledEarly);
    }
    let prepare = task.service_type.prepare(&task.service_ref());
    unless_cancelled(task, async {
        prepare.await.map_err(|e| format!("publish: {e}"))
    })
    .await?;
    let listeners = allocate(task).await.map_err(Ended::Failed)?;
    let (ingresses, listeners, fence) =
        publish(task, &egresses, listeners).map_err(Ended::Failed)?;

    let temp_dir = task.temp_dir();
    let host_env = &task.instance.spec().host_env;
    let input = ServiceEnvInput {
        service: &task.name,
        ingresses: &ingresses,
        egresses: &egresses,
        temp_dir: &temp_dir.to_string_lossy(),
        env_dir: &task.instance.env_dir().to_string_lossy(),
        host_env,
    };
    let wiring = wiring_context(&input).map_err(|e| Ended::Failed(e.to_string()))?;
    let callbacks = CallbackDispatcher::new(
        task.instance.clone(),
        &task.name,
        wiring,
        task.settings.callback_timeout,
    );

    let prestart = hooks(&task.spec, |h| &h.prestart);
    if !prestart.is_empty() {
        task.emit(EventType::ServicePrestart);
        for (i, hook) in prestart.iter().enumerate() {
            let _running = task
                .instance
                .running_hook(&task.name, hook_name("prestart", i, hook));
            unless_cancelled(task, run_hook(task, &callbacks, hook, Phase::Prestart)).await?;
        }
    }

    // Not before every process forked while the ports were open has let go of them.
    fence.passed().await;
    // Told to stop while it waited: start nothing. (Nothing awaits from here to the runner.)
    if task.cancel().is_cancelled() {
        return Err(Ended::CancelledEarly);
    }
    task.emit(EventType::ServiceStarting);
    let env =
        build_service_env(&input).map_err(|e| Ended::Failed(format!("build service env: {e}")))?;
    Ok(Started {
        ingresses,
        egresses,
        listeners,
        callbacks,
        env,
    })
}

/// Waits, one egress at a time, for the target's `service.ready`, then takes the target's
/// published endpoint. Emits `wiring.resolved` when the service has egresses.
async fn wait_for_egresses(task: &ServiceTask) -> Result<BTreeMap<String, Endpoint>, String> {
    let mut resolved = BTreeMap::new();
    if task.spec.egresses.is_empty() {
        return Ok(resolved);
    }
    let log = task.instance.log();
    for (name, egress) in &task.spec.egresses {
        let target = egress.service.clone();
        log.wait_for(move |e| e.event_type == EventType::ServiceReady && e.service == target)
            .await;
        let endpoint = log
            .lifecycle_events()
            .iter()
            .rev()
            .find(|e| {
                e.event_type == EventType::IngressPublished
                    && e.service == egress.service
                    && e.ingress == egress.ingress
            })
            .and_then(|e| e.endpoint.clone())
            .ok_or_else(|| {
                format!(
                    "finding endpoint for egress {name:?}: service {:?} published no ingress {:?}",
                    egress.service, egress.ingress
                )
            })?;
        resolved.insert(name.clone(), *endpoint);
    }
    task.emit(EventType::WiringResolved);
    Ok(resolved)
}

type Published = (
    BTreeMap<String, Endpoint>,
    BTreeMap<String, std::net::TcpListener>,
    Fence,
);

/// Allocates one port per ingress, on a blocking thread: an allocation may try many
/// candidates (a file lock and a bind each) before it finds free ones.
async fn allocate(task: &ServiceTask) -> Result<Vec<std::net::TcpListener>, String> {
    let n = task.spec.ingresses.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    let (ports, instance) = (task.ports.clone(), task.instance.id().to_string());
    tokio::task::spawn_blocking(move || ports.allocate(&instance, n))
        .await
        .map_err(|e| format!("allocate ports: {e}"))?
        .map_err(|e| format!("allocate ports: {e}"))
}

/// Gives the allocated ports to the ingresses (the k-th sorted ingress gets the k-th port),
/// asks the type for its endpoints and publishes them. Listeners the type did not keep are
/// closed here; the fence says which forks might still hold them (see `ports::forks`).
fn publish(
    task: &ServiceTask,
    egresses: &BTreeMap<String, Endpoint>,
    listeners: Vec<std::net::TcpListener>,
) -> Result<Published, String> {
    if task.spec.ingresses.is_empty() {
        return Ok((BTreeMap::new(), BTreeMap::new(), Fence::none()));
    }
    let listeners: BTreeMap<String, std::net::TcpListener> =
        task.spec.ingresses.keys().cloned().zip(listeners).collect();
    let ports = listeners
        .iter()
        .map(|(name, l)| {
            Ok((
                name.clone(),
                l.local_addr()
                    .map_err(|e| format!("allocate ports: {e}"))?
                    .port(),
            ))
        })
        .collect::<Result<_, String>>()?;
    let mut ctx = PublishContext {
        service: &task.name,
        instance_id: task.instance.id(),
        spec: &task.spec,
        ports,
        listeners,
        kept: BTreeMap::new(),
        egresses,
    };
    let endpoints = task
        .service_type
        .publish(&mut ctx)
        .map_err(|e| format!("publish: {e}"))?;
    for (ingress, endpoint) in &endpoints {
        let mut event = Event::for_service(EventType::IngressPublished, &task.name);
        event.ingress = ingress.clone();
        event.endpoint = Some(Box::new(endpoint.clone()));
        task.instance.emit(event);
    }
    // Close the listeners the type did not keep, so the service can bind its ports.
    drop(ctx.listeners);
    Ok((endpoints, ctx.kept, Fence::now()))
}

/// Runs the service alongside its readiness checks and init hooks, until the runner exits
/// (a failure) or the service is told to stop.
async fn run_group(task: &ServiceTask, started: Started) -> Ended {
    let run_cancel = task.cancel().child_token();
    let ctx = RunContext {
        service: task.name.clone(),
        instance_id: task.instance.id().to_string(),
        spec: task.spec.clone(),
        spec_dir: task.instance.spec().dir.clone(),
        ingresses: started.ingresses.clone(),
        egresses: started.egresses.clone(),
        env: started.env,
        temp_dir: task.temp_dir(),
        env_dir: task.instance.env_dir().to_path_buf(),
        output: task.output(),
        callbacks: started.callbacks.clone(),
        cancel: run_cancel.clone(),
        stop_grace: task.settings.stop_grace,
        listeners: started.listeners,
        reaper: task.instance.reaper().cloned(),
        artifacts: task.artifacts.clone(),
    };
    let runner = task.service_type.run(ctx);
    tokio::pin!(runner);
    let lifecycle = after_start(
        task,
        &started.ingresses,
        &started.egresses,
        &started.callbacks,
    );
    tokio::pin!(lifecycle);

    let shutdown = task.settings.shutdown_wait();
    tokio::select! {
        biased;
        _ = task.cancel().cancelled() => {
            task.emit(EventType::ServiceStopping);
            match tokio::time::timeout(shutdown, &mut runner).await {
                Ok(Ok(())) => Ended::Stopped,
                // It ended by itself just as it was told to stop: too late to fail the
                // environment, but worth a word in its log.
                Ok(Err(e)) => {
                    task.output().note([format!(
                        "ended by itself as it was being stopped: {e}"
                    )]);
                    Ended::Stopped
                }
                Err(_) => Ended::StopTimedOut(format!(
                    "did not exit within {} of being told to stop",
                    rig_types::GoDuration::from_std(shutdown)
                )),
            }
        }
        result = &mut runner => Ended::Failed(match result {
            Ok(()) => "runner exited early".to_string(),
            Err(e) => e.to_string(),
        }),
        Err(err) = &mut lifecycle => {
            // Published before the runner is stopped, so what the service writes as it stops
            // (a traceback of the SIGINT, say) comes after it and is not taken to explain it.
            fail(task, &err);
            run_cancel.cancel();
            let _ = tokio::time::timeout(shutdown, &mut runner).await;
            Ended::FailedReported(err)
        }
    }
}

/// Readiness → `service.healthy` → init hooks → `service.ready` → (`~test`) `environment.up`,
/// then idles. Only ever returns an error.
async fn after_start(
    task: &ServiceTask,
    ingresses: &BTreeMap<String, Endpoint>,
    egresses: &BTreeMap<String, Endpoint>,
    callbacks: &CallbackDispatcher,
) -> Result<(), String> {
    if let Some(started) = task.service_type.started(&task.service_ref()) {
        started.await.map_err(|e| e.to_string())?;
    }
    for (name, endpoint) in ingresses {
        let ready = task.spec.ingresses.get(name).and_then(|i| i.ready.as_ref());
        let mut kind = task
            .service_type
            .ready_probe(name, endpoint)
            .unwrap_or_else(|| ProbeKind::for_ingress(&endpoint.protocol, ready));
        if kind == ProbeKind::Tcp && task.service_type.published_by_proxy() {
            kind = ProbeKind::TcpHeld;
        }
        let settings = PollSettings::from_spec(ready);
        // A local port is probed the moment it starts listening, not at the next scheduled
        // probe, and not before; a TCP probe is answered by the kernel saying the address
        // accepts connections (see `ready::listen_watch`). Anything else is probed at once.
        let local = local_port(&endpoint.hostport);
        let ready_without_dial =
            kind == ProbeKind::Tcp && task.service_type.tcp_ready_without_dial();
        let hint = async move {
            let Some((port, at)) = local else {
                return Hint::Unavailable;
            };
            match listen_watch::listening(port, at).await {
                Heard::Unavailable => Hint::Unavailable,
                Heard::Accepting if ready_without_dial => Hint::Ready,
                Heard::Listening | Heard::Accepting => Hint::ProbeNow,
            }
        };
        let probed = poll_hinted(
            settings,
            || probe(&kind, &endpoint.hostport),
            |err| {
                let mut event = Event::for_service(EventType::HealthCheckFailed, &task.name);
                event.ingress = name.clone();
                event.error = err.to_string();
                task.instance.emit(event);
            },
            hint,
        )
        .await;
        if let Err(e) = probed {
            let advice =
                match task
                    .service_type
                    .not_ready_advice(&task.service_ref(), name, endpoint)
                {
                    Some(look) => tokio::time::timeout(ADVICE_TIME, look).await.ok().flatten(),
                    None => None,
                };
            return Err(match advice {
                Some(advice) => format!("ingress {name:?}: {e}; {advice}"),
                None => format!("ingress {name:?}: {e}"),
            });
        }
    }
    task.emit(EventType::ServiceHealthy);

    let init = hooks(&task.spec, |h| &h.init);
    if !init.is_empty() {
        task.emit(EventType::ServiceInit);
        for (i, hook) in init.iter().enumerate() {
            let _running = task
                .instance
                .running_hook(&task.name, hook_name("init", i, hook));
            if hook.hook_type != "client_func" {
                if let Some(run) = task.service_type.init_hook(HookContext {
                    service: task.service_ref(),
                    hook: hook.clone(),
                    spec_dir: task.instance.spec().dir.clone(),
                    ingresses: ingresses.clone(),
                    egresses: egresses.clone(),
                    output: task.output(),
                    host_env: task.instance.spec().host_env.clone(),
                    reaper: task.instance.reaper().cloned(),
                }) {
                    let limit = own_limit(hook).unwrap_or(SERVER_HOOK_TIMEOUT);
                    match tokio::time::timeout(limit, run).await {
                        Ok(done) => done.map_err(|e| e.to_string())?,
                        Err(_) => return Err(hook_timed_out(i, hook, limit)),
                    }
                    continue;
                }
            }
            run_hook(task, callbacks, hook, Phase::Init).await?;
        }
    }
    task.emit(EventType::ServiceReady);

    if task.spec.injected && task.spec.service_type == "test" {
        emit_environment_up(&task.instance, egresses, &task.no_ingress).await?;
    }
    std::future::pending::<()>().await;
    Ok(())
}

/// How long a look at why an ingress did not become ready may take
/// ([`ServiceType::not_ready_advice`](crate::services::ServiceType::not_ready_advice)).
const ADVICE_TIME: Duration = Duration::from_secs(2);

/// The port of a loopback `host:port`, and which loopback address a dial goes to.
fn local_port(hostport: &str) -> Option<(u16, Loopback)> {
    let (host, port) = hostport.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let at = match host.parse::<std::net::IpAddr>() {
        Ok(ip) if ip == std::net::Ipv4Addr::LOCALHOST => Loopback::V4,
        Ok(ip) if ip == std::net::Ipv6Addr::LOCALHOST => Loopback::V6,
        Ok(ip) if ip.is_loopback() => Loopback::Other,
        Err(_) if host == "localhost" => Loopback::Either,
        _ => return None,
    };
    Some((port.parse().ok()?, at))
}

/// How long a server-side hook (`exec`, `sql`, `schema`) may run unless it says otherwise.
const SERVER_HOOK_TIMEOUT: Duration = Duration::from_secs(300);

/// The hook's own `timeout`, when it sets one (zero means the default).
fn own_limit(hook: &HookSpec) -> Option<Duration> {
    hook.timeout.to_std().filter(|d| !d.is_zero())
}

/// A hook as the spec names it: `hooks.init[0] (sql)`.
fn hook_name(phase: &str, i: usize, hook: &HookSpec) -> String {
    format!("hooks.{phase}[{i}] ({})", hook.hook_type)
}

/// The error of `hooks.init[i]` running past `limit`.
fn hook_timed_out(i: usize, hook: &HookSpec, limit: Duration) -> String {
    format!(
        "{} did not finish within {}; if it needs longer, give it a \"timeout\" \
         (e.g. \"timeout\": \"10m\")",
        hook_name("init", i, hook),
        GoDuration::from_std(limit)
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Prestart,
    Init,
}

fn hooks<'a>(
    spec: &'a Service,
    pick: impl Fn(&'a rig_types::Hooks) -> &'a Vec<HookSpec>,
) -> &'a [HookSpec] {
    spec.hooks
        .as_ref()
        .map(|h| pick(h).as_slice())
        .unwrap_or(&[])
}

async fn run_hook(
    task: &ServiceTask,
    callbacks: &CallbackDispatcher,
    hook: &HookSpec,
    phase: Phase,
) -> Result<(), String> {
    if hook.hook_type == "client_func" {
        let func = hook
            .client_func
            .as_ref()
            .ok_or("client_func hook missing client_func spec")?;
        return callbacks
            .call(&func.name, CallbackKind::Hook, own_limit(hook))
            .await
            .map(|_| ());
    }
    match phase {
        Phase::Prestart => Err(format!(
            "server-side hook type {:?} is not supported in prestart phase (only client_func hooks allowed)",
            hook.hook_type
        )),
        Phase::Init => Err(format!(
            "unsupported hook type {:?} for service type {}",
            hook.hook_type, task.spec.service_type
        )),
    }
}
