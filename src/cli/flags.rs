//! Declarative option parsing for the `rig` commands that read logs and talk to rigd.
//!
//! Each command lists its options ([`Opt`]); [`parse`] lexes the command line with
//! [`Args`] and returns the options given and the positionals, in any order (a flag after a
//! positional still counts, unlike Go's `flag` package). Short options that take a value
//! accept it attached (`-n1`, `-m7d`), separate (`-n 1`) or after `=` (`--max-age=7d`);
//! `--help`/`-h` anywhere asks for help. `--color WHEN` is accepted by every command.

use std::ffi::OsString;

use super::args::{is_help, unknown_flag, Arg, Args};
use super::error::CliError;
use super::output::ColorChoice;
use regex::Regex;

/// One option a command accepts.
#[derive(Debug, Clone, Copy)]
pub struct Opt {
    /// The canonical name (`--failed`); what [`Parsed`] is queried with.
    pub name: &'static str,
    /// Other spellings (`-n`, `--limit`).
    pub aliases: &'static [&'static str],
    /// True when the option takes a value.
    pub value: bool,
}

impl Opt {
    /// A switch (no value).
    pub const fn switch(name: &'static str, aliases: &'static [&'static str]) -> Opt {
        Opt {
            name,
            aliases,
            value: false,
        }
    }

    /// An option with a value.
    pub const fn value(name: &'static str, aliases: &'static [&'static str]) -> Opt {
        Opt {
            name,
            aliases,
            value: true,
        }
    }

    fn matches(&self, given: &str) -> bool {
        self.name == given || self.aliases.contains(&given)
    }
}

/// The parsed command line of one command.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    /// `--help` or `-h` was given.
    pub help: bool,
    /// `--color`.
    pub color: ColorChoice,
    /// The options in the order given: canonical name and value (empty for switches).
    given: Vec<(&'static str, String)>,
    /// The positionals in order.
    pub positionals: Vec<OsString>,
}

impl Parsed {
    /// True when the switch (or option) `name` was given.
    pub fn has(&self, name: &str) -> bool {
        self.given.iter().any(|(n, _)| *n == name)
    }

    /// The last value given for `name`.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.given
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value given for `name`, in order.
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.given
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The positionals as text (lossy for non-UTF-8).
    pub fn positional_strings(&self) -> Vec<String> {
        self.positionals
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    }

    /// Fails unless at most `max` positionals were given; `what` describes them for the
    /// error.
    pub fn at_most(&self, command: &str, max: usize, what: &str) -> Result<(), CliError> {
        if self.positionals.len() > max {
            let extra = self.positionals[max].to_string_lossy();
            return Err(CliError::usage(format!(
                "unexpected argument {extra:?}: rig {command} takes {what} (see `rig {command} --help`)"
            )));
        }
        Ok(())
    }
}

/// Parses the arguments after the command name against `opts`.
pub fn parse(command: &str, mut args: Args, opts: &[Opt]) -> Result<Parsed, CliError> {
    let mut out = Parsed::default();
    let mut color: Option<String> = None;
    while let Some(arg) = args.next_arg()? {
        let (name, inline) = match arg {
            Arg::Positional(p) => {
                out.positionals.push(p);
                continue;
            }
            Arg::Flag { name, inline_value } => (name, inline_value),
        };
        if is_help(&name) {
            out.help = true;
            continue;
        }
        if name == "--color" || name == "--colour" {
            color = Some(args.value(&name, inline)?);
            continue;
        }
        if let Some(opt) = opts.iter().find(|o| o.matches(&name)) {
            if opt.value {
                let value = args.value(&name, inline)?;
                out.given.push((opt.name, value));
            } else {
                Args::no_value(&name, inline)?;
                out.given.push((opt.name, String::new()));
            }
            continue;
        }
        // `-n1`: a short option with its value attached.
        if let Some((opt, value)) = attached_short(&name, opts) {
            out.given.push((opt.name, value.to_string()));
            continue;
        }
        if out.help {
            // `rig ls --help --bogus` still shows the help.
            continue;
        }
        return Err(unknown_flag(command, &name));
    }
    if let Some(c) = color {
        out.color = c.parse().map_err(|_| {
            CliError::usage(format!(
                "invalid --color value {c:?}: expected auto, always or never"
            ))
        })?;
    }
    Ok(out)
}

/// `-n1` → (`-n`, `1`) when `-n` is a short option that takes a value.
fn attached_short<'a>(given: &'a str, opts: &'a [Opt]) -> Option<(&'a Opt, &'a str)> {
    if given.starts_with("--") || given.len() < 3 {
        return None;
    }
    let (short, value) = given.split_at(2);
    let opt = opts.iter().find(|o| o.value && o.matches(short))?;
    Some((opt, value.strip_prefix('=').unwrap_or(value)))
}

/// The regular expression given to option `option` (`--grep`), when given; a pattern that
/// does not compile is a usage error naming the option and the pattern.
pub fn regex(option: &str, value: Option<&str>) -> Result<Option<Regex>, CliError> {
    value
        .map(|re| {
            Regex::new(re)
                .map_err(|e| CliError::usage(format!("invalid {option} pattern {re:?}: {e}")))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTS: &[Opt] = &[
        Opt::switch("--failed", &[]),
        Opt::switch("-q", &["--quiet"]),
        Opt::value("-n", &["--limit"]),
        Opt::value("--detail", &[]),
    ];

    fn p(items: &[&str]) -> Result<Parsed, CliError> {
        parse("ls", Args::new(items.iter().copied()), OPTS)
    }

    #[test]
    fn flags_anywhere_and_attached_short_values() {
        let parsed = p(&["--failed", "Order", "-q", "-n1"]).unwrap();
        assert!(parsed.has("--failed") && parsed.has("-q"));
        assert_eq!(parsed.value("-n"), Some("1"));
        assert_eq!(parsed.positional_strings(), ["Order"]);
        let parsed = p(&["Order", "--limit=3", "--quiet"]).unwrap();
        assert_eq!(parsed.value("-n"), Some("3"));
        assert!(parsed.has("-q"));
        assert_eq!(p(&["-n", "2"]).unwrap().value("-n"), Some("2"));
    }

    #[test]
    fn repeated_values_and_colour() {
        let parsed = p(&["--detail", "1", "--detail=3", "--color", "never"]).unwrap();
        assert_eq!(parsed.values("--detail"), ["1", "3"]);
        assert_eq!(parsed.color, ColorChoice::Never);
        assert_eq!(p(&["--color", "pink"]).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn unknown_options_and_help() {
        let err = p(&["--bogus"]).unwrap_err();
        assert_eq!(
            err.message(),
            "unknown option --bogus (see `rig ls --help`)"
        );
        assert!(p(&["--help", "--bogus"]).unwrap().help);
        assert_eq!(
            p(&["--failed=yes"]).unwrap_err().message(),
            "--failed takes no value (got --failed=yes)"
        );
        assert_eq!(p(&["-n"]).unwrap_err().message(), "-n needs a value");
    }
}
