//! The progress watchdog: publishes `progress.stall` with a snapshot of every unfinished
//! service when nothing has happened for a while, so a hung startup explains itself.
//!
//! Unlike upstream, failed readiness probes are not progress (a service that never becomes
//! healthy would otherwise hide its own stall), the check runs several times per threshold so
//! a stall is reported close to the threshold rather than up to twice it, and egresses through
//! observing proxies are reported as waits on the real target.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rig_types::{DiagnosticSnapshot, Environment, Event, EventType, GoDuration, ServiceSnapshot};
use tokio::time::Instant;

use super::Instance;

/// Watches `instance` until `stop` is cancelled or nothing can be stuck any more.
pub(super) async fn watch(
    instance: Arc<Instance>,
    threshold: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    if threshold.is_zero() {
        return;
    }
    let check_every = (threshold / 4).max(Duration::from_millis(5));
    let mut last_seq = 0;
    let mut quiet_since = Instant::now();
    let mut reported: u32 = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(check_every) => {}
        }
        let events = instance.log().lifecycle_events();
        let progress = events
            .iter()
            .rev()
            .find(|e| counts_as_progress(&e.event_type))
            .map_or(0, |e| e.seq);
        if progress != last_seq {
            last_seq = progress;
            quiet_since = Instant::now();
            reported = 0;
            continue;
        }
        // Report once per threshold of silence: at 1×, 2×, 3×, ...
        let due = threshold.saturating_mul(reported + 1);
        if quiet_since.elapsed() < due {
            continue;
        }
        let services = snapshot(instance.spec(), &events, |name| instance.hook_of(name));
        if services.is_empty() {
            return;
        }
        reported += 1;
        let stalled_for = GoDuration::from_std(due).to_string();
        let mut event = Event::new(EventType::ProgressStall);
        event.message = stall_message(&stalled_for, &services);
        event.diagnostic = Some(Box::new(DiagnosticSnapshot {
            stalled_for,
            services,
        }));
        instance.emit(event);
    }
}

/// Everything but failed probes and the watchdog's own reports moves an environment forward.
fn counts_as_progress(t: &EventType) -> bool {
    !matches!(t, EventType::HealthCheckFailed | EventType::ProgressStall)
}

/// The phase of every real service that is not finished, in name order.
fn snapshot(
    spec: &Environment,
    events: &[Arc<Event>],
    running: impl Fn(&str) -> Option<String>,
) -> Vec<ServiceSnapshot> {
    let mut phases: BTreeMap<&str, &'static str> = BTreeMap::new();
    for e in events {
        if let Some(phase) = phase_of(&e.event_type) {
            phases.insert(&e.service, phase);
        }
    }
    let phase = |name: &str| phases.get(name).copied().unwrap_or("pending");
    spec.services
        .iter()
        .filter(|(_, s)| !s.injected)
        .filter_map(|(name, service)| {
            let p = phase(name);
            if matches!(p, "ready" | "failed" | "stopped" | "stopping") {
                return None;
            }
            let mut waiting_on = Vec::new();
            if matches!(p, "pending" | "published") {
                for egress in service.egresses.values() {
                    let target = real_target(spec, &egress.service);
                    if phase(target) != "ready" {
                        waiting_on.push(target.to_string());
                    }
                }
                waiting_on.sort();
            }
            Some(ServiceSnapshot {
                name: name.clone(),
                phase: p.to_string(),
                waiting_on,
                running: running(name).unwrap_or_default(),
            })
        })
        .collect()
}

/// Follows an observing proxy to the service it fronts.
fn real_target<'a>(spec: &'a Environment, service: &'a str) -> &'a str {
    match spec.services.get(service) {
        Some(s) if s.injected && s.service_type == "proxy" => s
            .egresses
            .get("target")
            .map_or(service, |t| t.service.as_str()),
        _ => service,
    }
}

fn phase_of(t: &EventType) -> Option<&'static str> {
    Some(match t {
        EventType::IngressPublished => "published",
        EventType::WiringResolved => "wiring_resolved",
        EventType::ServicePrestart => "prestart",
        EventType::ServiceStarting => "starting",
        EventType::ServiceHealthy => "healthy",
        EventType::ServiceInit => "init",
        EventType::ServiceReady => "ready",
        EventType::ServiceFailed => "failed",
        EventType::ServiceStopping => "stopping",
        EventType::ServiceStopped => "stopped",
        _ => return None,
    })
}

fn stall_message(stalled_for: &str, services: &[ServiceSnapshot]) -> String {
    let mut message = format!("no progress for {stalled_for}:");
    for s in services {
        message.push_str(&format!("\n  {}: {}", s.name, s.phase));
        if let Some(detail) = s.detail() {
            message.push_str(&format!(" — {detail}"));
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::PortAllocator;
    use serde_json::json;
    use tokio::sync::watch;

    fn instance(spec: serde_json::Value) -> Arc<Instance> {
        let mut env: Environment = serde_json::from_value(spec).unwrap();
        crate::spec::insert_test_node(&mut env);
        if env.observe {
            crate::spec::transform_observe(&mut env);
        }
        let (_tx, rx) = watch::channel(false);
        Arc::new(Instance::new(
            "id".into(),
            Arc::new(env),
            std::env::temp_dir().join("rigd-watchdog-test"),
            Arc::new(crate::orchestrator::DirPool::new(
                &std::env::temp_dir(),
                None,
            )),
            Arc::new(PortAllocator::new()),
            None,
            rx,
        ))
    }

    /// Runs the watchdog with a 100 ms threshold until the returned token is cancelled.
    fn start_watchdog(inst: &Arc<Instance>) -> tokio_util::sync::CancellationToken {
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(watch(
            inst.clone(),
            Duration::from_millis(100),
            stop.clone(),
        ));
        stop
    }

    fn publish(inst: &Instance, t: EventType, service: &str) {
        inst.emit(Event::for_service(t, service));
    }

    async fn next_stall(inst: &Instance) -> Arc<Event> {
        inst.log()
            .wait_for(|e| e.event_type == EventType::ProgressStall)
            .await
    }

    fn two_services() -> serde_json::Value {
        json!({"name": "w", "services": {
            "db": {"type": "process", "ingresses": {"default": {"protocol": "tcp"}}},
            "app": {"type": "process", "ingresses": {"default": {"protocol": "http"}},
                    "egresses": {"db": {"service": "db"}}}
        }})
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_reports_phases_and_waits() {
        let inst = instance(two_services());
        let stop = start_watchdog(&inst);
        publish(&inst, EventType::IngressPublished, "db");
        publish(&inst, EventType::ServiceStarting, "db");
        let started = Instant::now();
        let stall = next_stall(&inst).await;
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert!(
            started.elapsed() < Duration::from_millis(150),
            "reported close to the threshold"
        );
        let d = stall.diagnostic.as_ref().unwrap();
        assert_eq!(d.stalled_for, "100ms");
        let app = d.services.iter().find(|s| s.name == "app").unwrap();
        assert_eq!(
            (app.phase.as_str(), app.waiting_on.as_slice()),
            ("pending", &["db".to_string()][..])
        );
        let db = d.services.iter().find(|s| s.name == "db").unwrap();
        assert_eq!(db.phase, "starting");
        assert!(db.waiting_on.is_empty());
        assert_eq!(
            stall.message,
            "no progress for 100ms:\n  app: pending — waiting on db\n  db: starting"
        );
        stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_names_the_hook_a_service_is_running() {
        let inst = instance(two_services());
        let stop = start_watchdog(&inst);
        publish(&inst, EventType::ServiceInit, "db");
        let running = inst.running_hook("db", "hooks.init[1] (sql)".into());
        let stall = next_stall(&inst).await;
        let d = stall.diagnostic.as_ref().unwrap();
        let db = d.services.iter().find(|s| s.name == "db").unwrap();
        assert_eq!(
            (db.phase.as_str(), db.running.as_str()),
            ("init", "hooks.init[1] (sql)")
        );
        assert!(
            stall
                .message
                .ends_with("\n  db: init — running hooks.init[1] (sql)"),
            "{}",
            stall.message
        );
        // Once the hook is over (or cancelled), it is no longer named.
        drop(running);
        assert_eq!(inst.hook_of("db"), None);
        stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn failed_probes_are_not_progress() {
        let inst = instance(two_services());
        let stop = start_watchdog(&inst);
        publish(&inst, EventType::ServiceStarting, "db");
        let probes = {
            let inst = inst.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    publish(&inst, EventType::HealthCheckFailed, "db");
                }
            })
        };
        let stall = next_stall(&inst).await;
        assert!(stall.message.contains("db: starting"));
        probes.abort();
        stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn steady_progress_never_stalls() {
        let inst = instance(two_services());
        let stop = tokio_util::sync::CancellationToken::new();
        let dog = tokio::spawn(watch(
            inst.clone(),
            Duration::from_millis(100),
            stop.clone(),
        ));
        for i in 0..20 {
            tokio::time::sleep(Duration::from_millis(33)).await;
            publish(&inst, EventType::ServiceLog, "db"); // logs live apart and are not lifecycle
            publish(
                &inst,
                if i % 2 == 0 {
                    EventType::ServiceStarting
                } else {
                    EventType::IngressPublished
                },
                "db",
            );
        }
        stop.cancel();
        dog.await.unwrap();
        assert!(!inst
            .log()
            .lifecycle_events()
            .iter()
            .any(|e| e.event_type == EventType::ProgressStall));
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_ends_when_nothing_can_be_stuck() {
        let inst = instance(two_services());
        for s in ["db", "app"] {
            publish(&inst, EventType::ServiceReady, s);
        }
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::time::timeout(
            Duration::from_secs(5),
            watch(inst.clone(), Duration::from_millis(100), stop),
        )
        .await
        .expect("watchdog exits by itself");
    }

    #[tokio::test(start_paused = true)]
    async fn stalls_repeat_once_per_threshold() {
        let inst = instance(two_services());
        let stop = start_watchdog(&inst);
        publish(&inst, EventType::ServiceStarting, "db");
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let stalls: Vec<_> = inst
            .log()
            .lifecycle_events()
            .into_iter()
            .filter(|e| e.event_type == EventType::ProgressStall)
            .collect();
        assert!((9..=10).contains(&stalls.len()), "{} stalls", stalls.len());
        assert_eq!(stalls[1].diagnostic.as_ref().unwrap().stalled_for, "200ms");
        stop.cancel();
    }

    #[test]
    fn proxies_are_followed_to_the_real_target() {
        let mut env: Environment = serde_json::from_value(two_services()).unwrap();
        env.observe = true;
        crate::spec::insert_test_node(&mut env);
        crate::spec::transform_observe(&mut env);
        let services = snapshot(&env, &[], |_| None);
        let app = services.iter().find(|s| s.name == "app").unwrap();
        assert_eq!(app.waiting_on, ["db"]);
        assert!(services.iter().all(|s| !s.name.contains('~')));
    }
}
