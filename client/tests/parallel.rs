//! Sixteen tests of one test binary, run in parallel by the test harness as a user's tests
//! are (as many at once as the harness's threads: one per core by default,
//! `-- --test-threads 16` for all at once): each on its own `#[tokio::test]` runtime, each
//! with its own environment (an in-test service behind a proxy, called by the test), all
//! sharing the SDK's background thread and one rigd.

mod support;

use rig::RequestFilter;
use support::{builder, get, serve};

/// Brings up an environment for test `i`, calls it through its proxy and checks that the
/// call was recorded in this environment only.
async fn one_test(i: usize) -> Result<(), rig::BoxError> {
    let env = builder(&format!("sdk-parallel-test-{i}"))
        .service(
            "echo",
            rig::func(move |wiring| async move {
                serve(&wiring, move |_, path| (200, format!("test {i} {path}"))).await
            }),
        )
        .up()
        .await?;
    let reply = get(&format!("{}/hello", env.url("echo")?)).await?;
    assert_eq!(reply.body, format!("test {i} /hello"));
    let seen = env
        .expect_requests(&RequestFilter::new().edge("~test", "echo"), 1)
        .await?;
    assert_eq!(seen[0].response_text(), format!("test {i} /hello"));
    env.down().await?;
    Ok(())
}

macro_rules! parallel_tests {
    ($($name:ident = $i:expr),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() -> Result<(), rig::BoxError> {
                one_test($i).await
            }
        )*
    };
}

parallel_tests!(
    test_00 = 0,
    test_01 = 1,
    test_02 = 2,
    test_03 = 3,
    test_04 = 4,
    test_05 = 5,
    test_06 = 6,
    test_07 = 7,
    test_08 = 8,
    test_09 = 9,
    test_10 = 10,
    test_11 = 11,
    test_12 = 12,
    test_13 = 13,
    test_14 = 14,
    test_15 = 15,
);
