//! Command-line parsing for `proxy-bench` and its server subcommands.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// What `proxy-bench --help` prints.
pub const USAGE: &str = "\
proxy-bench: compares rig's observing proxy with direct connections, haproxy, nginx and pingora

USAGE:
    proxy-bench [run] [OPTIONS]          run the benchmark (the default)
    proxy-bench grpc [GRPC OPTIONS]       gRPC unary calls/s, direct vs rig (grpc mode)
    proxy-bench serve-origin [--threads N]
    proxy-bench serve-grpc-origin [--threads N]
    proxy-bench serve-rig-proxy [--http TARGET] [--tcp TARGET] [--grpc TARGET] [--sink count|json] [--threads N]
    proxy-bench serve-pingora --target TARGET [--listen ADDR] [--threads N]
    proxy-bench serve-splice-relay --http TARGET --tcp TARGET
    proxy-bench kafka [KAFKA OPTIONS]    Kafka produce throughput, rig's Kafka proxy vs direct

RUN OPTIONS:
    --quick                 short run (about 3 minutes): 1.5 s per measurement
    --duration SECS         measured time per scenario and path        [default: 8]
    --warmup SECS           unmeasured time before each measurement    [default: 1]
    --rounds N              measurements per scenario and path, the paths taking turns;
                            each path's median round is reported       [default: 3]
    --connections N         HTTP/1.1 connections (and h2c streams)     [default: 64]
    --h2c-connections N     h2c connections carrying those streams     [default: 4]
    --tcp-streams N         parallel TCP bulk streams                  [default: 2]
    --idle N                idle connections for the RSS measurement   [default: 1000]
    --threads N             worker threads of the client, the origin and each proxy
                            (haproxy nbthread, nginx worker_processes) [default: CPU count]
    --paths LIST            comma-separated subset of
                            direct,rig,rig+json,splice,haproxy,nginx,
                            pingora                                    [default: all]
    --scenarios LIST        comma-separated subset of idle_http,idle_tcp,
                            http1_small,http1_64k,h2c_small,tcp_bulk   [default: all]
    --json PATH             where to write the results as JSON  [default: target/proxy-bench.json]

GRPC OPTIONS:
    --quick                 short run: 3 rounds of 1.5 s
    --duration SECS         measured time per round and path           [default: 5]
    --warmup SECS           unmeasured time before each measurement    [default: 1]
    --rounds N              alternating direct/rig rounds              [default: 5]
    --concurrency N         unary calls in flight                      [default: 64]
    --connections N         HTTP/2 connections carrying them           [default: 4]
    --sink count|json       what rig's sink does with each event       [default: count]
    --threads N             worker threads of client, origin and proxy [default: CPU count]
    --json PATH             where to write the results  [default: target/proxy-bench-grpc.json]

KAFKA OPTIONS (a librdkafka mock cluster in-process; rounds alternate direct and rig):
    --messages N            messages per round                         [default: 200000]
    --size BYTES            message payload size                       [default: 256]
    --brokers N             mock cluster brokers                       [default: 3]
    --rounds N              measured rounds per path                   [default: 5]
    --only direct|rig       measure one path only (e.g. under callgrind) [default: both]
    --threads N             worker threads of rig's proxy              [default: CPU count]
    --json PATH             where to write the results   [default: target/proxy-bench-kafka.json]

The server subcommands print `listening NAME=ADDR ...` on stdout once they accept connections
and stop when their standard input is closed (or on SIGTERM).
";

/// One invocation of the binary.
#[derive(Debug)]
pub enum Command {
    /// Run the benchmark.
    Run(RunOptions),
    /// Run the origin servers (HTTP/1.1 + h2c, TCP sink/echo).
    ServeOrigin {
        /// Worker threads.
        threads: usize,
    },
    /// Run rig's proxy standalone.
    ServeRigProxy(RigProxyOptions),
    /// Run the gRPC benchmark.
    Grpc(GrpcOptions),
    /// Run the gRPC origin (the tonic echo server with reflection).
    ServeGrpcOrigin {
        /// Worker threads.
        threads: usize,
    },
    /// Run the minimal pingora reverse proxy (built with `--features pingora`).
    ServePingora(PingoraOptions),
    /// Run the bare splice relay: what relaying alone costs.
    ServeSpliceRelay(SpliceRelayOptions),
    /// Measure Kafka produce throughput through rig's Kafka proxy vs direct.
    Kafka(KafkaOptions),
    /// Print the usage.
    Help,
}

/// Which paths `kafka` measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KafkaPaths {
    /// Direct and through rig, alternating.
    Both,
    /// Only direct to the mock cluster.
    Direct,
    /// Only through rig's Kafka proxy.
    Rig,
}

/// Options of `kafka`.
#[derive(Clone, Debug)]
pub struct KafkaOptions {
    /// Messages per round.
    pub messages: usize,
    /// Payload bytes per message.
    pub size: usize,
    /// Brokers in the mock cluster.
    pub brokers: i32,
    /// Measured rounds per path.
    pub rounds: usize,
    /// Which paths are measured.
    pub paths: KafkaPaths,
    /// Worker threads of the proxy's runtime.
    pub threads: usize,
    /// Where the JSON report goes.
    pub json: PathBuf,
}

/// Options of a benchmark run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Measured time per scenario and path.
    pub duration: Duration,
    /// Unmeasured time before each measurement.
    pub warmup: Duration,
    /// Measurements per scenario and path (the paths take turns); the median is reported.
    pub rounds: usize,
    /// HTTP/1.1 keep-alive connections, and concurrent h2c streams.
    pub connections: usize,
    /// h2c connections over which the streams are spread.
    pub h2c_connections: usize,
    /// Parallel TCP bulk streams.
    pub tcp_streams: usize,
    /// Idle connections opened for the RSS measurement.
    pub idle: usize,
    /// Worker threads of the client, the origin and each proxy.
    pub threads: usize,
    /// The paths to measure (`None`: all).
    pub paths: Option<Vec<String>>,
    /// The scenarios to measure (`None`: all).
    pub scenarios: Option<Vec<String>>,
    /// Where the JSON report goes.
    pub json: PathBuf,
    /// Whether `--quick` was given (recorded in the report).
    pub quick: bool,
}

/// How rig's proxy hands events to its sink in `serve-rig-proxy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkKind {
    /// Count events only.
    Count,
    /// Serialise every event to JSON, as rigd's log file would.
    Json,
}

impl SinkKind {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            SinkKind::Count => "count",
            SinkKind::Json => "json",
        }
    }
}

/// Options of `serve-rig-proxy`.
#[derive(Clone, Debug)]
pub struct RigProxyOptions {
    /// Target of an HTTP-mode proxy, if one is wanted.
    pub http: Option<String>,
    /// Target of a TCP-mode proxy, if one is wanted.
    pub tcp: Option<String>,
    /// Target of a gRPC-mode proxy, if one is wanted.
    pub grpc: Option<String>,
    /// What the sink does with each event.
    pub sink: SinkKind,
    /// Worker threads.
    pub threads: usize,
}

/// Options of `serve-pingora`.
#[derive(Clone, Debug)]
#[cfg_attr(not(feature = "pingora"), allow(dead_code))]
pub struct PingoraOptions {
    /// The origin (`host:port`).
    pub target: String,
    /// Listen address (HTTP/1.1 and h2c with prior knowledge).
    pub listen: SocketAddr,
    /// Worker threads.
    pub threads: usize,
}

/// Options of `serve-splice-relay`.
#[derive(Clone, Copy, Debug)]
pub struct SpliceRelayOptions {
    /// Where HTTP connections (HTTP/1.1 and h2c) are relayed to.
    pub http: SocketAddr,
    /// Where TCP connections are relayed to.
    pub tcp: SocketAddr,
}

/// The machine's CPU count, the default for every `--threads`.
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl RunOptions {
    fn defaults() -> RunOptions {
        RunOptions {
            duration: Duration::from_secs(8),
            warmup: Duration::from_secs(1),
            rounds: 3,
            connections: 64,
            h2c_connections: 4,
            tcp_streams: 2,
            idle: 1000,
            threads: cpu_count(),
            paths: None,
            scenarios: None,
            json: PathBuf::from("target/proxy-bench.json"),
            quick: false,
        }
    }
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command> {
    let (subcommand, rest) = match args.first().map(String::as_str) {
        Some(name) if !name.starts_with('-') => (name, &args[1..]),
        _ => ("run", args),
    };
    if rest.iter().any(|a| a == "--help" || a == "-h") {
        return Ok(Command::Help);
    }
    let mut flags = Flags::new(rest);
    let command = match subcommand {
        "run" => Command::Run(parse_run(&mut flags)?),
        "serve-origin" => {
            let mut threads = cpu_count();
            while let Some(flag) = flags.next_flag()? {
                match flag {
                    "--threads" => threads = flags.count(flag)?,
                    _ => bail!("serve-origin has no option {flag}; see --help"),
                }
            }
            Command::ServeOrigin { threads }
        }
        "serve-rig-proxy" => Command::ServeRigProxy(parse_rig_proxy(&mut flags)?),
        "grpc" => Command::Grpc(parse_grpc(&mut flags)?),
        "serve-grpc-origin" => {
            let mut threads = cpu_count();
            while let Some(flag) = flags.next_flag()? {
                match flag {
                    "--threads" => threads = flags.count(flag)?,
                    _ => bail!("serve-grpc-origin has no option {flag}; see --help"),
                }
            }
            Command::ServeGrpcOrigin { threads }
        }
        "serve-pingora" => Command::ServePingora(parse_pingora(&mut flags)?),
        "serve-splice-relay" => Command::ServeSpliceRelay(parse_splice_relay(&mut flags)?),
        "kafka" => Command::Kafka(parse_kafka(&mut flags)?),
        "help" => Command::Help,
        other => bail!(
            "unknown subcommand {other:?}: expected run, grpc, kafka, serve-origin, serve-grpc-origin, serve-rig-proxy, serve-pingora or serve-splice-relay"
        ),
    };
    Ok(command)
}

fn parse_run(flags: &mut Flags<'_>) -> Result<RunOptions> {
    let mut options = RunOptions::defaults();
    let mut duration = None;
    let mut warmup = None;
    while let Some(flag) = flags.next_flag()? {
        match flag {
            "--quick" => options.quick = true,
            "--duration" => duration = Some(flags.seconds(flag)?),
            "--warmup" => warmup = Some(flags.seconds(flag)?),
            "--rounds" => options.rounds = flags.count(flag)?,
            "--connections" => options.connections = flags.count(flag)?,
            "--h2c-connections" => options.h2c_connections = flags.count(flag)?,
            "--tcp-streams" => options.tcp_streams = flags.count(flag)?,
            "--idle" => options.idle = flags.count(flag)?,
            "--threads" => options.threads = flags.count(flag)?,
            "--json" => options.json = PathBuf::from(flags.value(flag)?),
            "--paths" => {
                options.paths = Some(names_from(
                    flag,
                    flags.value(flag)?,
                    crate::bench::PATH_NAMES,
                )?)
            }
            "--scenarios" => {
                options.scenarios = Some(names_from(
                    flag,
                    flags.value(flag)?,
                    crate::bench::SCENARIO_NAMES,
                )?)
            }
            _ => bail!("run has no option {flag}; see --help"),
        }
    }
    if options.quick {
        options.duration = Duration::from_millis(1500);
        options.warmup = Duration::from_millis(300);
    }
    options.duration = duration.unwrap_or(options.duration);
    options.warmup = warmup.unwrap_or(options.warmup);
    if options.duration.is_zero() {
        bail!("--duration must be more than 0 seconds");
    }
    options.h2c_connections = options.h2c_connections.min(options.connections);
    Ok(options)
}

/// A comma-separated list of names, each one of `known`.
fn names_from(flag: &str, list: &str, known: &[&str]) -> Result<Vec<String>> {
    let names: Vec<String> = list.split(',').map(|s| s.trim().to_string()).collect();
    for name in &names {
        if !known.contains(&name.as_str()) {
            bail!(
                "{flag}: unknown name {name:?}; choose from {}",
                known.join(",")
            );
        }
    }
    Ok(names)
}

fn parse_kafka(flags: &mut Flags<'_>) -> Result<KafkaOptions> {
    let mut options = KafkaOptions {
        messages: 200_000,
        size: 256,
        brokers: 3,
        rounds: 5,
        paths: KafkaPaths::Both,
        threads: cpu_count(),
        json: PathBuf::from("target/proxy-bench-kafka.json"),
    };
    while let Some(flag) = flags.next_flag()? {
        match flag {
            "--messages" => options.messages = flags.count(flag)?,
            "--size" => options.size = flags.count(flag)?,
            "--brokers" => {
                options.brokers =
                    i32::try_from(flags.count(flag)?).context("--brokers: too many brokers")?
            }
            "--rounds" => options.rounds = flags.count(flag)?,
            "--only" => {
                options.paths = match flags.value(flag)? {
                    "direct" => KafkaPaths::Direct,
                    "rig" => KafkaPaths::Rig,
                    other => bail!("--only {other:?}: expected direct or rig"),
                }
            }
            "--threads" => options.threads = flags.count(flag)?,
            "--json" => options.json = PathBuf::from(flags.value(flag)?),
            _ => bail!("kafka has no option {flag}; see --help"),
        }
    }
    if options.messages == 0 || options.rounds == 0 || options.brokers == 0 {
        bail!("kafka: --messages, --rounds and --brokers must be at least 1");
    }
    Ok(options)
}

fn parse_rig_proxy(flags: &mut Flags<'_>) -> Result<RigProxyOptions> {
    let mut options = RigProxyOptions {
        http: None,
        tcp: None,
        grpc: None,
        sink: SinkKind::Count,
        threads: cpu_count(),
    };
    while let Some(flag) = flags.next_flag()? {
        match flag {
            "--http" => options.http = Some(flags.value(flag)?.to_string()),
            "--tcp" => options.tcp = Some(flags.value(flag)?.to_string()),
            "--grpc" => options.grpc = Some(flags.value(flag)?.to_string()),
            "--sink" => {
                options.sink = match flags.value(flag)? {
                    "count" => SinkKind::Count,
                    "json" => SinkKind::Json,
                    other => bail!("--sink {other:?}: expected count or json"),
                }
            }
            "--threads" => options.threads = flags.count(flag)?,
            _ => bail!("serve-rig-proxy has no option {flag}; see --help"),
        }
    }
    if options.http.is_none() && options.tcp.is_none() && options.grpc.is_none() {
        bail!("serve-rig-proxy needs at least one of --http TARGET, --tcp TARGET, --grpc TARGET");
    }
    Ok(options)
}

/// Options of `grpc`.
#[derive(Clone, Debug)]
pub struct GrpcOptions {
    /// Measured time per round and path.
    pub duration: Duration,
    /// Unmeasured time before each measurement.
    pub warmup: Duration,
    /// Alternating direct/rig rounds.
    pub rounds: usize,
    /// Unary calls in flight.
    pub concurrency: usize,
    /// HTTP/2 connections carrying them.
    pub connections: usize,
    /// What rig's sink does with each event.
    pub sink: SinkKind,
    /// Worker threads of the client, the origin and the proxy.
    pub threads: usize,
    /// Where the JSON report goes.
    pub json: PathBuf,
}

fn parse_grpc(flags: &mut Flags<'_>) -> Result<GrpcOptions> {
    let mut options = GrpcOptions {
        duration: Duration::from_secs(5),
        warmup: Duration::from_secs(1),
        rounds: 5,
        concurrency: 64,
        connections: 4,
        sink: SinkKind::Count,
        threads: cpu_count(),
        json: PathBuf::from("target/proxy-bench-grpc.json"),
    };
    let (mut duration, mut warmup, mut rounds, mut quick) = (None, None, None, false);
    while let Some(flag) = flags.next_flag()? {
        match flag {
            "--quick" => quick = true,
            "--duration" => duration = Some(flags.seconds(flag)?),
            "--warmup" => warmup = Some(flags.seconds(flag)?),
            "--rounds" => rounds = Some(flags.count(flag)?),
            "--concurrency" => options.concurrency = flags.count(flag)?,
            "--connections" => options.connections = flags.count(flag)?,
            "--threads" => options.threads = flags.count(flag)?,
            "--json" => options.json = PathBuf::from(flags.value(flag)?),
            "--sink" => {
                options.sink = match flags.value(flag)? {
                    "count" => SinkKind::Count,
                    "json" => SinkKind::Json,
                    other => bail!("--sink {other:?}: expected count or json"),
                }
            }
            _ => bail!("grpc has no option {flag}; see --help"),
        }
    }
    if quick {
        options.duration = Duration::from_millis(1500);
        options.warmup = Duration::from_millis(300);
        options.rounds = 3;
    }
    options.duration = duration.unwrap_or(options.duration);
    options.warmup = warmup.unwrap_or(options.warmup);
    options.rounds = rounds.unwrap_or(options.rounds).max(1);
    if options.duration.is_zero() {
        bail!("--duration must be more than 0 seconds");
    }
    Ok(options)
}

fn parse_pingora(flags: &mut Flags<'_>) -> Result<PingoraOptions> {
    let mut target = None;
    let mut listen = None;
    let mut threads = cpu_count();
    while let Some(flag) = flags.next_flag()? {
        match flag {
            "--target" => target = Some(flags.value(flag)?.to_string()),
            "--listen" => listen = Some(flags.addr(flag)?),
            "--threads" => threads = flags.count(flag)?,
            _ => bail!("serve-pingora has no option {flag}; see --help"),
        }
    }
    Ok(PingoraOptions {
        target: target.context("serve-pingora needs --target HOST:PORT")?,
        listen: listen.context("serve-pingora needs --listen ADDR")?,
        threads,
    })
}

fn parse_splice_relay(flags: &mut Flags<'_>) -> Result<SpliceRelayOptions> {
    let (mut http, mut tcp) = (None, None);
    while let Some(flag) = flags.next_flag()? {
        match flag {
            "--http" => http = Some(flags.addr(flag)?),
            "--tcp" => tcp = Some(flags.addr(flag)?),
            _ => bail!("serve-splice-relay has no option {flag}; see --help"),
        }
    }
    Ok(SpliceRelayOptions {
        http: http.context("serve-splice-relay needs --http IP:PORT")?,
        tcp: tcp.context("serve-splice-relay needs --tcp IP:PORT")?,
    })
}

/// A cursor over `--flag value` pairs.
struct Flags<'a> {
    args: &'a [String],
    next: usize,
}

impl<'a> Flags<'a> {
    fn new(args: &'a [String]) -> Flags<'a> {
        Flags { args, next: 0 }
    }

    fn next_flag(&mut self) -> Result<Option<&'a str>> {
        let Some(arg) = self.args.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        if !arg.starts_with("--") {
            bail!("unexpected argument {arg:?}: options start with --; see --help");
        }
        Ok(Some(arg.as_str()))
    }

    fn value(&mut self, flag: &str) -> Result<&'a str> {
        let value = self
            .args
            .get(self.next)
            .with_context(|| format!("{flag} needs a value"))?;
        self.next += 1;
        Ok(value)
    }

    fn count(&mut self, flag: &str) -> Result<usize> {
        let value = self.value(flag)?;
        match value.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => bail!("{flag} {value:?}: expected a whole number above 0"),
        }
    }

    fn seconds(&mut self, flag: &str) -> Result<Duration> {
        let value = self.value(flag)?;
        let secs: f64 = value
            .trim_end_matches('s')
            .parse()
            .with_context(|| format!("{flag} {value:?}: expected seconds, e.g. 8 or 1.5"))?;
        if !(0.0..=3600.0).contains(&secs) {
            bail!("{flag} {value:?}: expected between 0 and 3600 seconds");
        }
        Ok(Duration::from_secs_f64(secs))
    }

    fn addr(&mut self, flag: &str) -> Result<SocketAddr> {
        let value = self.value(flag)?;
        value
            .parse()
            .with_context(|| format!("{flag} {value:?}: expected IP:PORT, e.g. 127.0.0.1:8080"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn no_subcommand_means_run_with_defaults() {
        let Command::Run(options) = parse(&args(&[])).unwrap() else {
            panic!("expected run");
        };
        assert_eq!(options.duration, Duration::from_secs(8));
        assert_eq!(options.connections, 64);
        assert!(options.paths.is_none());
        assert!(options.scenarios.is_none());
        let Command::Run(options) = parse(&args(&["--scenarios", "tcp_bulk,idle_tcp"])).unwrap()
        else {
            panic!("expected run");
        };
        assert_eq!(options.scenarios.unwrap(), ["tcp_bulk", "idle_tcp"]);
    }

    #[test]
    fn the_splice_relay_needs_both_targets() {
        let parsed = parse(&args(&[
            "serve-splice-relay",
            "--http",
            "127.0.0.1:1",
            "--tcp",
            "127.0.0.1:2",
        ]));
        let Ok(Command::ServeSpliceRelay(options)) = parsed else {
            panic!("expected serve-splice-relay: {parsed:?}");
        };
        assert_eq!(options.tcp.port(), 2);
        let error = parse(&args(&["serve-splice-relay", "--http", "127.0.0.1:1"])).unwrap_err();
        assert!(error.to_string().contains("--tcp IP:PORT"), "{error}");
    }

    #[test]
    fn quick_shortens_but_explicit_durations_win() {
        let Command::Run(options) = parse(&args(&["--quick", "--duration", "3"])).unwrap() else {
            panic!("expected run");
        };
        assert_eq!(options.duration, Duration::from_secs(3));
        assert_eq!(options.warmup, Duration::from_millis(300));
        assert_eq!(options.rounds, 3, "rounds by default");
        let Command::Run(options) = parse(&args(&["--rounds", "5"])).unwrap() else {
            panic!("expected run");
        };
        assert_eq!(options.rounds, 5);
    }

    #[test]
    fn bad_input_is_an_error_that_says_what_to_fix() {
        let error = parse(&args(&["run", "--connections", "0"])).unwrap_err();
        assert!(error.to_string().contains("above 0"), "{error}");
        let error = parse(&args(&["run", "--paths", "direct,envoy"])).unwrap_err();
        assert!(error.to_string().contains("envoy"), "{error}");
        let error = parse(&args(&["run", "--scenarios", "tcp_bulk,udp"])).unwrap_err();
        assert!(error.to_string().contains("\"udp\""), "{error}");
        assert!(error.to_string().contains("http1_64k"), "{error}");
        let error = parse(&args(&["serve-rig-proxy"])).unwrap_err();
        assert!(error.to_string().contains("--http"), "{error}");
        assert!(parse(&args(&["run", "--duration"])).is_err());
    }

    #[test]
    fn rig_proxy_options() {
        let Command::ServeRigProxy(options) = parse(&args(&[
            "serve-rig-proxy",
            "--http",
            "127.0.0.1:1",
            "--sink",
            "json",
        ]))
        .unwrap() else {
            panic!("expected serve-rig-proxy");
        };
        assert_eq!(options.http.as_deref(), Some("127.0.0.1:1"));
        assert_eq!(options.sink, SinkKind::Json);
        assert!(options.tcp.is_none());
    }
}
