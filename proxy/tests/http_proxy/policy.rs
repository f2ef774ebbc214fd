//! What is recorded about probes and secrets (never what is forwarded).

use rig_proxy::http::{HttpSettings, REDACTED};
use rig_types::{Event, EventType};
use serde_json::json;

use crate::origin::Origin;
use crate::support::{curl, Proxy};

#[tokio::test]
async fn probes_are_marked_and_the_header_is_forwarded() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;

    let response = curl(&["-H", "X-Rig-Probe: 1", &proxy.url("/headers")]).await;
    let seen = String::from_utf8(response.body).unwrap();
    assert!(seen.contains("x-rig-probe: 1\n"), "{seen}");
    let r = proxy.events.request().await;
    assert!(r.probe);
    assert_eq!(r.request_headers["X-Rig-Probe"], ["1"]);
    let mut event = Event::new(EventType::RequestCompleted);
    event.request = Some(Box::new(r));
    assert_eq!(
        serde_json::to_value(&event).unwrap()["request"]["probe"],
        json!(true)
    );

    curl(&[&proxy.url("/headers")]).await;
    assert!(!proxy.events.request().await.probe);
}

const SECRETS: &[(&str, &str)] = &[
    ("Authorization", "Bearer t0k3n"),
    ("Proxy-Authorization", "Basic cHJveHk="),
    ("Cookie", "session=abc"),
    ("X-Api-Key", "k3y"),
    ("x-auth-token", "t0k"),
    ("X-Custom", "not a secret by default"),
];

async fn send_secrets(proxy: &Proxy) -> String {
    let mut args: Vec<String> = Vec::new();
    for (name, value) in SECRETS {
        args.push("-H".into());
        args.push(format!("{name}: {value}"));
    }
    args.push(proxy.url("/headers"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    String::from_utf8(curl(&args).await.body).unwrap()
}

#[tokio::test]
async fn secrets_are_redacted_in_events_by_default_but_forwarded_intact() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;

    let seen = send_secrets(&proxy).await;
    for (name, value) in SECRETS {
        let line = format!("{}: {value}\n", name.to_ascii_lowercase());
        assert!(seen.contains(&line), "the origin got {line:?}: {seen}");
    }
    let r = proxy.events.request().await;
    for key in [
        "Authorization",
        "Proxy-Authorization",
        "Cookie",
        "X-Api-Key",
        "X-Auth-Token",
    ] {
        assert_eq!(r.request_headers[key], [REDACTED], "{key}");
    }
    assert_eq!(r.request_headers["X-Custom"], ["not a secret by default"]);

    let response = curl(&[&proxy.url("/cookie")]).await;
    assert_eq!(response.header("set-cookie"), Some("session=s3cr3t"));
    let r = proxy.events.request().await;
    assert_eq!(r.response_headers["Set-Cookie"], [REDACTED]);
}

#[tokio::test]
async fn the_redaction_list_is_configurable() {
    let origin = Origin::start().await;
    let settings = HttpSettings {
        redact: vec!["x-CUSTOM".into()],
        ..HttpSettings::default()
    };
    let mut proxy = Proxy::with(origin.addr.to_string(), settings).await;
    send_secrets(&proxy).await;
    let r = proxy.events.request().await;
    assert_eq!(r.request_headers["X-Custom"], [REDACTED]);
    assert_eq!(r.request_headers["Authorization"], ["Bearer t0k3n"]);

    let settings = HttpSettings {
        redact: Vec::new(),
        ..HttpSettings::default()
    };
    let mut proxy = Proxy::with(origin.addr.to_string(), settings).await;
    send_secrets(&proxy).await;
    let r = proxy.events.request().await;
    for (name, value) in SECRETS {
        let key = rig_key(name);
        assert_eq!(r.request_headers[&key], [*value], "{key}");
    }
}

fn rig_key(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => {
                    first.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase()
                }
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}
