//! Service builders: [`Service`] and the functions that start one ([`process`], [`func`],
//! [`custom`], [`postgres`], ...).
//!
//! Every builder is the same type, so services of different kinds go in one list:
//!
//! ```no_run
//! # async fn example() -> rig::Result<()> {
//! let env = rig::up("orders", [
//!     ("db", rig::postgres()),
//!     ("api", rig::process("./target/debug/api").egress("db").ready_path("/health")),
//! ]).await?;
//! # Ok(()) }
//! ```
//!
//! A method that does not apply to a service's type (`.args` on a `func`, say) is reported by
//! `up` as [`Error::InvalidService`](crate::Error::InvalidService) naming the service.

mod hooks;
mod wire;

pub(crate) use hooks::{ClientFn, Handler, InitHook, Phase};
pub(crate) use wire::build_services;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use rig_types::{EgressSpec, IngressSpec, Protocol};
use serde_json::{Map, Value};

use crate::error::BoxError;
use crate::wiring::Wiring;
use hooks::boxed;

/// What a service is, for deciding which builder methods apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Process,
    Func,
    Custom,
    Cargo,
    Go,
    Container,
    /// `postgres`, `redis`, `s3`, `sqs`, `kafka`, `temporal`.
    Infrastructure,
}

/// A service of an environment, built with chained methods. Start one with [`process`],
/// [`func`], [`custom`], [`cargo`], [`go`], [`container`], [`postgres`], [`redis`], [`s3`],
/// [`sqs`], [`kafka`] or [`temporal`].
///
/// Services that serve something (process, func, custom, cargo, go, container) get one HTTP
/// ingress named `default` unless told otherwise ([`Service::ingress`],
/// [`Service::no_ingress`]).
#[must_use = "a service does nothing until it is passed to rig::up"]
pub struct Service {
    kind: Kind,
    service_type: String,
    /// The type's configuration (sent as `config` unless empty).
    config: Map<String, Value>,
    /// A `custom` configuration that is not a JSON object, sent as given.
    raw_config: Option<Value>,
    args: Vec<String>,
    ingresses: BTreeMap<String, IngressSpec>,
    egresses: BTreeMap<String, EgressSpec>,
    env: Vec<(String, String)>,
    ready_path: Option<String>,
    ready_timeout: Option<Duration>,
    hook_timeout: Option<Duration>,
    prestart: Vec<ClientFn>,
    init: Vec<InitHook>,
    start: Option<ClientFn>,
    problems: Vec<String>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("type", &self.service_type)
            .field("config", &self.config)
            .field("raw_config", &self.raw_config)
            .field("args", &self.args)
            .field("ingresses", &self.ingresses)
            .field("egresses", &self.egresses)
            .field("env", &self.env)
            .field("prestart_hooks", &self.prestart.len())
            .field("init_hooks", &self.init.len())
            .finish_non_exhaustive()
    }
}

/// A service that runs a command: a path (relative paths are resolved against the test's
/// working directory, the package root under `cargo test`) or a name on `PATH`.
///
/// It gets its wiring as environment variables (`PORT`, `HOST`, `<EGRESS>_PORT`,
/// `RIG_WIRING`, ...) and `${VAR}` references in [`Service::args`] are expanded by rigd.
///
/// ```no_run
/// let web = rig::process("python3").args(["-m", "http.server", "${PORT}", "--bind", "127.0.0.1"]);
/// ```
pub fn process(command: impl Into<String>) -> Service {
    Service::new(
        Kind::Process,
        "process",
        object([("command", Value::String(command.into()))]),
    )
}

/// A service whose code is an async function in the test itself (rigd's `client` type).
///
/// rigd allocates its ports, then asks the test to start it; the function is spawned on the
/// test's Tokio runtime with the service's [`Wiring`] and must serve on
/// `wiring.ingress()?.host_port`. rigd checks its readiness like any other service's.
/// Returning an error, or panicking, fails the environment at once (its `service.failed`
/// names the error); so does returning `Ok(())` before the environment is torn down, as a
/// process exiting does (a service must keep serving). The task is aborted when the
/// environment is torn down.
///
/// ```no_run
/// use tokio::io::AsyncWriteExt;
///
/// let hello = rig::func(|wiring| async move {
///     let listener = tokio::net::TcpListener::bind(&wiring.ingress()?.host_port).await?;
///     wiring.log("listening");
///     loop {
///         let (mut conn, _) = listener.accept().await?;
///         conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi").await?;
///     }
/// });
/// ```
pub fn func<F, Fut>(service: F) -> Service
where
    F: FnOnce(Wiring) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    let mut s = Service::new(Kind::Func, "client", Map::new());
    s.start = Some(boxed(service));
    s
}

/// A service of any type rigd knows, with its type-specific configuration as JSON
/// (anything `serde::Serialize`).
///
/// ```no_run
/// let api = rig::custom("process", serde_json::json!({"command": "./api", "dir": "services"}));
/// ```
pub fn custom(service_type: impl Into<String>, config: impl serde::Serialize) -> Service {
    let service_type = service_type.into();
    let mut s = Service::new(Kind::Custom, &service_type, Map::new());
    match serde_json::to_value(config) {
        Ok(Value::Null) => {}
        Ok(Value::Object(map)) => s.config = map,
        Ok(other) => s.raw_config = Some(other),
        Err(e) => s.problem(format!("cannot encode the config as JSON: {e}")),
    }
    s
}

/// The binary of the Cargo package in directory `path`, built (and cached) by rigd: relative
/// to the test's working directory, which `cargo test` sets to the root of the package under
/// test, so `"."` is that package and `"../api"` a sibling. A package with several binaries
/// needs [`Service::bin`]. Requires a rigd with the `cargo` service type.
///
/// ```no_run
/// let api = rig::cargo("../orders-api").bin("orders-api").args(["--port", "${PORT}"]);
/// ```
pub fn cargo(path: impl Into<String>) -> Service {
    Service::new(
        Kind::Cargo,
        "cargo",
        object([("path", Value::String(path.into()))]),
    )
}

/// A Go module or package (`./cmd/api`), built (and cached) by rigd. Requires a rigd with
/// the `go` service type.
pub fn go(module: impl Into<String>) -> Service {
    Service::new(
        Kind::Go,
        "go",
        object([("module", Value::String(module.into()))]),
    )
}

/// A container from `image`. Requires a rigd with the `container` service type.
pub fn container(image: impl Into<String>) -> Service {
    Service::new(
        Kind::Container,
        "container",
        object([("image", Value::String(image.into()))]),
    )
}

/// A PostgreSQL database for this environment (TCP ingress, container port 5432; attributes
/// `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`). Requires a rigd with the
/// `postgres` service type.
pub fn postgres() -> Service {
    Service::infrastructure("postgres", [("default", Protocol::Tcp, 5432)])
}

/// A Redis database for this environment (TCP ingress, container port 6379; attribute
/// `REDIS_URL`). Requires a rigd with the `redis` service type.
pub fn redis() -> Service {
    Service::infrastructure("redis", [("default", Protocol::Tcp, 6379)])
}

/// An S3 bucket for this environment (TCP ingress, container port 9000; attributes
/// `S3_ENDPOINT`, `S3_BUCKET`, AWS credentials). Requires a rigd with the `s3` service type.
pub fn s3() -> Service {
    Service::infrastructure("s3", [("default", Protocol::Tcp, 9000)])
}

/// An SQS queue for this environment (TCP ingress, container port 9324; attributes
/// `SQS_ENDPOINT`, `SQS_QUEUE_URL`, AWS credentials). Requires a rigd with the `sqs` service
/// type.
pub fn sqs() -> Service {
    Service::infrastructure("sqs", [("default", Protocol::Tcp, 9324)])
}

/// A Kafka broker (`default` ingress, Kafka protocol, port 9092); add a schema registry with
/// [`Service::schema_registry`]. Requires a rigd with the `kafka` service type.
pub fn kafka() -> Service {
    Service::infrastructure("kafka", [("default", Protocol::Kafka, 9092)])
}

/// A Temporal server (`default` ingress, gRPC; `ui` ingress, HTTP; attributes
/// `TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`). Requires a rigd with the `temporal` service
/// type.
pub fn temporal() -> Service {
    let mut s = Service::infrastructure("temporal", [("default", Protocol::Grpc, 0)]);
    s.ingresses
        .insert("ui".into(), ingress_spec(Protocol::Http, 0));
    s
}

impl Service {
    fn new(kind: Kind, service_type: &str, config: Map<String, Value>) -> Service {
        Service {
            kind,
            service_type: service_type.to_string(),
            config,
            raw_config: None,
            args: Vec::new(),
            ingresses: BTreeMap::from([("default".to_string(), ingress_spec(Protocol::Http, 0))]),
            egresses: BTreeMap::new(),
            env: Vec::new(),
            ready_path: None,
            ready_timeout: None,
            hook_timeout: None,
            prestart: Vec::new(),
            init: Vec::new(),
            start: None,
            problems: Vec::new(),
        }
    }

    fn infrastructure<const N: usize>(
        service_type: &str,
        ingresses: [(&str, Protocol, u16); N],
    ) -> Service {
        let mut s = Service::new(Kind::Infrastructure, service_type, Map::new());
        s.ingresses = ingresses
            .into_iter()
            .map(|(name, protocol, port)| (name.to_string(), ingress_spec(protocol, port)))
            .collect();
        s
    }

    /// The service type sent to rigd (`process`, `client`, `postgres`, ...).
    pub fn service_type(&self) -> &str {
        &self.service_type
    }

    /// Depends on service `service`: an egress named after it, to its default ingress. The
    /// service gets `<SERVICE>_HOST`/`_PORT` variables (or, in a hook or func, the endpoint via
    /// [`Wiring::egress`]); it starts after `service` is ready.
    pub fn egress(self, service: impl Into<String>) -> Service {
        let service = service.into();
        self.egress_to(service.clone(), service, "")
    }

    /// Depends on ingress `ingress` of service `service` through an egress called `name`
    /// (`ingress` may be `""` for the target's only or `default` ingress).
    ///
    /// ```no_run
    /// let api = rig::process("./api").egress_to("orders-db", "db", "default");
    /// ```
    pub fn egress_to(
        mut self,
        name: impl Into<String>,
        service: impl Into<String>,
        ingress: impl Into<String>,
    ) -> Service {
        self.egresses.insert(
            name.into(),
            EgressSpec {
                service: service.into(),
                ingress: ingress.into(),
            },
        );
        self
    }

    /// Adds (or replaces) an ingress called `name` speaking `protocol`. The default HTTP
    /// ingress stays unless removed with [`Service::no_ingress`] first.
    ///
    /// ```no_run
    /// use rig::Protocol;
    /// let svc = rig::process("./svc").no_ingress().ingress("grpc", Protocol::Grpc).ingress("admin", Protocol::Http);
    /// ```
    pub fn ingress(mut self, name: impl Into<String>, protocol: Protocol) -> Service {
        self.ingresses
            .insert(name.into(), ingress_spec(protocol, 0));
        self
    }

    /// Adds (or replaces) an ingress with full control over its spec (container port,
    /// readiness probe, attributes).
    pub fn ingress_spec(
        mut self,
        name: impl Into<String>,
        spec: rig_types::IngressSpec,
    ) -> Service {
        self.ingresses.insert(name.into(), spec);
        self
    }

    /// Removes every ingress: for workers that serve nothing. rigd counts such a service as
    /// ready once it has started.
    pub fn no_ingress(mut self) -> Service {
        self.ingresses.clear();
        self
    }

    /// Sets the command-line arguments (replacing earlier ones). rigd expands `$VAR` and
    /// `${VAR}` against the service's environment, so `"${PORT}"` is its port. For
    /// `process`, `custom`, `cargo` and `go` services.
    pub fn args<I, S>(mut self, args: I) -> Service
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        match self.kind {
            Kind::Process | Kind::Custom | Kind::Cargo | Kind::Go => {
                self.args = args.into_iter().map(Into::into).collect();
            }
            _ => self.problem(format!(
                "arguments are not supported by {} services",
                self.describe()
            )),
        }
        self
    }

    /// Sets an environment variable for the service.
    ///
    /// For a `process`, `cargo`, `go` or `container` service it goes into that service's own
    /// environment (its config's `env`). A `custom` service's type may have no such field, so
    /// for those the variable is added to the environment's `host_env`, which **every**
    /// service of the environment sees (overriding the test process's own value); two
    /// services setting one variable to different values is then an error
    /// ([`Error::EnvConflict`](crate::Error::EnvConflict)). A `func` runs inside the test:
    /// pass it values through its closure instead.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Service {
        let (key, value) = (key.into(), value.into());
        match self.kind {
            Kind::Custom => self.env.push((key, value)),
            Kind::Process | Kind::Container | Kind::Cargo | Kind::Go => {
                let env = self
                    .config
                    .entry("env")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(env) = env {
                    env.insert(key, Value::String(value));
                }
            }
            Kind::Func => self.problem(
                "a func service runs inside the test process: give it values through its \
                 closure, not .env()",
            ),
            Kind::Infrastructure => self.problem(format!(
                "environment variables are not supported by {} services",
                self.describe()
            )),
        }
        self
    }

    /// A `kafka` init hook that creates `topics` (one partition each) once the broker is
    /// up; topics that exist are left alone. Brokers such as the native one create no topic
    /// on first use, so a test producing to a topic creates it here.
    ///
    /// ```no_run
    /// let bus = rig::kafka().topics(["orders", "payments"]);
    /// ```
    pub fn topics<I, S>(mut self, topics: I) -> Service
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let topics: Vec<String> = topics.into_iter().map(Into::into).collect();
        let kafka = self.is_kafka();
        if self.only_for(kafka, ".topics(..)", "kafka") && !topics.is_empty() {
            self.init.push(InitHook::Server {
                hook_type: "schema",
                config: serde_json::json!({ "topics": topics }),
            });
        }
        self
    }

    /// A `kafka` service's schema registry: a `schema-registry` ingress (HTTP, container port
    /// 8081). Only the container backend has one, so `"auto"` then runs a container.
    pub fn schema_registry(mut self) -> Service {
        let kafka = self.is_kafka();
        if self.only_for(kafka, ".schema_registry()", "kafka") {
            self.ingresses
                .insert("schema-registry".into(), ingress_spec(Protocol::Http, 8081));
        }
        self
    }

    /// The binary target a `cargo` service runs, for a package with several.
    pub fn bin(mut self, name: impl Into<String>) -> Service {
        if self.only_for(self.kind == Kind::Cargo, ".bin()", "cargo") {
            self.config.insert("bin".into(), Value::String(name.into()));
        }
        self
    }

    /// The working directory of a `process` (relative to the test's working directory).
    pub fn dir(mut self, dir: impl Into<String>) -> Service {
        if self.only_for(self.kind == Kind::Process, ".dir()", "process") {
            self.config.insert("dir".into(), Value::String(dir.into()));
        }
        self
    }

    /// The HTTP path rigd probes to decide the service is healthy (default `/`; any status
    /// below 500 counts). Applies to every HTTP ingress of the service.
    pub fn ready_path(mut self, path: impl Into<String>) -> Service {
        self.ready_path = Some(path.into());
        self
    }

    /// How long rigd waits for the service to become healthy (default 30 s).
    pub fn ready_timeout(mut self, timeout: Duration) -> Service {
        self.ready_timeout = Some(timeout);
        self
    }

    /// How long each of the service's hooks may run, added before or after (a hook's spec
    /// `timeout`). By default a hook the test runs may take the environment's callback
    /// timeout (30 s, [`EnvironmentBuilder::callback_timeout`](crate::EnvironmentBuilder::callback_timeout))
    /// and one rigd runs ([`Service::init_sql`], [`Service::exec`], ...) 5 minutes; past it the
    /// service fails.
    pub fn hook_timeout(mut self, timeout: Duration) -> Service {
        self.hook_timeout = Some(timeout);
        self
    }

    /// Runs `hook` in the test before the service starts (its wiring resolved: dependencies
    /// are ready, its own ports are allocated). Hooks run in the order added; an error or a
    /// panic fails the service, and with it the environment.
    ///
    /// ```no_run
    /// let api = rig::process("./api").egress("db").prestart(|wiring| async move {
    ///     let config = wiring.temp_dir().join("config.json");
    ///     std::fs::write(&config, format!("{{\"db\": \"{}\"}}", wiring.egress("db")?.host_port))?;
    ///     Ok(())
    /// });
    /// ```
    pub fn prestart<F, Fut>(mut self, hook: F) -> Service
    where
        F: FnOnce(Wiring) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.prestart.push(boxed(hook));
        self
    }

    /// Runs `hook` in the test once the service is healthy, before services that depend on
    /// it start (seed data, run migrations). An error or a panic fails the environment.
    pub fn init<F, Fut>(mut self, hook: F) -> Service
    where
        F: FnOnce(Wiring) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.init.push(InitHook::Client(boxed(hook)));
        self
    }

    /// A `postgres` init hook that rigd runs against the environment's database: the
    /// statements in order, in one session. Each call adds one hook.
    ///
    /// ```no_run
    /// let db = rig::postgres().init_sql(["CREATE TABLE orders (id text PRIMARY KEY)"]);
    /// ```
    pub fn init_sql<I, S>(mut self, statements: I) -> Service
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let statements: Vec<String> = statements.into_iter().map(Into::into).collect();
        // No statements, no hook (rigd refuses a sql hook with nothing to run).
        if !statements.is_empty() {
            self.server_hook(
                "init_sql",
                "sql",
                serde_json::json!({ "statements": statements }),
            );
        }
        self
    }

    /// A `postgres` init hook from a directory of `.sql` files (not recursive), applied in
    /// file-name order, each file's whole text as one statement — a migrations directory.
    /// A relative path is resolved against the working directory now. An unreadable
    /// directory is reported by `up`; an empty one adds no hook.
    pub fn init_sql_dir(mut self, dir: impl AsRef<std::path::Path>) -> Service {
        let dir = dir.as_ref();
        match sql_files(dir) {
            Ok(statements) if statements.is_empty() => self,
            Ok(statements) => self.init_sql(statements),
            Err(e) => {
                self.problem(format!(".init_sql_dir({}): {e}", dir.display()));
                self
            }
        }
    }

    /// An init hook that runs `command` inside the service (a `container`, or a `postgres`
    /// server); its output goes to the log, and a non-zero exit fails the environment.
    pub fn exec<I, S>(mut self, command: I) -> Service
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let command: Vec<String> = command.into_iter().map(Into::into).collect();
        let runs_exec = self.kind == Kind::Container
            || (self.kind == Kind::Infrastructure && self.service_type == "postgres");
        if !runs_exec {
            self.problem(format!(
                ".exec(..) runs a command inside a container or a postgres service, not a {}",
                self.describe()
            ));
        }
        self.init.push(InitHook::Server {
            hook_type: "exec",
            config: serde_json::json!({ "command": command }),
        });
        self
    }

    /// Where an infrastructure service runs: `native` (a server process found on this
    /// machine), `container` (upstream's image) or `auto` (the default: native when
    /// available).
    pub fn backend(mut self, backend: impl Into<String>) -> Service {
        self.infrastructure_option("backend", Value::String(backend.into()));
        self
    }

    /// The container image of an infrastructure service's container backend.
    pub fn image(mut self, image: impl Into<String>) -> Service {
        self.infrastructure_option("image", Value::String(image.into()));
        self
    }

    /// The Temporal CLI version of a `temporal` service (upstream's `Version`; default
    /// 1.5.1). rigd's native backend runs the CLI it finds; the container backend runs
    /// `temporalio/temporal:<version>`.
    pub fn version(mut self, version: impl Into<String>) -> Service {
        if self.service_type == "temporal" {
            self.config
                .insert("version".to_string(), Value::String(version.into()));
        } else {
            self.problem(format!(
                ".version(..) applies to temporal services, not {}",
                self.describe()
            ));
        }
        self
    }

    /// Sets one key of the service's type configuration (rigd's spec `config`), for
    /// options without a method of their own.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<Value>) -> Service {
        if self.kind == Kind::Func || self.raw_config.is_some() {
            self.problem(
                ".config(..) needs a service whose configuration is a JSON object (not a func \
                 or a custom service built from a non-object value)",
            );
        } else {
            self.config.insert(key.into(), value.into());
        }
        self
    }

    fn server_hook(&mut self, method: &str, hook_type: &'static str, config: Value) {
        if self.service_type != "postgres" {
            self.problem(format!(
                ".{method}(..) applies to postgres services, not {}",
                self.describe()
            ));
        }
        self.init.push(InitHook::Server { hook_type, config });
    }

    fn infrastructure_option(&mut self, key: &str, value: Value) {
        if self.kind == Kind::Infrastructure {
            self.config.insert(key.to_string(), value);
        } else {
            self.problem(format!(
                ".{key}(..) applies to infrastructure services (postgres, redis, s3, sqs, \
                 kafka, temporal), not {}",
                self.describe()
            ));
        }
    }

    fn is_kafka(&self) -> bool {
        self.kind == Kind::Infrastructure && self.service_type == "kafka"
    }

    /// Whether `method` applies (`applies`); when it does not, records that it is only for
    /// `kinds` services.
    fn only_for(&mut self, applies: bool, method: &str, kinds: &str) -> bool {
        if !applies {
            self.problem(format!(
                "{method} is only for {kinds} services, not {}",
                self.describe()
            ));
        }
        applies
    }

    fn problem(&mut self, problem: impl Into<String>) {
        self.problems.push(problem.into());
    }

    fn describe(&self) -> &str {
        match self.kind {
            Kind::Func => "func",
            _ => &self.service_type,
        }
    }
}

/// The `.sql` files of `dir` in file-name order, each file's text.
fn sql_files(dir: &std::path::Path) -> std::io::Result<Vec<String>> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    files.retain(|p| p.is_file() && p.extension().is_some_and(|x| x == "sql"));
    files.sort();
    files
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))
        })
        .collect()
}

fn ingress_spec(protocol: Protocol, container_port: u16) -> IngressSpec {
    IngressSpec {
        protocol,
        container_port,
        ..IngressSpec::default()
    }
}

fn object<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

#[cfg(test)]
mod tests;
