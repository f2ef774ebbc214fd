//! [`AnalysisEvents`]: a run's events as the analysis, the log header and the pretty timeline
//! read them, gathered one at a time, so that a run with a great deal of service output is
//! never held whole in memory to explain it.
//!
//! Of a service's output (`service.log`), those readers only look at:
//! - rigd's remarks (the stream `rig`), which the timeline prints;
//! - the chunks holding its last [`FAILURE_LOG_LINES`] lines, which the timeline prints after
//!   a `service.failed`;
//! - the stderr chunks holding the last [`STDERR_LINES_PER_SERVICE`] lines the analysis keeps
//!   (see [`OutputGate`] for which count);
//! - which services wrote output (the header's list of services, the analysis's progress of
//!   services while the environment starts).
//!
//! So those are kept, with the first chunk of each service (the first event of the run is thus
//! kept, which the header's duration and the timeline's times are measured from; the last is
//! its service's newest chunk) and every other event; the rest of the output is left out. A chunk left out
//! is always older than chunks that hold enough lines for the tail it would count in, so the
//! files and the summary come out byte for byte the same.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use rig_types::{Event, EventType};

use super::analysis::{
    for_analysis, is_traffic_error, stderr_lines, OutputGate, STDERR_LINES_PER_SERVICE,
};
use crate::logfiles::{is_rig_remark, output_lines, FAILURE_LOG_LINES};

/// A run's events, in `seq` order, with the service output the analysis and the log files'
/// header and timeline do not read left out, and the bodies left out by [`for_analysis`].
///
/// ```ignore
/// let mut analysis = AnalysisEvents::default();
/// for event in events {
///     analysis.push(event);
/// }
/// let events = analysis.finish();
/// ```
///
/// Memory: besides the events other than `service.log`, at most
/// [`FAILURE_LOG_LINES`] + [`STDERR_LINES_PER_SERVICE`] + 1 output chunks per service, and
/// rigd's remarks, however much a service writes.
#[derive(Debug, Default)]
pub struct AnalysisEvents {
    /// How many events were pushed: the next one's place in the run.
    pushed: usize,
    /// The events kept whatever follows, with their places.
    kept: Vec<(usize, Arc<Event>)>,
    /// Each service's output chunks that its tails need so far.
    tails: HashMap<String, OutputTails>,
    gate: OutputGate,
    /// Leave out the traffic events that are no errors ([`AnalysisEvents::for_analysis_only`]).
    analysis_only: bool,
}

/// The output chunks of one service that its tails need.
#[derive(Debug, Default)]
struct OutputTails {
    /// The newest chunks holding its last [`FAILURE_LOG_LINES`] lines.
    lines: Window,
    /// The newest stderr chunks holding the last [`STDERR_LINES_PER_SERVICE`] lines the
    /// analysis keeps.
    stderr: Window,
}

/// The newest chunks of a service that hold a tail of a number of lines.
#[derive(Debug, Default)]
struct Window {
    /// How many lines the chunks hold.
    held: usize,
    /// Oldest first: each chunk's place in the run, its line count, and the chunk.
    chunks: VecDeque<(usize, usize, Arc<Event>)>,
}

impl Window {
    /// Adds `event`, the service's newest chunk, holding `lines` lines (none: it is not
    /// added), then leaves out the oldest chunks that the newer ones make unneeded for a tail
    /// of `wanted` lines.
    fn push(&mut self, place: usize, event: &Arc<Event>, lines: usize, wanted: usize) {
        if lines == 0 {
            return;
        }
        self.held += lines;
        self.chunks.push_back((place, lines, Arc::clone(event)));
        while let Some(&(_, oldest, _)) = self.chunks.front() {
            if self.held - oldest < wanted {
                break;
            }
            self.held -= oldest;
            self.chunks.pop_front();
        }
    }
}

impl AnalysisEvents {
    /// Takes the run's next event (in `seq` order).
    pub fn push(&mut self, event: Arc<Event>) {
        let place = self.pushed;
        self.pushed += 1;
        if self.analysis_only && is_ok_traffic(&event) {
            return;
        }
        let event = for_analysis(event);
        // The gate takes every event, since lifecycle events decide which output counts.
        let stderr = self.gate.see(&event).map(|data| stderr_lines(data).count());
        let Some(log) = event
            .log
            .as_ref()
            .filter(|_| event.event_type == EventType::ServiceLog)
        else {
            self.kept.push((place, event));
            return;
        };
        // At least one: a service's newest chunk is always in its `lines` window.
        let lines = output_lines(&log.data).count();
        let first_of_service = !self.tails.contains_key(&event.service);
        if first_of_service || is_rig_remark(&event) {
            self.kept.push((place, Arc::clone(&event)));
        }
        let tails = match self.tails.get_mut(&event.service) {
            Some(tails) => tails,
            None => self.tails.entry(event.service.clone()).or_default(),
        };
        tails.lines.push(place, &event, lines, FAILURE_LOG_LINES);
        if let Some(stderr) = stderr {
            tails
                .stderr
                .push(place, &event, stderr, STDERR_LINES_PER_SERVICE);
        }
    }

    /// An [`AnalysisEvents`] for [`analyze`](super::analyze) alone, which reads no traffic
    /// event but the errors (and the observations the proxies dropped): the others, which
    /// only the log files' timeline and a header derived from the events read, are left out
    /// too, so that explaining a run of many exchanges does not hold them all.
    pub fn for_analysis_only() -> AnalysisEvents {
        AnalysisEvents {
            analysis_only: true,
            ..AnalysisEvents::default()
        }
    }

    /// The events kept, in `seq` order.
    pub fn finish(self) -> Vec<Arc<Event>> {
        let mut output: Vec<(usize, Arc<Event>)> = self
            .tails
            .into_values()
            .flat_map(|tails| tails.lines.chunks.into_iter().chain(tails.stderr.chunks))
            .map(|(place, _, event)| (place, event))
            .collect();
        output.sort_unstable_by_key(|(place, _)| *place);
        output.dedup_by_key(|(place, _)| *place);

        let mut events = Vec::with_capacity(self.kept.len() + output.len());
        let mut output = output.into_iter().peekable();
        for (place, event) in self.kept {
            while let Some((_, earlier)) = output.next_if(|(at, _)| *at < place) {
                events.push(earlier);
            }
            output.next_if(|(at, _)| *at == place);
            events.push(event);
        }
        events.extend(output.map(|(_, event)| event));
        events
    }
}

/// A traffic event that is not an error: an exchange that succeeded, a connection, a Kafka
/// request.
fn is_ok_traffic(event: &Event) -> bool {
    event.event_type.is_traffic()
        && event.event_type != EventType::ObservationsDropped
        && !is_traffic_error(event)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use rig_types::{LogStream, Timestamp};

    use super::*;
    use crate::explain::{analyze, summarize};
    use crate::logfiles::{render_pretty, LogHeader, Outcome, REASON_TEST_FAILED};

    /// `events` numbered and stamped 1 ms apart, as a log holds them.
    fn numbered(events: Vec<Event>) -> Vec<Arc<Event>> {
        events
            .into_iter()
            .enumerate()
            .map(|(i, mut e)| {
                e.seq = i as u64 + 1;
                e.timestamp =
                    Timestamp::from_unix_nanos(1_700_000_000_000_000_000 + i as i128 * 1_000_000);
                Arc::new(e)
            })
            .collect()
    }

    fn retained(events: &[Arc<Event>]) -> Vec<Arc<Event>> {
        let mut analysis = AnalysisEvents::default();
        for event in events {
            analysis.push(Arc::clone(event));
        }
        analysis.finish()
    }

    /// The header, timeline and summary of `retained(events)` are those of every event (with
    /// the bodies [`for_analysis`] leaves out, as before), whatever the teardown reason.
    fn assert_same_files_and_summary(name: &str, events: &[Arc<Event>]) -> Vec<Arc<Event>> {
        let whole: Vec<Arc<Event>> = events.iter().cloned().map(for_analysis).collect();
        let kept = retained(events);
        let injected: BTreeSet<String> = ["~test".to_string()].into();
        let now = Timestamp::from_unix_nanos(0);
        for reason in ["", REASON_TEST_FAILED] {
            let header = LogHeader::for_events(name, &whole, &injected, reason, now);
            assert_eq!(
                LogHeader::for_events(name, &kept, &injected, reason, now),
                header,
                "{name}"
            );
            assert_eq!(
                render_pretty(&header, &kept),
                render_pretty(&header, &whole),
                "{name}"
            );
        }
        assert_same_analysis(name, &kept, &whole);
        kept
    }

    /// The analysis and summary of `kept` are those of `whole`, whatever the outcome.
    fn assert_same_analysis(name: &str, kept: &[Arc<Event>], whole: &[Arc<Event>]) {
        for outcome in [Outcome::Passed, Outcome::Failed, Outcome::Crashed] {
            assert_eq!(analyze(kept, outcome), analyze(whole, outcome), "{name}");
            assert_eq!(
                summarize(kept, outcome),
                summarize(whole, outcome),
                "{name}"
            );
        }
    }

    /// Small deterministic pseudo-random numbers (no dependency, the same every run).
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    /// `events` with a burst of output of every kind before each of them and after the last:
    /// on stdout, stderr and rigd's stream, one line or several, blank lines, `\r\n`, empty
    /// chunks, from the services of the run and from one that has no other event.
    fn chatty(events: &[Event], seed: u64) -> Vec<Event> {
        let mut services: Vec<String> = events
            .iter()
            .map(|e| e.service.clone())
            .filter(|s| !s.is_empty())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        services.push("only-output".into());
        let mut random = Lcg(seed);
        let mut out = Vec::new();
        let environment = events
            .first()
            .map(|e| e.environment.clone())
            .unwrap_or_default();
        for (i, event) in events.iter().map(Some).chain([None]).enumerate() {
            for n in 0..random.below(40) {
                let service = &services[random.below(services.len() as u64) as usize];
                let stream = match random.below(8) {
                    0..=3 => LogStream::Stderr,
                    4..=6 => LogStream::Stdout,
                    _ => LogStream::rig(),
                };
                let data = match random.below(7) {
                    0 => format!("line {i}.{n}\n"),
                    1 => format!("first {i}.{n}\nsecond {i}.{n}\n\nfourth {i}.{n}\n"),
                    2 => "   \n\n".to_string(),
                    3 => format!("windows {i}.{n}\r\n"),
                    4 => String::new(),
                    5 => format!("ERROR: failure {i}.{n} without a newline"),
                    _ => format!("panic: {i}.{n}\n{}", "frame\n".repeat(12)),
                };
                let mut chunk = Event::log(service, stream, data);
                chunk.environment = environment.clone();
                out.push(chunk);
            }
            out.extend(event.cloned());
        }
        out
    }

    /// A run through every state that decides which stderr counts: a build, services
    /// starting, one failing, one stopping, teardown.
    fn lifecycle_run() -> Vec<Event> {
        let svc = Event::for_service;
        let mut artifact = Event::new(EventType::ArtifactStarted);
        artifact.artifact = "cargo:/src/api".into();
        let mut built = Event::new(EventType::ArtifactCompleted);
        built.artifact = "cargo:/src/api".into();
        let mut failing = svc(EventType::EnvironmentFailing, "worker");
        failing.error = "service \"worker\": exit status 1".into();
        vec![
            svc(EventType::IngressPublished, "api"),
            artifact,
            built,
            svc(EventType::ServiceStarting, "api"),
            svc(EventType::ServiceStarting, "worker"),
            svc(EventType::HealthCheckFailed, "api").with_error("connection refused"),
            svc(EventType::ServiceHealthy, "api"),
            svc(EventType::ServiceReady, "api"),
            svc(EventType::ServiceReady, "worker"),
            Event::new(EventType::EnvironmentUp),
            svc(EventType::ServiceFailed, "worker").with_error("exit status 1"),
            failing,
            Event::new(EventType::EnvironmentDestroying),
            svc(EventType::ServiceStopping, "api"),
            svc(EventType::ServiceStopped, "api"),
            Event::new(EventType::EnvironmentDown),
        ]
    }

    /// Runs recorded by rigd and upstream's files, as they are and with bursts of output
    /// everywhere: the files and the summary are the same, and the bursts are mostly left out.
    /// [`lifecycle_run`] and the runs of the log fixtures, rigd's and upstream's.
    fn recorded_runs() -> Vec<(String, Vec<Event>)> {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut runs = vec![("lifecycle".to_string(), lifecycle_run())];
        for dir in ["logs", "upstream"] {
            for entry in std::fs::read_dir(fixtures.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                let log =
                    crate::cli::logread::read(&path, crate::cli::logread::Mode::Strict).unwrap();
                runs.push((path.display().to_string(), log.events));
            }
        }
        assert!(runs.len() >= 7, "{}", runs.len());
        runs
    }

    #[test]
    fn the_files_and_the_summary_are_those_of_every_event() {
        for (name, events) in recorded_runs() {
            let as_recorded: Vec<Arc<Event>> = events.iter().cloned().map(Arc::new).collect();
            assert_same_files_and_summary(&name, &as_recorded);
            for seed in 1..=4 {
                let loud = numbered(chatty(&events, seed));
                let kept = assert_same_files_and_summary(&name, &loud);
                assert!(
                    kept.len() * 2 < loud.len(),
                    "{name}: {} of {} events kept",
                    kept.len(),
                    loud.len()
                );
            }
        }
    }

    /// For the analysis alone, the traffic that is not an error is left out, and the analysis
    /// and summary are those of every event.
    #[test]
    fn the_analysis_alone_is_that_of_every_event_without_the_traffic_that_went_well() {
        let mut left_out = 0;
        for (name, events) in recorded_runs() {
            let whole: Vec<Arc<Event>> = events.into_iter().map(Arc::new).collect();
            let mut analysis = AnalysisEvents::for_analysis_only();
            for event in &whole {
                analysis.push(Arc::clone(event));
            }
            let kept = analysis.finish();
            assert!(!kept.iter().any(|e| is_ok_traffic(e)), "{name}");
            left_out += whole.len() - kept.len();
            assert_same_analysis(&name, &kept, &whole);
        }
        assert!(left_out > 20, "only {left_out} events left out");
    }

    /// However much a service writes, the output kept is a tail of a few chunks per service.
    #[test]
    fn the_output_kept_is_bounded_by_the_tails() {
        const CHUNKS: usize = 5_000;
        const CHUNK_BYTES: usize = 4096;
        let services = ["api", "worker", "db"];
        let mut events = vec![Event::for_service(EventType::ServiceStarting, "api")];
        for i in 0..CHUNKS {
            let service = services[i % services.len()];
            let stream = if i % 2 == 0 {
                LogStream::Stdout
            } else {
                LogStream::Stderr
            };
            let line = format!("{i:06} {}\n", "x".repeat(CHUNK_BYTES - 8));
            events.push(Event::log(service, stream, line));
            if i == CHUNKS / 2 {
                events.push(
                    Event::for_service(EventType::ServiceFailed, "worker")
                        .with_error("exit status 1"),
                );
            }
        }
        events.push(Event::new(EventType::EnvironmentDestroying));
        let events = numbered(events);
        let text = |events: &[Arc<Event>]| -> usize {
            events
                .iter()
                .filter_map(|e| e.log.as_ref())
                .map(|log| log.data.len())
                .sum()
        };
        assert_eq!(text(&events), CHUNKS * CHUNK_BYTES);

        let kept = assert_same_files_and_summary("chatty", &events);
        // Per service: the last lines of the timeline, the stderr lines of the analysis, and
        // its first chunk.
        let bound = services.len() * (FAILURE_LOG_LINES + STDERR_LINES_PER_SERVICE + 1);
        let output = kept
            .iter()
            .filter(|e| e.event_type == EventType::ServiceLog)
            .count();
        assert!(output <= bound, "{output} output chunks kept");
        assert!(
            text(&kept) <= bound * CHUNK_BYTES,
            "{} bytes of output kept",
            text(&kept)
        );
    }
}
