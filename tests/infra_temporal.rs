//! The `temporal` type through the real `rigd` binary. No registry reachable from these
//! machines provides the Temporal CLI or its image, so what is tested end to end is the
//! refusal: an environment with a `temporal` service fails with an error that says what to
//! install or choose. (Attributes, ports and the dev server's flags are unit-tested in
//! `src/services/temporal`.)

mod support;

use rig_types::EventType;
use serde_json::json;
use support::Rigd;

#[tokio::test]
async fn without_the_cli_the_service_fails_saying_what_to_install() {
    // A PATH and HOME without any Temporal CLI.
    let home = tempfile::tempdir().unwrap();
    let rigd = Rigd::start_with_env(
        &[],
        &[
            ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            ("HOME", home.path().to_str().unwrap()),
        ],
    );
    let id = rigd
        .create(json!({
            "name": "temporal-missing",
            "services": {"temporal": {
                "type": "temporal",
                "config": {"version": "1.5.1"},
                "ingresses": {"default": {"protocol": "grpc"}, "ui": {"protocol": "http"}}
            }}
        }))
        .await;
    let failed = rigd.events(&id).until(EventType::ServiceFailed).await;
    assert_eq!(failed.service, "temporal");
    for needle in ["temporal", "`temporal` CLI is not on PATH", "\"backend\""] {
        assert!(
            failed.error.contains(needle),
            "{needle:?} not in {}",
            failed.error
        );
    }

    let native = json!({"type": "temporal", "config": {"backend": "native"},
                        "ingresses": {"default": {"protocol": "grpc"}}});
    let id = rigd
        .create(json!({"name": "temporal-native", "services": {"temporal": native}}))
        .await;
    let failed = rigd.events(&id).until(EventType::ServiceFailed).await;
    assert!(
        failed
            .error
            .contains("temporal: native backend: the `temporal` CLI is not on PATH"),
        "{}",
        failed.error
    );
}
