//! Callbacks through the real `rigd` binary, answered by the test over
//! `POST /environments/{id}/events` as an SDK would: `client_func` prestart and init hooks,
//! a hook that fails, and a `client` service whose server the test runs itself.

mod support;

use std::process::Stdio;

use rig_types::CallbackKind;
use rig_types::EventType::{self, *};
use rigd::cli::client::DeleteOptions;
use serde_json::json;
use support::{http_service, Rigd};
use tokio::io::AsyncReadExt;

#[tokio::test]
async fn hooks_and_a_client_service_start_are_answered_by_the_client() {
    let rigd = Rigd::start();
    let mut api = http_service();
    api["hooks"] = json!({
        "prestart": [{"type": "client_func", "client_func": {"name": "seed"}}],
        "init": [{"type": "client_func", "client_func": {"name": "migrate"}}]
    });
    let id = rigd
        .create(json!({"name": "hooks", "services": {
            "api": api,
            "worker": {
                "type": "client",
                "config": {"start_handler": "run_worker"},
                "ingresses": {"default": {"protocol": "http"}}
            }
        }}))
        .await;

    let mut events = rigd.events(&id);
    let mut answered = Vec::new();
    let mut worker_server = None;
    loop {
        let event = events.next().await;
        match event.event_type {
            EventType::CallbackRequest => {
                let callback = event.callback.as_ref().expect("a callback request");
                let wiring = callback
                    .wiring
                    .as_ref()
                    .expect("callbacks carry the wiring");
                assert!(!wiring.env_dir.is_empty(), "{wiring:?}");
                assert_eq!(
                    wiring.temp_dir,
                    format!("{}/{}", wiring.env_dir, event.service)
                );
                if callback.kind == CallbackKind::Start {
                    // Play the SDK: launch the client service on the port rigd published.
                    let port = wiring.ingresses["default"].port().expect("a port");
                    let published = events
                        .seen()
                        .iter()
                        .find(|e| e.event_type == IngressPublished && e.service == "worker")
                        .and_then(|e| e.endpoint.as_ref())
                        .expect("worker's ingress was published before its start callback");
                    assert_eq!(published.port(), Some(port));
                    worker_server = Some(python_server(port));
                }
                answered.push((event.service.clone(), callback.name.clone(), callback.kind));
                rigd.answer(&id, &event, None).await;
            }
            EnvironmentUp => break,
            EnvironmentDown => panic!(
                "the environment failed:\n{}",
                support::describe(events.seen())
            ),
            _ => {}
        }
    }
    answered.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        answered,
        [
            ("api".to_string(), "migrate".to_string(), CallbackKind::Hook),
            (
                "worker".to_string(),
                "run_worker".to_string(),
                CallbackKind::Start
            ),
            ("api".to_string(), "seed".to_string(), CallbackKind::Hook),
        ]
    );
    let api_types: Vec<_> = events
        .service_types("api")
        .into_iter()
        .filter(|t| *t != HealthCheckFailed)
        .collect();
    assert_eq!(
        api_types,
        [
            IngressPublished,
            ServicePrestart,
            CallbackRequest,
            CallbackResponse,
            ServiceStarting,
            ServiceHealthy,
            ServiceInit,
            CallbackRequest,
            CallbackResponse,
            ServiceReady
        ]
    );
    // The worker became healthy through rigd's probes of the server the test started.
    assert!(events.position(ServiceReady, "worker") < events.position(EnvironmentUp, ""));
    rigd.client()
        .delete_environment(&id, &DeleteOptions::default())
        .await
        .expect("DELETE");
    let mut server = worker_server.expect("the worker's start callback came");
    server.start_kill().expect("stop the worker's server");
    let mut log = String::new();
    server
        .stderr
        .take()
        .expect("piped stderr")
        .read_to_string(&mut log)
        .await
        .expect("read the server's log");
    assert!(
        log.contains("\"GET / HTTP/1.1\""),
        "no readiness probe reached the worker's server: {log}"
    );
}

#[tokio::test]
async fn a_hook_answered_with_an_error_fails_the_environment() {
    let rigd = Rigd::start();
    let mut api = http_service();
    api["hooks"] = json!({"init": [{"type": "client_func", "client_func": {"name": "seed"}}]});
    let id = rigd
        .create(json!({"name": "hookerr", "services": {"api": api}}))
        .await;
    let mut events = rigd.events(&id);
    let request = events.until(CallbackRequest).await;
    assert_eq!(
        request.callback.as_ref().map(|c| c.name.as_str()),
        Some("seed")
    );
    rigd.answer(&id, &request, Some("table exists")).await;

    let down = events.until(EnvironmentDown).await;
    assert!(!events.saw(EnvironmentUp));
    let failed = &events.seen()[events.position(ServiceFailed, "api")];
    assert_eq!(failed.error, "callback \"seed\": error: table exists");
    assert!(
        down.message
            .contains("service \"api\": callback \"seed\": error: table exists"),
        "{}",
        down.message
    );
    rigd.client()
        .delete_environment(&id, &DeleteOptions::default())
        .await
        .expect("DELETE");
}

/// `python3 -m http.server` on `port`, its request log on a piped stderr; killed on drop.
fn python_server(port: u16) -> tokio::process::Child {
    tokio::process::Command::new("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1"])
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start python3 -m http.server")
}
