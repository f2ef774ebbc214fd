use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::artifacts::{BoxFuture, Resolver};

/// A resolver that writes `binary` into its cache dir, or fails, or blocks until cancelled.
struct Fake {
    id: String,
    behaviour: Behaviour,
    resolves: AtomicUsize,
}

#[derive(Clone, Copy)]
enum Behaviour {
    Build,
    Fail,
    BlockUntilCancelled,
}

impl Fake {
    fn new(id: &str, behaviour: Behaviour) -> Arc<Fake> {
        Arc::new(Fake {
            id: id.to_string(),
            behaviour,
            resolves: AtomicUsize::new(0),
        })
    }
}

impl Resolver for Fake {
    fn cache_key(&self) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async move { Ok(format!("fake/{}", self.id)) })
    }

    fn cached<'a>(&'a self, dir: &'a Path) -> BoxFuture<'a, Option<Output>> {
        Box::pin(async move {
            let path = dir.join("binary");
            path.exists().then(|| Output {
                path,
                ..Output::default()
            })
        })
    }

    fn resolve(&self, job: BuildJob) -> BoxFuture<'_, Result<Output, String>> {
        Box::pin(async move {
            self.resolves.fetch_add(1, Ordering::SeqCst);
            match self.behaviour {
                Behaviour::Build => {
                    let path = job.dir.join("binary");
                    std::fs::write(&path, b"bin").map_err(|e| e.to_string())?;
                    Ok(Output {
                        path,
                        ..Output::default()
                    })
                }
                Behaviour::Fail => Err("immediate failure".to_string()),
                Behaviour::BlockUntilCancelled => {
                    job.cancel.cancelled().await;
                    Err("cancelled".to_string())
                }
            }
        })
    }
}

fn artifact(key: &str, resolver: Arc<Fake>) -> Artifact {
    Artifact {
        key: key.to_string(),
        service: "api".to_string(),
        resolver,
    }
}

fn reporter() -> Reporter {
    Reporter {
        log: Arc::new(EventLog::new()),
        environment: "env".to_string(),
        reaper: None,
    }
}

fn artifact_events(reporter: &Reporter) -> Vec<(EventType, String)> {
    reporter
        .log
        .lifecycle_events()
        .iter()
        .map(|e| (e.event_type.clone(), e.artifact.clone()))
        .collect()
}

#[tokio::test]
async fn builds_once_then_hits_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let fake = Fake::new("a", Behaviour::Build);
    let first = reporter();
    let never = CancellationToken::new();
    let outputs = resolve_all(&[artifact("k:a", fake.clone())], &cache, &first, &never)
        .await
        .unwrap();
    assert_eq!(outputs["k:a"].path, dir.path().join("fake/a/binary"));
    assert_eq!(
        artifact_events(&first),
        [
            (EventType::ArtifactStarted, "k:a".to_string()),
            (EventType::ArtifactCompleted, "k:a".to_string())
        ]
    );
    assert!(dir.path().join("fake/a/.last-used").exists());

    let second = reporter();
    resolve_all(&[artifact("k:a", fake.clone())], &cache, &second, &never)
        .await
        .unwrap();
    assert_eq!(
        artifact_events(&second),
        [(EventType::ArtifactCached, "k:a".to_string())]
    );
    assert_eq!(fake.resolves.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn duplicates_resolve_once_and_distinct_ones_all_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let a = Fake::new("a", Behaviour::Build);
    let b = Fake::new("b", Behaviour::Build);
    let c = Fake::new("c", Behaviour::Build);
    let list = [
        artifact("a", a.clone()),
        artifact("a", a.clone()),
        artifact("b", b.clone()),
        artifact("c", c.clone()),
    ];
    let outputs = resolve_all(&list, &cache, &reporter(), &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(outputs.len(), 3);
    for fake in [a, b, c] {
        assert_eq!(fake.resolves.load(Ordering::SeqCst), 1);
    }
}

/// Services that share an artifact with the one whose log gets its build output are told
/// where it is, once the build starts (not when it is cached).
#[tokio::test]
async fn sharers_of_a_build_are_told_whose_log_has_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let fake = Fake::new("shared", Behaviour::Build);
    let of = |service: &str| Artifact {
        service: service.to_string(),
        ..artifact("cargo:/src/app", fake.clone())
    };
    let remarks = |reporter: &Reporter| -> Vec<(String, String)> {
        reporter
            .log
            .events()
            .iter()
            .filter_map(|e| {
                let log = e.log.as_ref()?;
                log.stream
                    .is_rig()
                    .then(|| (e.service.clone(), log.data.clone()))
            })
            .collect()
    };
    let never = CancellationToken::new();
    let building = reporter();
    let list = [of("api"), of("worker"), of("worker"), of("cron")];
    resolve_all(&list, &cache, &building, &never).await.unwrap();
    let said = |service: &str| {
        (
            service.to_string(),
            "building cargo:/src/app for this service and api: the build output is in api's log\n"
                .to_string(),
        )
    };
    assert_eq!(remarks(&building), [said("cron"), said("worker")]);

    let cached = reporter();
    resolve_all(&list, &cache, &cached, &never).await.unwrap();
    assert_eq!(remarks(&cached), []);
}

#[tokio::test]
async fn the_first_failure_cancels_the_others_and_is_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let reporter = reporter();
    let list = [
        artifact("slow", Fake::new("slow", Behaviour::BlockUntilCancelled)),
        artifact("bad", Fake::new("bad", Behaviour::Fail)),
    ];
    let err = resolve_all(&list, &cache, &reporter, &CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(err, "artifact \"bad\": immediate failure");
    let events = reporter.log.lifecycle_events();
    let failed: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == EventType::ArtifactFailed)
        .collect();
    assert_eq!(
        failed.len(),
        1,
        "the cancelled build is not reported as failed"
    );
    assert_eq!(failed[0].artifact, "bad");
    assert_eq!(failed[0].error, "immediate failure");
    assert_eq!(failed[0].environment, "env");
}

#[tokio::test]
async fn teardown_cancels_builds_without_failure_events() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let reporter = reporter();
    let cancel = CancellationToken::new();
    let list = [artifact(
        "slow",
        Fake::new("slow", Behaviour::BlockUntilCancelled),
    )];
    let phase = {
        let (reporter, cancel) = (reporter.clone(), cancel.clone());
        tokio::spawn(async move { resolve_all(&list, &cache, &reporter, &cancel).await })
    };
    // Wait until the build runs, then tear down.
    reporter
        .log
        .wait_for(|e| e.event_type == EventType::ArtifactStarted)
        .await;
    cancel.cancel();
    let err = phase.await.unwrap().unwrap_err();
    assert!(err.ends_with("cancelled"), "{err}");
    assert!(!reporter
        .log
        .lifecycle_events()
        .iter()
        .any(|e| e.event_type == EventType::ArtifactFailed));
}
