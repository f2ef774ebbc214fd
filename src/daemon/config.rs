//! rigd's command line, parsed in Go `flag` syntax so upstream's SDK can start our rigd:
//! `-x v`, `--x v`, `-x=v` and `--x=v` all work, and `--` ends the flags.
//!
//! | Flag | Default | Meaning |
//! |---|---|---|
//! | `--addr` | `127.0.0.1:0` | listen address; port 0 picks a free port |
//! | `--idle` | `5m` | shut down after this long with no environment and no request; `0` disables |
//! | `--rig-dir` | `$RIG_DIR`, else `$HOME/.rig`, else `<temp>/rig` | base directory |
//! | `--addr-file` | `{rig-dir}/rigd.addr` | where the listen address is written |
//! | `--default-ttl` | `10m` | lifetime of environments whose spec sets no `ttl` |
//! | `--orphan-grace` | `30s` | how long an environment outlives the client that owns it; `0` disables |
//! | `--log-retention` | `72h` | log files in `{rig-dir}/logs` older than this are pruned; `0` keeps all |
//! | `--stop-grace` | `5s` | time a stopping service gets between SIGINT and SIGKILL |
//! | `--stall-timeout` | `30s` | silence after which `progress.stall` explains a hung startup; `0` disables |
//! | `--event-memory` | `64` | MiB of service output and traffic events each environment keeps in memory; older ones go to a file in its directory |

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use rig_types::GoDuration;

use crate::logfiles::DEFAULT_RETENTION;

/// The usage text printed by `--help`.
pub const USAGE: &str = "\
Usage: rigd [flags]

rigd brings up test environments from JSON specs posted to its HTTP API.

Flags (Go syntax: -flag value, --flag value, -flag=value, --flag=value):
  --addr ADDR          listen address; port 0 picks a free port (default \"127.0.0.1:0\")
  --idle DURATION      shut down after this long with no environment and no API request;
                       0 disables (default \"5m\")
  --rig-dir DIR        base directory (default $RIG_DIR, else $HOME/.rig)
  --addr-file FILE     where the listen address is written (default {rig-dir}/rigd.addr)
  --default-ttl DURATION
                       lifetime of environments whose spec sets no ttl (default \"10m\")
  --orphan-grace DURATION
                       tear an environment down this long after the client that owns it
                       (a test using the SDK, rig up) disconnected without ending it;
                       0 disables (default \"30s\")
  --log-retention DURATION
                       log files in {rig-dir}/logs older than this are deleted when new ones
                       are written; 0 keeps them all (default \"72h\")
  --stop-grace DURATION
                       time a stopping service gets between SIGINT and SIGKILL (default \"5s\")
  --stall-timeout DURATION
                       report a startup that makes no progress for this long (progress.stall);
                       0 disables (default \"30s\")
  --event-memory MIB   MiB of service output and observed traffic each environment
                       keeps in memory; older events go to a file in the environment
                       directory and are read back from there (default 64)
  -h, --help           print this help

Durations are Go duration strings: 300ms, 30s, 5m, 1h30m.
";

/// Everything rigd needs to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Listen address (`host:port`).
    pub addr: String,
    /// Idle shutdown timeout; zero disables it.
    pub idle: Duration,
    /// Base directory: environment directories, caches, log files, the addr file.
    pub rig_dir: PathBuf,
    /// Where the listen address is written.
    pub addr_file: PathBuf,
    /// Lifetime of environments whose spec sets no `ttl`.
    pub default_ttl: Duration,
    /// How long an environment outlives its owner's disconnection; zero disables.
    pub orphan_grace: Duration,
    /// Log files older than this are pruned when new ones are written; zero keeps them all.
    pub log_retention: Duration,
    /// Time a stopping service gets between SIGINT and SIGKILL.
    pub stop_grace: Duration,
    /// Silence after which the watchdog reports a stall; zero disables it.
    pub stall_timeout: Duration,
    /// Bytes of output and traffic events each environment keeps in memory before spilling
    /// to disk.
    pub event_memory: usize,
    /// Keep every environment directory at teardown (`RIG_PRESERVE=true` in rigd's
    /// environment).
    pub preserve_all: bool,
    /// Make `rig_dir` the working directory at startup, so children inherit a stable cwd.
    /// Always true for the binary; in-process tests turn it off because the working
    /// directory belongs to the whole test process.
    pub change_dir: bool,
}

/// A command-line error, or a request for help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    /// `-h`, `-help` or `--help`: print [`USAGE`] and exit successfully.
    #[error("help requested")]
    HelpRequested,
    /// A flag this rigd does not know.
    #[error("flag provided but not defined: -{0} (run `rigd --help` for the list)")]
    Unknown(String),
    /// A flag given without its value.
    #[error("flag needs an argument: -{0}")]
    MissingValue(String),
    /// A value that does not parse.
    #[error("invalid value {value:?} for flag -{flag}: {reason}")]
    InvalidValue {
        /// The flag.
        flag: String,
        /// The value given.
        value: String,
        /// Why it is wrong.
        reason: String,
    },
    /// A positional argument (rigd takes none).
    #[error("unexpected argument {0:?}: rigd takes only flags (run `rigd --help`)")]
    UnexpectedArgument(String),
    /// An argument that is not valid UTF-8.
    #[error("argument {0:?} is not valid UTF-8")]
    NotUtf8(String),
}

/// Reads the process environment; a map in tests.
pub trait EnvSource {
    /// The value of `key`, `None` when unset or not UTF-8.
    fn var(&self, key: &str) -> Option<String>;
    /// The system temporary directory.
    fn temp_dir(&self) -> PathBuf;
}

/// The real process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }

    fn temp_dir(&self) -> PathBuf {
        std::env::temp_dir()
    }
}

impl Config {
    /// Parses rigd's arguments (without the program name), resolving defaults from the
    /// process environment.
    pub fn from_args<I, S>(args: I) -> Result<Config, FlagError>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Config::from_args_with_env(args, &ProcessEnv)
    }

    /// [`Config::from_args`] with an explicit environment.
    pub fn from_args_with_env<I, S>(args: I, env: &dyn EnvSource) -> Result<Config, FlagError>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let flags = Flags::parse(args)?;
        // Absolute, against the directory rigd was started in: rigd changes into the rig dir,
        // and every path it hands out (env dirs, log files) must mean the same to clients.
        let rig_dir = absolute(match flags.rig_dir {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => default_rig_dir(env),
        });
        let addr_file = match flags.addr_file {
            Some(file) if !file.is_empty() => absolute(PathBuf::from(file)),
            _ => rig_dir.join("rigd.addr"),
        };
        Ok(Config {
            addr: flags.addr.unwrap_or_else(|| "127.0.0.1:0".to_string()),
            idle: flags.idle.unwrap_or(Duration::from_secs(5 * 60)),
            rig_dir,
            addr_file,
            default_ttl: flags.default_ttl.unwrap_or(Duration::from_secs(10 * 60)),
            orphan_grace: flags
                .orphan_grace
                .unwrap_or(crate::server::DEFAULT_ORPHAN_GRACE),
            log_retention: flags.log_retention.unwrap_or(DEFAULT_RETENTION),
            stop_grace: flags.stop_grace.unwrap_or(Duration::from_secs(5)),
            stall_timeout: flags.stall_timeout.unwrap_or(Duration::from_secs(30)),
            event_memory: flags
                .event_memory
                .unwrap_or(crate::events::DEFAULT_EVENT_MEMORY),
            preserve_all: env.var("RIG_PRESERVE").as_deref() == Some("true"),
            change_dir: true,
        })
    }
}

/// `path` made absolute against the current directory (as given if that cannot be read).
fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

/// `$RIG_DIR`, else `$HOME/.rig`, else `<temp>/rig`.
pub fn default_rig_dir(env: &dyn EnvSource) -> PathBuf {
    if let Some(dir) = env.var("RIG_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(home) = env.var("HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(home).join(".rig");
    }
    env.temp_dir().join("rig")
}

/// The flags as given, before defaults.
#[derive(Default)]
struct Flags {
    addr: Option<String>,
    idle: Option<Duration>,
    rig_dir: Option<String>,
    addr_file: Option<String>,
    default_ttl: Option<Duration>,
    orphan_grace: Option<Duration>,
    log_retention: Option<Duration>,
    stop_grace: Option<Duration>,
    stall_timeout: Option<Duration>,
    event_memory: Option<usize>,
}

/// The flags rigd knows.
#[derive(Clone, Copy)]
enum Flag {
    Addr,
    Idle,
    RigDir,
    AddrFile,
    DefaultTtl,
    OrphanGrace,
    LogRetention,
    StopGrace,
    StallTimeout,
    EventMemory,
}

impl Flag {
    fn from_name(name: &str) -> Option<Flag> {
        Some(match name {
            "addr" => Flag::Addr,
            "idle" => Flag::Idle,
            "rig-dir" => Flag::RigDir,
            "addr-file" => Flag::AddrFile,
            "default-ttl" => Flag::DefaultTtl,
            "orphan-grace" => Flag::OrphanGrace,
            "log-retention" => Flag::LogRetention,
            "stop-grace" => Flag::StopGrace,
            "stall-timeout" => Flag::StallTimeout,
            "event-memory" => Flag::EventMemory,
            _ => return None,
        })
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flag::Addr => "addr",
            Flag::Idle => "idle",
            Flag::RigDir => "rig-dir",
            Flag::AddrFile => "addr-file",
            Flag::DefaultTtl => "default-ttl",
            Flag::OrphanGrace => "orphan-grace",
            Flag::LogRetention => "log-retention",
            Flag::StopGrace => "stop-grace",
            Flag::StallTimeout => "stall-timeout",
            Flag::EventMemory => "event-memory",
        })
    }
}

impl Flags {
    fn parse<I, S>(args: I) -> Result<Flags, FlagError>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let args = args
            .into_iter()
            .map(|a| {
                let a: OsString = a.into();
                a.into_string()
                    .map_err(|bad| FlagError::NotUtf8(bad.to_string_lossy().into_owned()))
            })
            .collect::<Result<Vec<String>, FlagError>>()?;
        let mut flags = Flags::default();
        let mut rest = args.into_iter();
        while let Some(arg) = rest.next() {
            if arg == "--" {
                if let Some(extra) = rest.next() {
                    return Err(FlagError::UnexpectedArgument(extra));
                }
                break;
            }
            let Some(body) = arg
                .strip_prefix("--")
                .or_else(|| arg.strip_prefix('-'))
                .filter(|b| !b.is_empty() && !b.starts_with('-') && !b.starts_with('='))
            else {
                return Err(FlagError::UnexpectedArgument(arg));
            };
            let (name, inline) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None => (body, None),
            };
            if name == "h" || name == "help" {
                return Err(FlagError::HelpRequested);
            }
            let flag = Flag::from_name(name).ok_or_else(|| FlagError::Unknown(name.to_string()))?;
            let value = match inline {
                Some(v) => v,
                None => rest
                    .next()
                    .ok_or_else(|| FlagError::MissingValue(flag.to_string()))?,
            };
            flags.set(flag, value)?;
        }
        Ok(flags)
    }

    fn set(&mut self, flag: Flag, value: String) -> Result<(), FlagError> {
        match flag {
            Flag::Addr => self.addr = Some(value),
            Flag::RigDir => self.rig_dir = Some(value),
            Flag::AddrFile => self.addr_file = Some(value),
            Flag::Idle => self.idle = Some(parse_duration(flag, &value, true)?),
            Flag::DefaultTtl => self.default_ttl = Some(parse_duration(flag, &value, false)?),
            Flag::OrphanGrace => self.orphan_grace = Some(parse_duration(flag, &value, true)?),
            Flag::LogRetention => self.log_retention = Some(parse_duration(flag, &value, true)?),
            Flag::StopGrace => self.stop_grace = Some(parse_duration(flag, &value, true)?),
            Flag::StallTimeout => self.stall_timeout = Some(parse_duration(flag, &value, true)?),
            Flag::EventMemory => self.event_memory = Some(parse_mebibytes(flag, &value)?),
        }
        Ok(())
    }
}

/// Parses a whole number of mebibytes into bytes.
fn parse_mebibytes(flag: Flag, value: &str) -> Result<usize, FlagError> {
    value
        .parse::<usize>()
        .ok()
        .and_then(|mib| mib.checked_mul(1 << 20))
        .ok_or_else(|| FlagError::InvalidValue {
            flag: flag.to_string(),
            value: value.to_string(),
            reason: "must be a whole number of MiB, e.g. 64".to_string(),
        })
}

/// Parses a Go duration; negative values are rejected, and zero unless `zero_ok`.
fn parse_duration(flag: Flag, value: &str, zero_ok: bool) -> Result<Duration, FlagError> {
    let invalid = |reason: String| FlagError::InvalidValue {
        flag: flag.to_string(),
        value: value.to_string(),
        reason,
    };
    let d = GoDuration::parse(value).map_err(|e| invalid(e.to_string()))?;
    let std = d
        .to_std()
        .ok_or_else(|| invalid("must not be negative".to_string()))?;
    if std.is_zero() && !zero_ok {
        return Err(invalid("must be greater than zero".to_string()));
    }
    Ok(std)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct MapEnv(HashMap<&'static str, &'static str>);

    impl EnvSource for MapEnv {
        fn var(&self, key: &str) -> Option<String> {
            self.0.get(key).map(|v| v.to_string())
        }
        fn temp_dir(&self) -> PathBuf {
            PathBuf::from("/tmpdir")
        }
    }

    fn env(pairs: &[(&'static str, &'static str)]) -> MapEnv {
        MapEnv(pairs.iter().copied().collect())
    }

    fn parse(args: &[&str]) -> Result<Config, FlagError> {
        Config::from_args_with_env(args.iter().copied(), &env(&[("HOME", "/home/u")]))
    }

    #[test]
    fn defaults() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.addr, "127.0.0.1:0");
        assert_eq!(c.idle, Duration::from_secs(300));
        assert_eq!(c.rig_dir, PathBuf::from("/home/u/.rig"));
        assert_eq!(c.addr_file, PathBuf::from("/home/u/.rig/rigd.addr"));
        assert_eq!(c.default_ttl, Duration::from_secs(600));
        assert_eq!(c.orphan_grace, Duration::from_secs(30));
        assert_eq!(c.log_retention, Duration::from_secs(72 * 3600));
        assert!(!c.preserve_all);
        assert!(c.change_dir);
    }

    #[test]
    fn all_four_go_flag_syntaxes() {
        for args in [
            &["-addr", "127.0.0.1:7000"][..],
            &["--addr", "127.0.0.1:7000"],
            &["-addr=127.0.0.1:7000"],
            &["--addr=127.0.0.1:7000"],
        ] {
            assert_eq!(parse(args).unwrap().addr, "127.0.0.1:7000", "{args:?}");
        }
    }

    #[test]
    fn every_flag_is_read() {
        let c = parse(&[
            "--idle",
            "2s",
            "-rig-dir=/r",
            "--addr-file",
            "/a/f.addr",
            "-default-ttl",
            "1m30s",
            "--orphan-grace=0",
        ])
        .unwrap();
        assert_eq!(c.orphan_grace, Duration::ZERO);
        assert_eq!(c.idle, Duration::from_secs(2));
        assert_eq!(c.rig_dir, PathBuf::from("/r"));
        assert_eq!(c.addr_file, PathBuf::from("/a/f.addr"));
        assert_eq!(c.default_ttl, Duration::from_secs(90));
        // The addr file follows --rig-dir when not given.
        assert_eq!(
            parse(&["--rig-dir", "/r"]).unwrap().addr_file,
            PathBuf::from("/r/rigd.addr")
        );
    }

    #[test]
    fn stop_grace_and_stall_timeout_flags() {
        let c = parse(&[]).unwrap();
        assert_eq!(
            (c.stop_grace, c.stall_timeout),
            (Duration::from_secs(5), Duration::from_secs(30))
        );
        let c = parse(&["--stop-grace", "250ms", "-stall-timeout=0"]).unwrap();
        assert_eq!(
            (c.stop_grace, c.stall_timeout),
            (Duration::from_millis(250), Duration::ZERO)
        );
        assert!(parse(&["--stall-timeout", "-1s"]).is_err());
        assert!(
            USAGE.contains("--stop-grace DURATION") && USAGE.contains("--stall-timeout DURATION")
        );
    }

    #[test]
    fn event_memory_flag_is_in_mebibytes() {
        assert_eq!(parse(&[]).unwrap().event_memory, 64 << 20);
        assert_eq!(
            parse(&["--event-memory", "8"]).unwrap().event_memory,
            8 << 20
        );
        assert_eq!(parse(&["-event-memory=0"]).unwrap().event_memory, 0);
        for bad in ["-1", "1.5", "64MiB", ""] {
            let error = parse(&["--event-memory", bad]).unwrap_err();
            assert!(
                error.to_string().contains("whole number of MiB"),
                "{bad:?}: {error}"
            );
        }
        assert!(USAGE.contains("--event-memory MIB"));
    }

    #[test]
    fn log_retention_flag() {
        assert_eq!(
            parse(&["--log-retention", "24h"]).unwrap().log_retention,
            Duration::from_secs(24 * 3600)
        );
        assert_eq!(
            parse(&["-log-retention=90m"]).unwrap().log_retention,
            Duration::from_secs(90 * 60)
        );
        // Zero keeps every log file.
        assert_eq!(
            parse(&["--log-retention", "0"]).unwrap().log_retention,
            Duration::ZERO
        );
        for bad in ["7d", "-1h", "soon"] {
            let err = parse(&["--log-retention", bad]).unwrap_err();
            assert!(
                matches!(&err, FlagError::InvalidValue { flag, .. } if flag == "log-retention"),
                "{bad}: {err:?}"
            );
        }
        assert!(USAGE.contains("--log-retention DURATION"));
    }

    #[test]
    fn idle_zero_disables_and_values_may_contain_equals() {
        assert_eq!(parse(&["--idle", "0"]).unwrap().idle, Duration::ZERO);
        assert_eq!(
            parse(&["--rig-dir=/a=b"]).unwrap().rig_dir,
            PathBuf::from("/a=b")
        );
    }

    #[test]
    fn bad_duration_is_an_error_naming_flag_and_value() {
        let err = parse(&["--idle", "5 minutes"]).unwrap_err();
        assert!(
            matches!(&err, FlagError::InvalidValue { flag, value, .. } if flag == "idle" && value == "5 minutes"),
            "{err:?}"
        );
        assert!(err
            .to_string()
            .starts_with(r#"invalid value "5 minutes" for flag -idle: "#));
        assert!(matches!(
            parse(&["--idle=-1s"]).unwrap_err(),
            FlagError::InvalidValue { .. }
        ));
        assert!(matches!(
            parse(&["--default-ttl", "0"]).unwrap_err(),
            FlagError::InvalidValue { .. }
        ));
        assert!(matches!(
            parse(&["--idle", "1d"]).unwrap_err(),
            FlagError::InvalidValue { .. }
        ));
    }

    #[test]
    fn unknown_flag_missing_value_and_positional_args_are_errors() {
        assert_eq!(
            parse(&["--port", "80"]).unwrap_err(),
            FlagError::Unknown("port".into())
        );
        assert_eq!(
            parse(&["--port", "80"]).unwrap_err().to_string(),
            "flag provided but not defined: -port (run `rigd --help` for the list)"
        );
        assert_eq!(
            parse(&["--addr"]).unwrap_err(),
            FlagError::MissingValue("addr".into())
        );
        assert_eq!(
            parse(&["serve"]).unwrap_err(),
            FlagError::UnexpectedArgument("serve".into())
        );
        assert_eq!(
            parse(&["---addr", "x"]).unwrap_err(),
            FlagError::UnexpectedArgument("---addr".into())
        );
        assert_eq!(
            parse(&["-", "x"]).unwrap_err(),
            FlagError::UnexpectedArgument("-".into())
        );
        assert_eq!(parse(&["--"]).unwrap().addr, "127.0.0.1:0");
        assert_eq!(
            parse(&["--", "x"]).unwrap_err(),
            FlagError::UnexpectedArgument("x".into())
        );
    }

    #[test]
    fn help() {
        for h in ["-h", "--help", "-help", "--h"] {
            assert_eq!(parse(&[h]).unwrap_err(), FlagError::HelpRequested);
        }
    }

    #[test]
    fn relative_paths_are_made_absolute_against_the_starting_directory() {
        let cwd = std::env::current_dir().unwrap();
        let c = parse(&["--rig-dir", ".rig"]).unwrap();
        assert_eq!(c.rig_dir, cwd.join(".rig"));
        assert_eq!(c.addr_file, cwd.join(".rig").join("rigd.addr"));
        let c = parse(&["--rig-dir", ".rig", "--addr-file", "a/rigd.addr"]).unwrap();
        assert_eq!(c.addr_file, cwd.join("a/rigd.addr"));
    }

    #[test]
    fn rig_dir_defaults_follow_the_environment() {
        let c = Config::from_args_with_env(
            std::iter::empty::<&str>(),
            &env(&[
                ("RIG_DIR", "/custom"),
                ("HOME", "/home/u"),
                ("RIG_PRESERVE", "true"),
            ]),
        )
        .unwrap();
        assert_eq!(c.rig_dir, PathBuf::from("/custom"));
        assert!(c.preserve_all);
        let c = Config::from_args_with_env(std::iter::empty::<&str>(), &env(&[])).unwrap();
        assert_eq!(c.rig_dir, PathBuf::from("/tmpdir/rig"));
        assert_eq!(c.addr_file, PathBuf::from("/tmpdir/rig/rigd.addr"));
    }
}
