//! [`Wiring`]: what a service is given: its own ingresses, its egresses, its directories.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use rig_types::{LogStream, Protocol, WiringContext};

use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::logs::LogSink;

/// A service's resolved wiring: where to listen (ingresses), where its dependencies are
/// (egresses), and its directories.
///
/// In-test services ([`rig::func`](crate::func)) and hooks
/// ([`Service::prestart`](crate::Service::prestart), [`Service::init`](crate::Service::init))
/// receive it from rigd; a service binary reads it with [`Wiring::from_env`].
#[derive(Clone)]
pub struct Wiring {
    service: String,
    ingresses: BTreeMap<String, Endpoint>,
    egresses: BTreeMap<String, Endpoint>,
    temp_dir: PathBuf,
    env_dir: PathBuf,
    log: Option<LogSink>,
}

impl fmt::Debug for Wiring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wiring")
            .field("service", &self.service)
            .field("ingresses", &self.ingresses)
            .field("egresses", &self.egresses)
            .field("temp_dir", &self.temp_dir)
            .field("env_dir", &self.env_dir)
            .finish_non_exhaustive()
    }
}

impl Wiring {
    /// The wiring of the service this process runs as, from the variables rigd sets:
    /// `RIG_WIRING` (JSON), else `HOST` and `PORT` (a single `default` ingress of unknown
    /// protocol). `RIG_SERVICE`, `RIG_TEMP_DIR` and `RIG_ENV_DIR` are read when present.
    ///
    /// ```no_run
    /// // In a service binary started by rigd:
    /// let wiring = rig::Wiring::from_env()?;
    /// let listen_on = &wiring.ingress()?.host_port;
    /// let db = wiring.egress("db")?;
    /// # Ok::<(), rig::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::WiringEnv`] when `RIG_WIRING` is not valid JSON, or when neither it nor both
    /// `HOST` and `PORT` are set.
    pub fn from_env() -> Result<Wiring> {
        Wiring::from_vars(&|key| std::env::var(key).ok())
    }

    /// [`Wiring::from_env`] over an explicit variable lookup.
    pub(crate) fn from_vars(var: &dyn Fn(&str) -> Option<String>) -> Result<Wiring> {
        let var = |key: &str| var(key).filter(|v| !v.is_empty());
        let service = var("RIG_SERVICE").unwrap_or_default();
        let mut wiring = if let Some(text) = var("RIG_WIRING") {
            let context: WiringContext =
                serde_json::from_str(&text).map_err(|e| Error::WiringEnv {
                    reason: format!("RIG_WIRING is not valid wiring JSON: {e}"),
                })?;
            Wiring::from_context(context, service, None)
        } else {
            let (Some(host), Some(port)) = (var("HOST"), var("PORT")) else {
                return Err(Error::WiringEnv {
                    reason: "no wiring: set RIG_WIRING (rigd does), or HOST and PORT".into(),
                });
            };
            if port.parse::<u16>().is_err() {
                return Err(Error::WiringEnv {
                    reason: format!("PORT={port:?} is not a port number"),
                });
            }
            let host_port = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            Wiring {
                service,
                ingresses: BTreeMap::from([(
                    "default".to_string(),
                    Endpoint {
                        host_port,
                        protocol: Protocol::default(),
                        attributes: BTreeMap::new(),
                    },
                )]),
                egresses: BTreeMap::new(),
                temp_dir: PathBuf::new(),
                env_dir: PathBuf::new(),
                log: None,
            }
        };
        if let Some(dir) = var("RIG_TEMP_DIR") {
            wiring.temp_dir = dir.into();
        }
        if let Some(dir) = var("RIG_ENV_DIR") {
            wiring.env_dir = dir.into();
        }
        Ok(wiring)
    }

    /// The wiring rigd sent with a callback.
    pub(crate) fn from_context(
        context: WiringContext,
        service: String,
        log: Option<LogSink>,
    ) -> Wiring {
        let convert = |m: BTreeMap<String, rig_types::Endpoint>| {
            m.into_iter()
                .map(|(k, v)| (k, Endpoint::from(v)))
                .collect::<BTreeMap<_, _>>()
        };
        Wiring {
            service,
            ingresses: convert(context.ingresses),
            egresses: convert(context.egresses),
            temp_dir: context.temp_dir.into(),
            env_dir: context.env_dir.into(),
            log,
        }
    }

    /// The service's name (empty when unknown).
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The ingress to listen on: the one named `default`, or the only one.
    ///
    /// # Errors
    /// [`Error::UnknownIngress`] when there is no `default` ingress and not exactly one.
    pub fn ingress(&self) -> Result<&Endpoint> {
        let only = (self.ingresses.len() == 1)
            .then(|| self.ingresses.values().next())
            .flatten();
        match self.ingresses.get("default").or(only) {
            Some(ep) => Ok(ep),
            None => self.ingress_named("default"),
        }
    }

    /// The ingress called `name`.
    ///
    /// # Errors
    /// [`Error::UnknownIngress`] naming the ingresses there are.
    pub fn ingress_named(&self, name: &str) -> Result<&Endpoint> {
        self.ingresses
            .get(name)
            .ok_or_else(|| Error::UnknownIngress {
                service: self.service.clone(),
                ingress: name.to_string(),
                available: self.ingresses.keys().cloned().collect(),
            })
    }

    /// The egress called `name`: the address of a dependency (a proxy in front of it in
    /// observe mode).
    ///
    /// # Errors
    /// [`Error::UnknownEgress`] naming the egresses there are.
    pub fn egress(&self, name: &str) -> Result<&Endpoint> {
        self.egresses.get(name).ok_or_else(|| Error::UnknownEgress {
            service: self.service.clone(),
            egress: name.to_string(),
            available: self.egresses.keys().cloned().collect(),
        })
    }

    /// Every ingress by name.
    pub fn ingresses(&self) -> &BTreeMap<String, Endpoint> {
        &self.ingresses
    }

    /// Every egress by name.
    pub fn egresses(&self) -> &BTreeMap<String, Endpoint> {
        &self.egresses
    }

    /// The service's private temporary directory (`RIG_TEMP_DIR`).
    pub fn temp_dir(&self) -> &Path {
        &self.temp_dir
    }

    /// The directory shared by every service of the environment (`RIG_ENV_DIR`).
    pub fn env_dir(&self) -> &Path {
        &self.env_dir
    }

    /// Writes a line to the service's standard output: into the environment's log for an
    /// in-test service (shown by `rig logs` and in failure summaries), to this process's
    /// stdout otherwise.
    pub fn log(&self, line: impl AsRef<str>) {
        match &self.log {
            Some(sink) => sink.write(LogStream::Stdout, line.as_ref()),
            None => println!("{}", line.as_ref()),
        }
    }

    /// Writes a line to the service's standard error (see [`Wiring::log`]).
    pub fn log_error(&self, line: impl AsRef<str>) {
        match &self.log {
            Some(sink) => sink.write(LogStream::Stderr, line.as_ref()),
            None => eprintln!("{}", line.as_ref()),
        }
    }

    /// The service's standard output as an [`std::io::Write`]r, for code that writes to a
    /// writer rather than calling [`Wiring::log`]: a logger, `tracing_subscriber`'s
    /// `with_writer(move || wiring.stdout())`, a `writeln!`. An in-test service has no stdout
    /// of its own (`println!` goes to the test's), so this is how its output reaches the
    /// environment's log. Complete lines are sent as they are written; a last partial line on
    /// `flush` or drop.
    ///
    /// ```no_run
    /// # fn example(wiring: &rig::Wiring) -> std::io::Result<()> {
    /// use std::io::Write;
    /// let mut out = wiring.stdout();
    /// writeln!(out, "listening on {}", wiring.ingress().map_err(std::io::Error::other)?.host_port)?;
    /// # Ok(()) }
    /// ```
    pub fn stdout(&self) -> LogWriter {
        LogWriter::new(self.log.clone(), LogStream::Stdout)
    }

    /// The service's standard error as an [`std::io::Write`]r (see [`Wiring::stdout`]).
    pub fn stderr(&self) -> LogWriter {
        LogWriter::new(self.log.clone(), LogStream::Stderr)
    }
}

/// A service's stdout or stderr as a line-buffered writer ([`Wiring::stdout`],
/// [`Wiring::stderr`]).
pub struct LogWriter {
    sink: Option<LogSink>,
    stream: LogStream,
    pending: Vec<u8>,
}

impl LogWriter {
    fn new(sink: Option<LogSink>, stream: LogStream) -> LogWriter {
        LogWriter {
            sink,
            stream,
            pending: Vec::new(),
        }
    }

    fn emit(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        match (&self.sink, &self.stream) {
            (Some(sink), stream) => sink.write(stream.clone(), &text),
            (None, LogStream::Stderr) => eprintln!("{text}"),
            (None, _) => println!("{text}"),
        }
    }
}

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if let Some(last_newline) = self.pending.iter().rposition(|&b| b == b'\n') {
            let complete: Vec<u8> = self.pending.drain(..=last_newline).collect();
            for line in complete[..complete.len() - 1].split(|&b| b == b'\n') {
                self.emit(line);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.emit(&rest);
        }
        Ok(())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        let _ = std::io::Write::flush(self);
    }
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriter")
            .field("stream", &self.stream)
            .field("pending", &self.pending.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> Result<Wiring> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Wiring::from_vars(&move |k| map.get(k).cloned())
    }

    #[test]
    fn rig_wiring_wins_over_host_and_port() {
        let w = from(&[
            ("RIG_WIRING", r#"{"ingresses":{"default":{"hostport":"127.0.0.1:4000","protocol":"http"}},
                "egresses":{"db":{"hostport":"127.0.0.1:5432","protocol":"tcp","attributes":{"PGUSER":"postgres"}}},
                "temp_dir":"/t/api","env_dir":"/t"}"#),
            ("HOST", "0.0.0.0"),
            ("PORT", "1"),
            ("RIG_SERVICE", "api"),
        ])
        .unwrap();
        assert_eq!(w.service(), "api");
        assert_eq!(w.ingress().unwrap().host_port, "127.0.0.1:4000");
        assert_eq!(w.ingress().unwrap().protocol, Protocol::Http);
        let db = w.egress("db").unwrap();
        assert_eq!(db.attr::<String>("PGUSER").unwrap(), "postgres");
        assert_eq!(w.temp_dir(), Path::new("/t/api"));
        assert_eq!(w.env_dir(), Path::new("/t"));
    }

    #[test]
    fn host_and_port_give_a_default_ingress() {
        let w = from(&[("HOST", "127.0.0.1"), ("PORT", "8080")]).unwrap();
        assert_eq!(w.ingress().unwrap().host_port, "127.0.0.1:8080");
        let w = from(&[("HOST", "::1"), ("PORT", "8080")]).unwrap();
        assert_eq!(w.ingress().unwrap().port(), Some(8080));
    }

    #[test]
    fn missing_or_bad_variables_say_what_to_set() {
        let err = from(&[("HOST", "h")]).unwrap_err().to_string();
        assert_eq!(
            err,
            "no wiring: set RIG_WIRING (rigd does), or HOST and PORT"
        );
        let err = from(&[("HOST", "h"), ("PORT", "x")]).unwrap_err();
        assert_eq!(err.to_string(), "PORT=\"x\" is not a port number");
        let err = from(&[("RIG_WIRING", "{")]).unwrap_err().to_string();
        assert!(
            err.starts_with("RIG_WIRING is not valid wiring JSON"),
            "{err}"
        );
    }

    #[test]
    fn lookups_name_what_exists() {
        let w = Wiring::from_context(
            serde_json::from_str(
                r#"{"ingresses":{"api":{"hostport":"h:1","protocol":"http"},
                                 "admin":{"hostport":"h:2","protocol":"http"}}}"#,
            )
            .unwrap(),
            "svc".into(),
            None,
        );
        assert_eq!(
            w.ingress().unwrap_err().to_string(),
            "ingress \"default\" not found on service \"svc\" (ingresses: admin, api)"
        );
        assert_eq!(w.ingress_named("admin").unwrap().host_port, "h:2");
        assert_eq!(
            w.egress("db").unwrap_err().to_string(),
            "egress \"db\" not found in the wiring of \"svc\" (egresses: none); declare it with .egress()"
        );
        let single = Wiring::from_context(
            serde_json::from_str(r#"{"ingresses":{"api":{"hostport":"h:1","protocol":"http"}}}"#)
                .unwrap(),
            "svc".into(),
            None,
        );
        assert_eq!(single.ingress().unwrap().host_port, "h:1");
    }
}
