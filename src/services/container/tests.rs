use std::path::Path;

use rig_types::{IngressSpec, Protocol, Service};
use serde_json::json;

use super::*;

fn endpoint(hostport: &str) -> Endpoint {
    Endpoint {
        hostport: hostport.to_string(),
        protocol: Protocol::Http,
        attributes: Some(BTreeMap::from([(
            "URL".to_string(),
            json!("http://${HOST}:${PORT}"),
        )])),
    }
}

fn spec_with(container_ports: &[(&str, u16)], args: &[&str]) -> Service {
    Service {
        service_type: "container".into(),
        ingresses: container_ports
            .iter()
            .map(|(name, port)| {
                (
                    name.to_string(),
                    IngressSpec {
                        protocol: Protocol::Http,
                        container_port: *port,
                        ..IngressSpec::default()
                    },
                )
            })
            .collect(),
        args: args.iter().map(|a| a.to_string()).collect(),
        ..Service::default()
    }
}

#[test]
fn the_inside_view_moves_ingresses_to_their_container_ports_and_egresses_to_the_host() {
    let spec = spec_with(
        &[("default", 80), ("admin", 0)],
        &["--db=${DB_HOST}:${DB_PORT}"],
    );
    let ingresses = BTreeMap::from([
        ("default".to_string(), endpoint("127.0.0.1:41000")),
        ("admin".to_string(), endpoint("127.0.0.1:41001")),
    ]);
    let egresses = BTreeMap::from([
        ("db".to_string(), endpoint("127.0.0.1:5432")),
        ("cache".to_string(), endpoint("localhost:6379")),
        ("ext".to_string(), endpoint("10.1.2.3:9000")),
    ]);
    // 6379 was taken on the gateway address: its relay listens on 45000.
    let relays = BTreeMap::from([(5432, 5432), (6379, 45000)]);
    let parts = Parts {
        service: "web",
        instance_id: "abc-1",
        spec: &spec,
        ingresses: &ingresses,
        egresses: &egresses,
        temp_dir: Path::new("/rig/tmp/abc-1/web"),
        env_dir: Path::new("/rig/tmp/abc-1"),
    };
    let config = ContainerConfig {
        image: "img:1".into(),
        cmd: vec!["serve".into(), "--port=${PORT}".into()],
        env: BTreeMap::from([("EXTRA".to_string(), "yes".to_string())]),
    };
    let c = container_spec(&parts, &config, &relays).unwrap();
    assert_eq!(c.name, "rig-abc-1-web");
    assert_eq!(
        c.ports,
        [
            PortMapping {
                container_port: 41001,
                host_port: 41001
            },
            PortMapping {
                container_port: 80,
                host_port: 41000
            },
        ]
    );
    assert_eq!(c.env["PORT"], "80");
    assert_eq!(c.env["HOST"], "0.0.0.0");
    assert_eq!(c.env["ADMIN_PORT"], "41001");
    assert_eq!(c.env["DB_HOST"], "host.docker.internal");
    assert_eq!(c.env["DB_PORT"], "5432");
    assert_eq!(c.env["CACHE_HOST"], "host.docker.internal");
    assert_eq!(c.env["CACHE_PORT"], "45000");
    assert_eq!(c.env["EXT_HOST"], "10.1.2.3", "not on loopback: left alone");
    // Attribute templates resolve against the inside addresses.
    assert_eq!(c.env["DB_URL"], "http://host.docker.internal:5432");
    assert_eq!(c.env["RIG_TEMP_DIR"], "/rig/temp");
    assert_eq!(c.env["RIG_ENV_DIR"], "/rig/env");
    assert_eq!(c.env["EXTRA"], "yes");
    assert!(
        !c.env.contains_key("PATH"),
        "the host's env is not copied in"
    );
    let wiring: serde_json::Value = serde_json::from_str(&c.env["RIG_WIRING"]).unwrap();
    assert_eq!(wiring["temp_dir"], "/rig/temp");
    assert_eq!(wiring["env_dir"], "/rig/env");
    assert_eq!(wiring["ingresses"]["default"]["hostport"], "0.0.0.0:80");
    assert_eq!(
        c.cmd.as_deref().unwrap(),
        ["serve", "--port=80", "--db=host.docker.internal:5432"]
    );
    assert_eq!(
        c.mounts,
        [
            Mount {
                host: "/rig/tmp/abc-1".into(),
                container: "/rig/env".into()
            },
            Mount {
                host: "/rig/tmp/abc-1/web".into(),
                container: "/rig/temp".into()
            },
        ]
    );
    // The service's own maps are left alone.
    assert_eq!(ingresses["default"].hostport, "127.0.0.1:41000");
    assert_eq!(egresses["db"].hostport, "127.0.0.1:5432");
}

#[test]
fn without_cmd_or_args_the_image_default_runs() {
    let spec = spec_with(&[], &[]);
    let none = BTreeMap::new();
    let parts = Parts {
        service: "job",
        instance_id: "i",
        spec: &spec,
        ingresses: &none,
        egresses: &none,
        temp_dir: Path::new(""),
        env_dir: Path::new("/e"),
    };
    let config = ContainerConfig {
        image: "img".into(),
        ..ContainerConfig::default()
    };
    let c = container_spec(&parts, &config, &BTreeMap::new()).unwrap();
    assert_eq!(c.cmd, None);
    assert_eq!(c.mounts.len(), 1, "no temp dir, no temp mount");
}

#[test]
fn only_loopback_addresses_need_a_relay() {
    assert_eq!(loopback_port("127.0.0.1:8080"), Some(8080));
    assert_eq!(loopback_port("localhost:80"), Some(80));
    assert_eq!(loopback_port("10.0.0.1:80"), None);
    assert_eq!(loopback_port("127.0.0.1:x"), None);
    assert_eq!(loopback_port("127.0.0.1"), None);
}

#[test]
fn names_and_configs_are_checked() {
    assert_eq!(container_name("1a-2b", "api~grpc"), "rig-1a-2b-api-grpc");
    let err = decode(None).unwrap_err();
    assert!(err.message().contains("\"image\""), "{err}");
    let err = decode(Some(&json!({"image": "x", "ports": []}))).unwrap_err();
    assert!(
        err.message().starts_with("invalid container config"),
        "{err}"
    );
    assert_eq!(
        exec_command(Some(&json!({"command": []}))).unwrap_err(),
        "container init: exec hook command is empty"
    );
    assert!(exec_command(Some(&json!({"command": "ls"})))
        .unwrap_err()
        .starts_with("container init: invalid exec hook config"));
    assert_eq!(
        exec_command(Some(&json!({"command": ["ls", "/"]}))).unwrap(),
        ["ls", "/"]
    );
}

#[test]
fn only_root_image_users_are_root() {
    for root in ["", "root", "0", "0:0", "root:staff", " 0 "] {
        assert!(is_root_user(root), "{root:?}");
    }
    for other in ["1001", "app", "1001:1001", "nobody:0"] {
        assert!(!is_root_user(other), "{other:?}");
    }
}

#[test]
fn mounts_are_opened_only_inside_a_private_directory() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let base = tempfile::tempdir().unwrap();
    let tmp = base.path().join("tmp");
    let env = tmp.join("env-1");
    let temp = env.join("web");
    std::fs::create_dir_all(&temp).unwrap();
    for dir in [&tmp, &env, &temp] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    assert_eq!(open_mounts(&env, &temp), None);
    assert_eq!((mode(&env), mode(&temp)), (0o777, 0o777));

    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    for dir in [&env, &temp] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let remark = open_mounts(&env, &temp).expect("a remark");
    assert!(remark.contains("chmod 700"), "{remark}");
    assert_eq!((mode(&env), mode(&temp)), (0o700, 0o700));
}
