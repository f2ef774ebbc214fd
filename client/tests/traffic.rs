//! Traffic assertions in observe mode, over real HTTP calls through rigd's proxies: the
//! test calls a Python gateway, which calls an in-test service.

mod support;

use std::time::Duration;

use rig::transport::client::RigdClient;
use rig::{Error, RequestFilter};
use support::{builder, gateway, get, serve};

#[tokio::test]
async fn requests_on_every_edge_are_recorded_and_asserted() -> Result<(), rig::BoxError> {
    let api = rig::func(|wiring| async move {
        serve(&wiring, |_method, path| match path {
            "/price" => (200, "42".into()),
            p if p.starts_with("/missing") => (404, "no such thing".into()),
            _ => (200, "api".into()),
        })
        .await
    });
    let env = builder("sdk-traffic")
        .services([("api", api), ("gateway", gateway())])
        .up()
        .await?;

    // The test's endpoints are the proxies, so these calls are traffic from `~test`.
    let priced = get(&format!("{}/price", env.url("gateway")?)).await?;
    assert_eq!(priced.body, "via gateway: 42");
    let direct = get(&format!("{}/missing?x=1", env.url("api")?)).await?;
    assert_eq!(direct.status, 404);

    // Exactly one call on each hop of the gateway request.
    let hop1 = RequestFilter::new().edge("~test", "gateway").path("/price");
    let hop2 = RequestFilter::new()
        .edge("gateway", "api")
        .method("GET")
        .path("/price");
    let seen = env.expect_requests(&hop1, 1).await?;
    assert_eq!(seen[0].status, 200);
    assert_eq!(seen[0].response_text(), "via gateway: 42");
    let seen = env.expect_requests(&hop2, 1).await?;
    assert_eq!(seen[0].ingress, "default");
    assert_eq!(seen[0].response_text(), "42");
    assert!(hop1 != hop2);
    // What was recorded, looked at directly; a misspelt service is an error, not "nothing".
    assert_eq!(env.requests(&hop2)?.len(), 1);
    let err = env.requests(&RequestFilter::new().to("apii")).unwrap_err();
    assert!(matches!(err, rig::Error::UnknownService { .. }), "{err}");

    // Filters by status and by path with its query string.
    let not_found = RequestFilter::new().to("api").status(404);
    let missing = env
        .wait_for_request(&not_found, Duration::from_secs(10))
        .await?;
    assert_eq!(
        (missing.source.as_str(), missing.path.as_str()),
        ("~test", "/missing?x=1")
    );
    assert_eq!(missing.path_only(), "/missing");
    assert_eq!(
        env.requests(&RequestFilter::new().path("/missing?x=1"))?
            .len(),
        1
    );

    // Readiness probes are not application traffic.
    assert!(env
        .requests(&RequestFilter::new())?
        .iter()
        .all(|r| !r.probe));

    // A wrong count fails with a message listing what was seen.
    let err = env
        .expect_within(&hop2, 2, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::TrafficCount { expected: 2, .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with(
            "expected exactly 2 GET /price requests from gateway to api, saw 1:\n  gateway → api  GET /price  200"
        ),
        "{text}"
    );
    assert!(text.contains("~test → gateway  GET /price  200"), "{text}");
    assert!(
        text.contains("~test → api  GET /missing?x=1  404"),
        "{text}"
    );

    // Zero is a count too.
    env.expect_requests(&RequestFilter::new().to("api").method("POST"), 0)
        .await?;

    // Waiting for a request that never comes times out, listing what did.
    let err = env
        .wait_for_request(
            &RequestFilter::new().to("gateway").path("/never"),
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("no /never requests to gateway within 0.2s; HTTP requests seen (3):"),
        "{err}"
    );

    // Every traffic event is available raw too.
    assert!(env
        .traffic_events()
        .iter()
        .any(|e| e.event_type == rig::EventType::RequestCompleted));
    env.down().await?;
    Ok(())
}

/// "Exactly n" counts every exchange that completed before the check, even those whose
/// events were still on their way: a gateway that calls its API twice before answering fails
/// a check for one call, every time (counting what had arrived let it pass most times).
#[tokio::test]
async fn exactly_n_catches_a_call_too_many() -> Result<(), rig::BoxError> {
    let api =
        rig::func(
            |wiring| async move { serve(&wiring, |_method, _path| (200, "42".into())).await },
        );
    let env = builder("sdk-exactly")
        .services([("api", api), ("gateway", gateway())])
        .up()
        .await?;
    for i in 0..5 {
        let path = format!("/price?n={i}");
        let answer = get(&format!("{}/twice{path}", env.url("gateway")?)).await?;
        assert_eq!(answer.body, "twice via gateway: 42");
        let hop = RequestFilter::new().edge("gateway", "api").path(&path);
        let line = line!() + 1;
        let err = env.expect_requests(&hop, 1).await.unwrap_err();
        // The failed check is in the event log, at this line, so the run is logged failed
        // whatever the test does with the error.
        let log = RigdClient::new(env.rigd_addr())?.get_log(env.id()).await?;
        let note = log
            .iter()
            .rev()
            .find(|e| e.event_type == rig::EventType::TestNote)
            .expect("a test.note for the failed check");
        assert_eq!(note.error, format!("traffic.rs:{line}: {err}"));
        match &err {
            Error::TrafficCount {
                expected: 1,
                matched,
                ..
            } => assert_eq!(matched.len(), 2, "{err}"),
            other => panic!("round {i}: {other}"),
        }
        assert_eq!(env.expect_requests(&hop, 2).await?.len(), 2);
    }
    // A service the environment does not have is named at once, not waited for.
    let err = env
        .expect_requests(&RequestFilter::new().edge("gateway", "apii"), 1)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "service \"apii\" not found in environment \"sdk-exactly\" (services: api, gateway)"
    );

    // So is an ingress the target does not have.
    let err = env
        .expect_requests(&RequestFilter::new().to("api").ingress("admin"), 1)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "ingress \"admin\" not found on service \"api\" (ingresses: default)"
    );
    // And one that no service has, when the filter names no target.
    let err = env
        .expect_requests(&RequestFilter::new().ingress("admin"), 1)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no service of environment \"sdk-exactly\" has an ingress \"admin\" (ingresses: default)"
    );
    env.expect_requests(&RequestFilter::new().ingress("default").method("PATCH"), 0)
        .await?;

    // "Not called" is checked against everything observed too.
    env.expect_requests(&RequestFilter::new().to("api").method("POST"), 0)
        .await?;

    // The panicking form says where the assertion is, not where the SDK panicked.
    let env = std::sync::Arc::new(env);
    let line = line!() + 4;
    let panicked = tokio::spawn({
        let env = env.clone();
        let to_api = RequestFilter::new().to("api");
        async move { env.assert_requests(&to_api, 0).await }
    })
    .await
    .unwrap_err();
    let message = *panicked.into_panic().downcast::<String>().unwrap();
    assert!(
        message.starts_with(&format!(
            "traffic.rs:{line}: expected exactly 0 requests to api, saw 10:"
        )),
        "{message}"
    );
    let env = std::sync::Arc::into_inner(env).expect("the only handle");
    env.down().await?;
    Ok(())
}

/// A count that fails says how many of rigd's readiness probes its lists leave out: a
/// service that calls its dependency on every request calls it for those probes too, and
/// without the hint the extra calls have no visible cause.
#[tokio::test]
async fn a_failed_count_says_how_many_readiness_probes_it_left_out() -> Result<(), rig::BoxError> {
    let env = builder("sdk-probes-hint")
        .service(
            "web",
            rig::func(|wiring| async move { serve(&wiring, |_, _| (200, "ok".into())).await }),
        )
        .up()
        .await?;
    get(&format!("{}/once", env.url("web")?)).await?;

    let to_web = RequestFilter::new().to("web");
    let err = env
        .expect_within(&to_web, 2, Duration::from_millis(200))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("expected exactly 2 requests to web, saw 1:"),
        "{text}"
    );
    assert!(
        text.ends_with("\n(and 1 readiness probe of rigd, left out: .include_probes() lists it)"),
        "{text}"
    );
    // With the probe included the count adds up, and nothing is left out.
    env.expect(&to_web.clone().include_probes(), 2).await?;
    env.down().await?;
    Ok(())
}

#[tokio::test]
async fn tcp_connections_are_recorded_without_readiness_probes() -> Result<(), rig::BoxError> {
    use rig::{ConnectionFilter, Protocol};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    // An upper-casing echo server on a raw TCP ingress; rigd probes it (through the proxy)
    // with bare connections before the test gets it.
    let echo = rig::func(|wiring| async move {
        let listener = tokio::net::TcpListener::bind(&wiring.ingress()?.host_port).await?;
        loop {
            let (mut conn, _) = listener.accept().await?;
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while let Ok(n @ 1..) = conn.read(&mut buf).await {
                    if conn
                        .write_all(&buf[..n].to_ascii_uppercase())
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            });
        }
    })
    .ingress("default", Protocol::Tcp);
    let env = builder("sdk-tcp-traffic")
        .service("echo", echo)
        .up()
        .await?;

    let mut conn = tokio::net::TcpStream::connect(&env.endpoint("echo")?.host_port).await?;
    conn.write_all(b"hello").await?;
    let mut answer = [0u8; 5];
    conn.read_exact(&mut answer).await?;
    assert_eq!(&answer, b"HELLO");
    drop(conn);

    // One connection, however many probes rigd made; its bytes once it has closed.
    let closed = env
        .expect(&ConnectionFilter::new().edge("~test", "echo").closed(), 1)
        .await?;
    assert_eq!((closed[0].bytes_in, closed[0].bytes_out), (5, 5));
    assert!(!closed[0].probe);
    env.expect(&ConnectionFilter::new().to("echo"), 1).await?;
    assert!(env
        .connections(&ConnectionFilter::new().min_bytes_in(6))?
        .is_empty());
    let all = env.connections(&ConnectionFilter::new().include_probes())?;
    assert!(
        all.len() >= 2,
        "the readiness probe's connection is recorded too"
    );
    assert!(all.iter().filter(|c| c.probe).all(|c| c.source == "~test"));

    let err = env
        .expect_within(
            &ConnectionFilter::new().from("echo"),
            1,
            Duration::from_millis(100),
        )
        .await
        .unwrap_err();
    // Each connection is listed once, in the phase the filter counts.
    assert_eq!(
        err.to_string(),
        "expected exactly 1 TCP connections from echo, saw 0; all TCP connections seen (1):\n  ~test → echo  opened\n\
         (and 1 readiness probe of rigd, left out: .include_probes() lists it)",
    );
    let err = env
        .expect_within(
            &ConnectionFilter::new().from("echo").closed(),
            1,
            Duration::from_millis(100),
        )
        .await
        .unwrap_err();
    let err = err.to_string();
    assert!(
        err.starts_with("expected exactly 1 closed TCP connections from echo, saw 0; all closed TCP connections seen (1):\n  ~test → echo  closed  5↑ 5↓  ")
            && err.ends_with(
                "ms\n(and 1 readiness probe of rigd, left out: .include_probes() lists it)"
            ),
        "{err}"
    );
    env.down().await?;
    Ok(())
}

/// Traffic beyond `traffic_memory` moves to a temporary file; queries still see every
/// exchange, bodies included, in order.
#[tokio::test]
async fn traffic_beyond_the_memory_budget_is_kept_whole() -> Result<(), rig::BoxError> {
    const CALLS: usize = 40;
    /// 20 kB bodies: the 128 KiB budget holds about six exchanges.
    fn body(n: usize) -> String {
        format!("{n:05}").repeat(4_000)
    }
    let api = rig::func(|wiring| async move {
        serve(&wiring, |_method, path| {
            let n: usize = path.trim_start_matches("/n/").parse().unwrap_or(0);
            (200, body(n))
        })
        .await
    });
    let env = builder("sdk-traffic-spill")
        .traffic_memory(128 * 1024)
        .service("api", api)
        .up()
        .await?;
    let url = env.url("api")?;
    for n in 0..CALLS {
        assert_eq!(get(&format!("{url}/n/{n}")).await?.body, body(n));
    }
    let calls = RequestFilter::new().edge("~test", "api");
    let seen = env.expect_requests(&calls, CALLS).await?;
    for (n, request) in seen.iter().enumerate() {
        assert_eq!(request.path, format!("/n/{n}"));
        assert_eq!(request.response_text(), body(n), "call {n}");
    }
    assert_eq!(
        env.traffic_events()
            .iter()
            .filter(|e| e
                .request
                .as_ref()
                .is_some_and(|r| r.path.starts_with("/n/")))
            .count(),
        CALLS
    );
    // The older ones were read back from the (unlinked) spill file.
    let spill_files = std::fs::read_dir("/proc/self/fd")?
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter(|target| {
            let target = target.to_string_lossy();
            target.contains("rig-sdk-traffic-") && target.ends_with(" (deleted)")
        })
        .count();
    assert!(spill_files >= 1, "no spill file open");
    env.down().await?;
    Ok(())
}
