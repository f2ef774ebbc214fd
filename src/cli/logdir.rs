//! Finding log files: the log directory, name patterns and "the most recent run of X".
//!
//! - The directory is `$RIG_LOGS`, else `{rig-dir}/logs` where rigd writes them (`$RIG_DIR`,
//!   else `~/.rig`), as upstream.
//! - An argument naming an existing file is used as is.
//! - Anything else is a name pattern, matched against each log's environment name (its
//!   header's, which is whole however long: file names cut it at 200 bytes) and its file name
//!   without `.jsonl`. Matching ignores case and treats `/`, `\`, space and `_` alike, so
//!   `TestOrderFlow/Go` finds `TestOrderFlow_Go-19ca39c1dce-be7097ab.jsonl` (rigd turns the
//!   separators into `_` in file names). The best kind of match wins ([`Match`]): the whole
//!   name, then a glob (`*`, `?`, `[...]`), then the start of the name, then a part of the
//!   file name (as before, for ids and fragments).
//! - A command that reads one log takes the most recent of the best matches; when a prefix or
//!   a part matches the logs of more than one environment, that is an error listing them
//!   ([`resolve_one`]). It says on stderr which file it read unless the argument named one
//!   log exactly.
//! - "Most recent" is by the header's `timestamp` (when the file was written), then by the
//!   file's modification time, never by name.
//! - When nothing matches, the error lists the closest names and how to see them all.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rig_types::Timestamp;

use super::error::CliError;
use super::logread::read_header;
use crate::logfiles::LogHeader;

/// A log file found in the log directory.
#[derive(Debug, Clone)]
pub struct FoundLog {
    /// Its path.
    pub path: PathBuf,
    /// The file name without `.jsonl`.
    pub stem: String,
    /// The header, when the first line is a valid `log.header`.
    pub header: Option<LogHeader>,
    /// The file's modification time.
    pub modified: SystemTime,
    /// How it matched the pattern ([`Match::Exact`] when there was none).
    pub matched: Match,
}

impl FoundLog {
    /// When the run ended: the header timestamp, else the modification time.
    pub fn when(&self) -> Timestamp {
        match &self.header {
            Some(h) if !h.timestamp.is_zero() => h.timestamp,
            _ => Timestamp::from_system_time(self.modified),
        }
    }

    /// Newest first.
    pub fn newest_first(a: &FoundLog, b: &FoundLog) -> Ordering {
        b.when()
            .cmp(&a.when())
            .then_with(|| b.modified.cmp(&a.modified))
            .then_with(|| b.stem.cmp(&a.stem))
    }
}

/// The log directory: `$RIG_LOGS`, else `{rig-dir}/logs`.
pub fn log_dir() -> PathBuf {
    match std::env::var_os("RIG_LOGS").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => rig_dir().join("logs"),
    }
}

/// The rig directory: `$RIG_DIR`, else `~/.rig`.
pub fn rig_dir() -> PathBuf {
    super::autostart::default_rig_dir(&|key| std::env::var_os(key))
}

/// Every `.jsonl` file in `dir` whose environment or file name matches `pattern` (every file
/// when `None`), in no particular order. A missing directory gives an empty list.
pub fn find(dir: &Path, pattern: Option<&str>) -> Result<Vec<FoundLog>, CliError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(CliError::failed(format!(
                "cannot read log directory {}: {e}",
                dir.display()
            )))
        }
    };
    let matcher = pattern.map(Pattern::new);
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(stem) = jsonl_stem(&path) else {
            continue;
        };
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let header = read_header(&path).ok();
        let environment = header.as_ref().map(|h| h.environment.as_str());
        let matched = match &matcher {
            None => Match::Exact,
            Some(m) => match m.match_of(&stem, environment) {
                Some(matched) => matched,
                None => continue,
            },
        };
        out.push(FoundLog {
            header,
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            path,
            stem,
            matched,
        });
    }
    Ok(out)
}

/// The log a single-file command reads, and what to tell the user about the choice.
#[derive(Debug)]
pub struct Resolved {
    /// The file.
    pub path: PathBuf,
    /// Which file was picked among several, or by a partial match (for stderr); `None` when
    /// the argument named this one log exactly.
    pub note: Option<String>,
    /// True when the log was found by an environment name or pattern (or as the most recent
    /// log), false when the argument was the file's path.
    pub by_name: bool,
}

/// Resolves the argument of a single-file command (`traffic`, `logs`, `explain`, `export`):
/// an existing file or pipe, else the most recent of the logs that match best (see [`Match`]); with
/// no argument, the most recent log of all. A prefix or part of names that matches the logs
/// of more than one environment is an error listing them.
pub fn resolve_one(arg: Option<&str>) -> Result<Resolved, CliError> {
    if let Some(a) = arg {
        let path = Path::new(a);
        // A file, or a pipe (`rig logs <(zcat run.jsonl.gz)`): anything but a directory.
        if path.metadata().is_ok_and(|m| !m.is_dir()) {
            return Ok(Resolved {
                path: path.to_path_buf(),
                note: None,
                by_name: false,
            });
        }
        if a.ends_with(".jsonl") && a.contains('/') {
            return Err(CliError::failed(format!("file not found: {a}")));
        }
    }
    let dir = log_dir();
    let found = find(&dir, arg)?;
    let Some(best) = found.iter().map(|f| f.matched).min() else {
        return Err(no_match(&dir, arg));
    };
    let mut found: Vec<FoundLog> = found.into_iter().filter(|f| f.matched == best).collect();
    found.sort_by(FoundLog::newest_first);
    let environments: BTreeSet<String> = found.iter().map(environment_of).collect();
    if let (Some(arg), true) = (arg, best >= Match::Prefix && environments.len() > 1) {
        return Err(ambiguous(arg, best, &environments));
    }
    let n = found.len();
    let picked = found.swap_remove(0);
    let path = picked.path.display();
    let note = match arg {
        None if n > 1 => Some(format!("reading {path} (the most recent of {n} logs)")),
        None => None,
        Some(arg) => {
            let which = if n > 1 {
                format!("the most recent of {n} logs")
            } else {
                "the log".to_string()
            };
            match best {
                Match::Exact if n > 1 => Some(format!("reading {path} ({which} named {arg:?})")),
                Match::Exact => None,
                Match::Glob => Some(format!("reading {path} ({which} matching {arg:?})")),
                Match::Prefix | Match::Part => Some(format!(
                    "reading {path} ({which} of {}, whose name {} {arg:?})",
                    environment_of(&picked),
                    if best == Match::Prefix {
                        "starts with"
                    } else {
                        "contains"
                    }
                )),
            }
        }
    };
    Ok(Resolved {
        path: picked.path,
        note,
        by_name: true,
    })
}

/// The error for a prefix or part of names that matches the logs of several environments.
fn ambiguous(arg: &str, matched: Match, environments: &BTreeSet<String>) -> CliError {
    const SHOWN: usize = 10;
    let mut message = format!(
        "{arg:?} matches the logs of {} environments:",
        environments.len()
    );
    for name in environments.iter().take(SHOWN) {
        message.push_str(&format!("\n  {name}"));
    }
    if environments.len() > SHOWN {
        message.push_str(&format!("\n  ... and {} more", environments.len() - SHOWN));
    }
    // The glob that matches what the prefix or part matched.
    let glob = if matched == Match::Prefix {
        format!("{arg}*")
    } else {
        format!("*{arg}*")
    };
    message.push_str(&format!(
        "\n(give the whole name, or a glob such as \"{glob}\" to read the most recent of them)"
    ));
    CliError::failed(message)
}

/// The error for a pattern that matched nothing: the directory, up to five close names and
/// what to run next.
pub fn no_match(dir: &Path, pattern: Option<&str>) -> CliError {
    let all = find(dir, None).unwrap_or_default();
    let Some(pattern) = pattern else {
        return CliError::failed(format!(
            "no log files in {} (rigd writes one per environment torn down with \
             DELETE ?log=true; set RIG_LOGS or RIG_DIR to look elsewhere)",
            dir.display()
        ));
    };
    if all.is_empty() {
        return CliError::failed(format!(
            "no log files matching {pattern:?}: {} has none (set RIG_LOGS or RIG_DIR to look \
             elsewhere)",
            dir.display()
        ));
    }
    let close = close_names(pattern, all.iter().map(environment_of), 5);
    let mut message = format!("no log files matching {pattern:?} in {}", dir.display());
    if !close.is_empty() {
        message.push_str("; did you mean:");
        for name in close {
            message.push_str(&format!("\n  {name}"));
        }
    }
    message.push_str("\n(`rig ls` lists every log file)");
    CliError::failed(message)
}

/// The environment name of a found log (from its header, else its file name).
fn environment_of(f: &FoundLog) -> String {
    match &f.header {
        Some(h) if !h.environment.is_empty() => h.environment.clone(),
        _ => f.stem.clone(),
    }
}

/// Up to `max` distinct names closest to `wanted`, best first: names containing it (after
/// normalisation), then by edit distance within a third of the length.
pub fn close_names(wanted: &str, names: impl Iterator<Item = String>, max: usize) -> Vec<String> {
    let want = normalize(wanted);
    let mut scored: Vec<(usize, String)> = Vec::new();
    for name in names {
        if scored.iter().any(|(_, n)| *n == name) {
            continue;
        }
        let norm = normalize(&name);
        let score = if norm.contains(&want) || want.contains(&norm) {
            0
        } else {
            let n = want.chars().count();
            let whole = edit_distance(&want, &norm);
            let part = window_distance(&want, &norm);
            let limit = (n / 4).max(1);
            if whole <= limit {
                whole
            } else if part <= limit {
                // A close part of a longer name ranks after close whole names.
                part + 1
            } else {
                continue;
            }
        };
        scored.push((score, name));
    }
    scored.sort();
    scored.into_iter().take(max).map(|(_, n)| n).collect()
}

/// The smallest edit distance between `want` and any part of `name` about as long (so a
/// misspelt prefix of a long name still counts as close).
fn window_distance(want: &str, name: &str) -> usize {
    let name: Vec<char> = name.chars().collect();
    let n = want.chars().count();
    let mut best = usize::MAX;
    for len in n.saturating_sub(1)..=n + 1 {
        if len == 0 || len > name.len() {
            continue;
        }
        for start in 0..=name.len() - len {
            let part: String = name[start..start + len].iter().collect();
            best = best.min(edit_distance(want, &part));
        }
    }
    best
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// `name` lower-cased with `/`, `\` and space turned into `_`, as in file names.
pub fn normalize(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '/' | '\\' | ' ' => '_',
            c => c,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// True when two service or environment names are the same under [`normalize`].
pub fn same_name(a: &str, b: &str) -> bool {
    normalize(a) == normalize(b)
}

fn jsonl_stem(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    name.strip_suffix(".jsonl").map(str::to_string)
}

/// How a log matched a name pattern, best first: a command that reads one log takes the best
/// kind of match there is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Match {
    /// The whole environment name, or the whole file name without `.jsonl`.
    Exact,
    /// A glob (the pattern has `*`, `?` or `[`) matching the environment or file name.
    Glob,
    /// The start of the environment or file name.
    Prefix,
    /// A part of the file name (which holds the environment name, cut at 200 bytes, and the
    /// run's id).
    Part,
}

/// A name pattern: a shell glob (`*`, `?`, `[...]`) or a name, matched after [`normalize`].
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The pattern, normalised.
    name: String,
    /// The glob, when the pattern is one.
    glob: Option<Vec<char>>,
}

impl Pattern {
    /// Compiles `pattern`.
    pub fn new(pattern: &str) -> Pattern {
        let name = normalize(pattern);
        let glob = name
            .contains(['*', '?', '['])
            .then(|| name.chars().collect());
        Pattern { name, glob }
    }

    /// How a log whose file name without `.jsonl` is `stem`, and whose header names
    /// `environment`, matches; `None` when it does not.
    pub fn match_of(&self, stem: &str, environment: Option<&str>) -> Option<Match> {
        let stem = normalize(stem);
        let environment = environment.map(normalize).filter(|e| !e.is_empty());
        let names = || std::iter::once(&stem).chain(environment.as_ref());
        if names().any(|n| *n == self.name) {
            return Some(Match::Exact);
        }
        if let Some(glob) = &self.glob {
            let matches = |n: &String| glob_match(glob, &n.chars().collect::<Vec<_>>());
            return names().any(matches).then_some(Match::Glob);
        }
        if names().any(|n| n.starts_with(&self.name)) {
            Some(Match::Prefix)
        } else if stem.contains(&self.name) {
            Some(Match::Part)
        } else {
            None
        }
    }

    /// True when a log named `name` (a file name without `.jsonl`) matches.
    pub fn matches(&self, name: &str) -> bool {
        self.match_of(name, None).is_some()
    }
}

/// Shell-style glob matching with `*`, `?` and `[...]` classes (`[!...]` negates, `a-z`
/// ranges); an unclosed `[` is a literal.
fn glob_match(pattern: &[char], text: &[char]) -> bool {
    // Iterative matcher with backtracking to the last `*`.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                '*' => {
                    star = Some((p, t));
                    p += 1;
                    continue;
                }
                '?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = class_match(pattern, p, text[t]) {
                        if matched {
                            p = next;
                            t += 1;
                            continue;
                        }
                    } else if text[t] == '[' {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
                c if c == text[t] => {
                    p += 1;
                    t += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                p = sp + 1;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// Matches `c` against the class starting at `pattern[start] == '['`; returns whether it
/// matched and the index after the class, or `None` when the class is not closed.
fn class_match(pattern: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(pattern.get(i), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < pattern.len() {
        if pattern[i] == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if i + 2 < pattern.len() && pattern[i + 1] == '-' && pattern[i + 2] != ']' {
            if pattern[i] <= c && c <= pattern[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if pattern[i] == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substring_patterns_ignore_case_and_separators() {
        let p = Pattern::new("testorderflow/go");
        assert!(p.matches("TestOrderFlow_Go-19ca39c1dce-be7097ab"));
        assert!(!p.matches("TestOrderFlow_Func-19ca39c1dce-be7097ab"));
        assert!(Pattern::new("Order").matches("TestOrderFlow-1"));
        assert!(Pattern::new("order flow").matches("Order_Flow-1"));
    }

    #[test]
    fn globs() {
        assert!(Pattern::new("Test*Go-*").matches("TestOrderFlow_Go-1-2"));
        assert!(!Pattern::new("Test*Go").matches("TestOrderFlow_Go-1-2"));
        assert!(Pattern::new("Test?rder*").matches("TestOrder-1"));
        assert!(Pattern::new("test[a-c]*").matches("TestB-1"));
        assert!(!Pattern::new("test[!a-c]*").matches("TestB-1"));
        assert!(Pattern::new("*a[b*").matches("xa[by"));
    }

    #[test]
    fn close_names_prefer_containment_then_distance() {
        let names = ["TestOrderFlow", "TestOrders", "TestBasic", "TestCrash"].map(String::from);
        assert_eq!(
            close_names("TestOrderz", names.iter().cloned(), 5),
            ["TestOrders", "TestOrderFlow"]
        );
        assert_eq!(
            close_names("Basic", names.iter().cloned(), 5),
            ["TestBasic"]
        );
        assert!(close_names("zzzzzz", names.iter().cloned(), 5).is_empty());
        let long = ["TestOrders/failed".to_string(), "TestCrash".to_string()];
        assert_eq!(
            close_names("TestOrdrs", long.iter().cloned(), 5),
            ["TestOrders/failed"]
        );
    }

    #[test]
    fn same_name_ignores_case_and_separators() {
        assert!(same_name("Order/Go", "order_go"));
        assert!(!same_name("order", "orders"));
    }
}
