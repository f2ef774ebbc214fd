//! [`EnvironmentBuilder`]: options, then `up`: find rigd, create the environment, follow it
//! until it is up.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rig_types::GoDuration;
use tokio::runtime::Handle;

use super::session::Session;
use super::shared::{Phase, Shared};
use super::teardown::{Ending, Lifetime};
use super::traffic_store::DEFAULT_TRAFFIC_MEMORY;
use super::Environment;
use crate::background;
use crate::error::{Error, Result};
use crate::service::{build_services, Service};
use crate::transport::autostart::{AddrSource, Autostart, AutostartError};
use crate::transport::client::{ClientError, RigdClient};

/// Default time from creating the environment until it must be up.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(120);
/// Default time a hook may run before the SDK fails it.
pub const DEFAULT_CALLBACK_TIMEOUT: Duration = Duration::from_secs(25);
/// rigd is told to wait this much longer than the SDK for a callback answer, so a hook that
/// overruns is reported by the SDK (which names the hook) rather than by rigd.
pub(crate) const RIGD_CALLBACK_MARGIN: Duration = Duration::from_secs(5);
/// How often the SDK tells rigd the environment is still in use when no TTL is set (rigd's
/// default TTL is 10 minutes).
const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(60);

/// Options for an environment; finish with [`EnvironmentBuilder::up`].
///
/// ```no_run
/// # async fn example() -> rig::Result<()> {
/// use std::time::Duration;
///
/// let env = rig::Environment::builder("orders")
///     .service("api", rig::process("./target/debug/api"))
///     .observe(false)
///     .startup_timeout(Duration::from_secs(30))
///     .up()
///     .await?;
/// # Ok(()) }
/// ```
#[must_use = "nothing happens until .up().await"]
#[derive(Debug)]
pub struct EnvironmentBuilder {
    name: String,
    services: Vec<(String, Service)>,
    observe: bool,
    startup_timeout: Duration,
    ttl: Option<Duration>,
    keep_for: Option<Duration>,
    callback_timeout: Duration,
    traffic_memory: usize,
    rigd_addr: Option<String>,
    rig_dir: Option<PathBuf>,
    rigd_binary: Option<PathBuf>,
}

impl EnvironmentBuilder {
    pub(super) fn new(name: String) -> EnvironmentBuilder {
        EnvironmentBuilder {
            name,
            services: Vec::new(),
            observe: true,
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            ttl: None,
            keep_for: None,
            callback_timeout: DEFAULT_CALLBACK_TIMEOUT,
            traffic_memory: DEFAULT_TRAFFIC_MEMORY,
            rigd_addr: None,
            rig_dir: None,
            rigd_binary: None,
        }
    }

    /// Adds a service.
    pub fn service(mut self, name: impl Into<String>, service: Service) -> EnvironmentBuilder {
        self.services.push((name.into(), service));
        self
    }

    /// Adds services.
    pub fn services<I, S>(mut self, services: I) -> EnvironmentBuilder
    where
        I: IntoIterator<Item = (S, Service)>,
        S: Into<String>,
    {
        self.services
            .extend(services.into_iter().map(|(n, s)| (n.into(), s)));
        self
    }

    /// Puts an observing proxy on every edge, the test's own included, so traffic is
    /// recorded (default `true`). Off, services talk directly and no traffic is recorded.
    pub fn observe(mut self, observe: bool) -> EnvironmentBuilder {
        self.observe = observe;
        self
    }

    /// How long the environment may take to come up (default 2 minutes).
    pub fn startup_timeout(mut self, timeout: Duration) -> EnvironmentBuilder {
        self.startup_timeout = timeout;
        self
    }

    /// The lifetime rigd gives the environment without word from the test (default: rigd's,
    /// 10 minutes). The SDK renews it while the environment is in use, and a test process
    /// that dies without tearing down ends its environment within 30 s (rigd's
    /// `--orphan-grace`), so this only matters when the test stops answering but stays
    /// connected, e.g. paused in a debugger.
    pub fn ttl(mut self, ttl: Duration) -> EnvironmentBuilder {
        self.ttl = Some(ttl);
        self
    }

    /// Keeps the environment running for `ttl` after the test instead of tearing it down, to
    /// inspect it (`rig ps`, `rig traffic --follow`, its services' ports); rigd removes it
    /// when that time has passed without word from a client, or `rig down <id>` does.
    /// `down()` and drops then only stop renewing it. The environment variable `RIG_TTL`
    /// (a Go duration such as `30m`) does the same for every environment of a run and takes
    /// precedence. An environment that fails to start is torn down regardless.
    pub fn keep_for(mut self, ttl: Duration) -> EnvironmentBuilder {
        self.keep_for = Some(ttl);
        self
    }

    /// How long a prestart or init hook may run (default 25 s). rigd is told to wait a little
    /// longer (spec `callback_timeout`), so any value works.
    pub fn callback_timeout(mut self, timeout: Duration) -> EnvironmentBuilder {
        self.callback_timeout = timeout;
        self
    }

    /// How many bytes of observed traffic (events with their captured bodies) the handle
    /// keeps in memory (default 64 MiB). Every event is kept: older ones move to an unnamed
    /// temporary file and are read back when a query such as
    /// [`observed`](crate::Environment::observed) reaches them.
    pub fn traffic_memory(mut self, bytes: usize) -> EnvironmentBuilder {
        self.traffic_memory = bytes;
        self
    }

    /// Uses the rigd at `addr` (`host:port`) instead of finding or starting one.
    pub fn rigd_addr(mut self, addr: impl Into<String>) -> EnvironmentBuilder {
        self.rigd_addr = Some(addr.into());
        self
    }

    /// The rig directory (addr and lock files, logs, environment directories) instead of
    /// `$RIG_DIR` or `~/.rig`.
    pub fn rig_dir(mut self, dir: impl Into<PathBuf>) -> EnvironmentBuilder {
        self.rig_dir = Some(dir.into());
        self
    }

    /// The rigd binary to start when none is running, instead of `$RIG_BINARY` or the
    /// search (next to the test executable, the Cargo target directory, `PATH`). Takes
    /// precedence over `$RIG_SERVER_ADDR`.
    pub fn rigd_binary(mut self, binary: impl Into<PathBuf>) -> EnvironmentBuilder {
        self.rigd_binary = Some(binary.into());
        self
    }

    /// Brings the environment up: finds or starts rigd, sends the spec, answers hook and
    /// in-test service callbacks, and returns once every service is ready.
    ///
    /// Must run inside a Tokio runtime (`#[tokio::test]`): hooks and in-test services run on
    /// it.
    ///
    /// # Errors
    /// Builder misuse ([`Error::InvalidService`], [`Error::EnvConflict`]), no rigd
    /// ([`Error::Rigd`]), a rejected spec ([`Error::Validation`],
    /// [`Error::UnsupportedServiceType`]), a failed start ([`Error::StartFailed`], with
    /// rigd's summary) or a timeout ([`Error::StartupTimeout`]). The environment is torn
    /// down before the error is returned.
    pub async fn up(self) -> Result<Environment> {
        let user = Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let background = background::handle()?;
        let autostart = self.autostart()?;
        let keep_for = keep_for_setting(&|key| std::env::var(key).ok())?.or(self.keep_for);
        let EnvironmentBuilder {
            name,
            services,
            observe,
            startup_timeout,
            ttl,
            callback_timeout,
            traffic_memory,
            ..
        } = self;
        let ttl = keep_for.or(ttl);

        let parts = build_services(services)?;
        let mut host_env = process_env();
        host_env.extend(parts.env);
        let spec = rig_types::Environment {
            name: name.clone(),
            services: parts.services,
            observe,
            host_env,
            dir: std::env::current_dir()
                .map(|d| d.to_string_lossy().into_owned())
                .unwrap_or_default(),
            ttl: ttl
                .map(|t| GoDuration::from_std(t).to_string())
                .unwrap_or_default(),
            callback_timeout: GoDuration::from_std(
                callback_timeout.saturating_add(RIGD_CALLBACK_MARGIN),
            ),
        };

        let server = autostart.ensure().await?;
        let client = RigdClient::new(&server.addr)?;
        let created = client
            .create_environment(&spec)
            .await
            .map_err(|e| create_error(e, &spec, client.addr()))?;
        // A misspelt config key is ignored by rigd, so the test may not do what it says.
        for warning in &created.warnings {
            eprintln!("rig: environment {name:?}: warning: {warning}");
        }
        let id = created.id;

        // From here on the environment exists on rigd: `lifetime` ends it on every path,
        // including this future being dropped.
        let shared = Arc::new(Shared::new(id, name, client, observe, traffic_memory));
        let mut lifetime = Lifetime::new(shared.clone(), keep_for);
        let session = Arc::new(Session::new(
            shared.clone(),
            parts.handlers,
            user,
            background.clone(),
            callback_timeout,
        ));
        // Unless it is to outlive the test, the environment ends with the test process: a
        // test killed before it could tear down frees everything within rigd's orphan grace.
        let stream = shared
            .client
            .events(&shared.id, None)
            .owning(keep_for.is_none());
        lifetime.track(background.spawn(session.run(stream)).abort_handle());
        let every = ttl.map_or(DEFAULT_KEEPALIVE, |t| {
            (t / 3).clamp(Duration::from_secs(1), DEFAULT_KEEPALIVE)
        });
        lifetime.track(
            background
                .spawn(keepalive(shared.client.clone(), shared.id.clone(), every))
                .abort_handle(),
        );

        let outcome = shared
            .wait_until(startup_timeout, |s| match &s.phase {
                Phase::Starting => None,
                other => Some(other.clone()),
            })
            .await;
        let failure = match outcome {
            Some(Phase::Up(info)) => {
                return Ok(Environment::new(lifetime, shared, info));
            }
            other => other,
        };
        let stall = shared.lock().stall.clone();
        let report = lifetime.end(Ending::StartFailed).await.ok();
        let log_file = report
            .as_ref()
            .and_then(|r| r.log_file.as_ref())
            .map(|p| p.display().to_string());
        // What was not ready at teardown (rigd's summary), else its last stall report: a
        // startup timeout shorter than rigd's stall interval has only the former.
        let summary = report.and_then(|r| r.summary).filter(|s| !s.is_empty());
        let (name, id) = (shared.name.clone(), shared.id.clone());
        Err(match failure {
            Some(Phase::Down(message)) => Error::StartFailed {
                name,
                id,
                message,
                log_file,
            },
            Some(Phase::Lost(reason)) => Error::StreamLost { name, id, reason },
            _ => Error::StartupTimeout {
                name,
                id,
                after: startup_timeout,
                stall: summary.or(stall),
                log_file,
            },
        })
    }

    fn autostart(&self) -> Result<Autostart> {
        if let Some(addr) = &self.rigd_addr {
            return Ok(Autostart::fixed(addr.clone(), AddrSource::Sdk));
        }
        let rig_dir = self.rig_dir.clone();
        let binary = self.rigd_binary.clone();
        let env = move |key: &str| -> Option<OsString> {
            match key {
                "RIG_DIR" if rig_dir.is_some() => rig_dir.clone().map(Into::into),
                "RIG_BINARY" if binary.is_some() => binary.clone().map(Into::into),
                "RIG_SERVER_ADDR" if binary.is_some() => None,
                _ => std::env::var_os(key),
            }
        };
        let exe = std::env::current_exe().ok();
        let cwd = std::env::current_dir().ok();
        let given = self.rigd_binary.is_some();
        Autostart::resolve(&env, exe.as_deref(), cwd.as_deref(), None).map_err(|e| match e {
            // The builder passed its binary as RIG_BINARY: name what the test wrote.
            AutostartError::BinaryMissing { path, .. } if given => AutostartError::BinaryMissing {
                path,
                given_by: "rigd_binary(..)",
            }
            .into(),
            e => e.into(),
        })
    }
}

/// `RIG_TTL`, when set: how long to keep environments after their test.
fn keep_for_setting(var: &dyn Fn(&str) -> Option<String>) -> Result<Option<Duration>> {
    let Some(value) = var("RIG_TTL").filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let invalid = |reason: String| Error::InvalidSetting {
        name: "RIG_TTL",
        value: value.clone(),
        reason,
    };
    let parsed: GoDuration = value.parse().map_err(|e| invalid(format!("{e}")))?;
    match parsed.to_std() {
        Some(d) if !d.is_zero() => Ok(Some(d)),
        _ => Err(invalid(
            "a positive Go duration is needed, e.g. 30m or 1h30m".into(),
        )),
    }
}

/// The test process's environment, the base of every service's (variables that are not
/// valid UTF-8 cannot travel in JSON and are left out).
fn process_env() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// Renews the environment's TTL every `every` until rigd no longer knows it.
async fn keepalive(client: RigdClient, id: String, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = client.keepalive(&id).await {
            if e.is_not_found() {
                return;
            }
        }
    }
}

/// Maps a failed `POST /environments` to the error that says what to do.
fn create_error(error: ClientError, spec: &rig_types::Environment, addr: &str) -> Error {
    let unsupported = |service_type: String| {
        let service = spec
            .services
            .iter()
            .find(|(_, s)| s.service_type == service_type)
            .map(|(n, _)| n.clone())
            .unwrap_or_default();
        Error::UnsupportedServiceType {
            service,
            service_type,
            addr: addr.to_string(),
        }
    };
    match error {
        ClientError::Api {
            status: 422,
            validation_errors,
            message,
        } => {
            // A type the spec format knows but this rigd has no driver for (a 500 before rigd
            // answered it as a validation error).
            if let [only] = validation_errors.as_slice() {
                if let Some(service_type) = unknown_type(only) {
                    return unsupported(service_type);
                }
            }
            Error::Validation {
                name: spec.name.clone(),
                errors: if validation_errors.is_empty() {
                    vec![message]
                } else {
                    validation_errors
                },
            }
        }
        ClientError::Api {
            status: 500,
            ref message,
            ..
        } => {
            if let Some(service_type) = unknown_type(message) {
                return unsupported(service_type);
            }
            if message.contains("observe mode is not available") {
                return Error::ObserveUnavailable {
                    addr: addr.to_string(),
                };
            }
            Error::Client(error)
        }
        other => Error::Client(other),
    }
}

/// The type in rigd's `unknown service type: "postgres"`.
fn unknown_type(message: &str) -> Option<String> {
    let rest = message.split("unknown service type: ").nth(1)?;
    let quoted = rest.strip_prefix('"')?;
    Some(quoted.split('"').next()?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> rig_types::Environment {
        serde_json::from_value(serde_json::json!({
            "name": "orders",
            "services": {"db": {"type": "postgres"}, "api": {"type": "process"}}
        }))
        .unwrap()
    }

    #[test]
    fn unknown_types_become_unsupported_service_type() {
        let unknown = "service \"db\": unknown service type: \"postgres\"";
        // As a validation error (rigd now), and as a 500 (rigd before).
        for (status, message, validation_errors) in [
            (
                422,
                "spec validation failed".to_string(),
                vec![unknown.to_string()],
            ),
            (500, format!("orchestrate: {unknown}"), vec![]),
        ] {
            let err = create_error(
                ClientError::Api {
                    status,
                    message,
                    validation_errors,
                },
                &spec(),
                "127.0.0.1:9",
            );
            assert!(
                matches!(&err, Error::UnsupportedServiceType { service, service_type, .. }
                    if service == "db" && service_type == "postgres"),
                "{status}: {err}"
            );
            assert!(err.to_string().contains("does not support yet"), "{err}");
        }
    }

    #[test]
    fn validation_errors_and_observe_are_mapped() {
        let err = create_error(
            ClientError::Api {
                status: 422,
                message: "spec validation failed".into(),
                validation_errors: vec!["service \"x\": unknown type \"frob\"".into()],
            },
            &spec(),
            "a:1",
        );
        assert_eq!(
            err.to_string(),
            "rigd rejected environment \"orders\":\n  - service \"x\": unknown type \"frob\""
        );
        let err = create_error(
            ClientError::Api {
                status: 500,
                message: "orchestrate: observe mode is not available in this rigd yet".into(),
                validation_errors: vec![],
            },
            &spec(),
            "a:1",
        );
        assert!(matches!(err, Error::ObserveUnavailable { .. }), "{err}");
    }

    #[test]
    fn builder_settings_override_the_process_environment() {
        let tmp = std::env::temp_dir().join(format!("rig-builder-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let binary = tmp.join("my-rigd");
        std::fs::write(&binary, "#!/bin/sh\n").unwrap();
        let a = EnvironmentBuilder::new("x".into())
            .rig_dir(tmp.join("rig"))
            .rigd_binary(&binary)
            .autostart()
            .unwrap();
        assert_eq!(a.rig_dir(), tmp.join("rig"));
        assert_eq!(
            a.mode(),
            &crate::transport::autostart::Mode::Override { binary }
        );
        let fixed = EnvironmentBuilder::new("x".into())
            .rigd_addr("127.0.0.1:7")
            .autostart()
            .unwrap();
        assert!(matches!(
            fixed.mode(),
            crate::transport::autostart::Mode::Fixed {
                source: AddrSource::Sdk,
                ..
            }
        ));
        let _ = std::fs::remove_dir_all(&tmp);
    }
}

#[cfg(test)]
mod keep_for_tests {
    use super::*;

    fn rig_ttl(value: Option<&str>) -> Result<Option<Duration>> {
        keep_for_setting(&|key| {
            assert_eq!(key, "RIG_TTL");
            value.map(str::to_string)
        })
    }

    #[test]
    fn rig_ttl_is_a_positive_go_duration() {
        assert_eq!(rig_ttl(None).unwrap(), None);
        assert_eq!(rig_ttl(Some("")).unwrap(), None);
        assert_eq!(
            rig_ttl(Some("1h30m")).unwrap(),
            Some(Duration::from_secs(5400))
        );
        let err = rig_ttl(Some("30 minutes")).unwrap_err().to_string();
        assert!(err.starts_with("invalid RIG_TTL \"30 minutes\": "), "{err}");
        let err = rig_ttl(Some("0s")).unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid RIG_TTL \"0s\": a positive Go duration is needed, e.g. 30m or 1h30m"
        );
    }
}
