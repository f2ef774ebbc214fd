//! A small command-line lexer shared by every `rig` command.
//!
//! It splits arguments into flags and positionals and leaves the meaning to each command:
//! - `--name value` and `--name=value` give a flag a value ([`Args::value`]);
//! - `-h` style short flags stand alone;
//! - `--` ends the flags: everything after it is positional;
//! - a lone `-` is a positional (conventionally standard input).
//!
//! Positionals stay [`OsString`]s so paths that are not UTF-8 still work; flags must be UTF-8.

use std::collections::VecDeque;
use std::ffi::OsString;

use super::error::CliError;

/// One lexed argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// A flag, with its dashes (`--server`, `-h`) and the value given after `=`, if any.
    Flag {
        /// The flag as typed, without any `=value` part.
        name: String,
        /// The `=value` part of `--name=value`.
        inline_value: Option<String>,
    },
    /// Anything that is not a flag.
    Positional(OsString),
}

/// The remaining arguments of a command line.
#[derive(Debug, Clone)]
pub struct Args {
    items: VecDeque<OsString>,
    flags_done: bool,
}

impl Args {
    /// Wraps the arguments that follow the command name.
    pub fn new<I, T>(args: I) -> Args
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        Args {
            items: args.into_iter().map(Into::into).collect(),
            flags_done: false,
        }
    }

    /// The next argument, or `None` at the end. A flag that is not valid UTF-8 is a usage
    /// error.
    pub fn next_arg(&mut self) -> Result<Option<Arg>, CliError> {
        let Some(item) = self.items.pop_front() else {
            return Ok(None);
        };
        if self.flags_done {
            return Ok(Some(Arg::Positional(item)));
        }
        let bytes = item.as_encoded_bytes();
        if bytes == b"--" {
            self.flags_done = true;
            return self.next_arg();
        }
        if bytes.len() < 2 || bytes[0] != b'-' {
            return Ok(Some(Arg::Positional(item)));
        }
        let Some(text) = item.to_str() else {
            return Err(CliError::usage(format!(
                "option {} is not valid UTF-8",
                item.to_string_lossy()
            )));
        };
        if text.starts_with("--") {
            if let Some((name, value)) = text.split_once('=') {
                return Ok(Some(Arg::Flag {
                    name: name.to_string(),
                    inline_value: Some(value.to_string()),
                }));
            }
        }
        Ok(Some(Arg::Flag {
            name: text.to_string(),
            inline_value: None,
        }))
    }

    /// The value of a flag that takes one: its `=value` part, else the next argument. A
    /// missing value, or a next argument that is itself an option, is a usage error.
    pub fn value(&mut self, name: &str, inline_value: Option<String>) -> Result<String, CliError> {
        if let Some(v) = inline_value {
            return Ok(v);
        }
        let missing = || CliError::usage(format!("{name} needs a value"));
        let next = self.items.front().ok_or_else(missing)?;
        if next.as_encoded_bytes().starts_with(b"--") {
            return Err(missing());
        }
        let next = self.items.pop_front().ok_or_else(missing)?;
        next.into_string().map_err(|v| {
            CliError::usage(format!("{name} {}: not valid UTF-8", v.to_string_lossy()))
        })
    }

    /// Checks that a flag which takes no value was not given one with `=`.
    pub fn no_value(name: &str, inline_value: Option<String>) -> Result<(), CliError> {
        match inline_value {
            None => Ok(()),
            Some(v) => Err(CliError::usage(format!(
                "{name} takes no value (got {name}={v})"
            ))),
        }
    }
}

/// True for the conventional help flags.
pub fn is_help(name: &str) -> bool {
    matches!(name, "-h" | "--help")
}

/// The usage error for a flag a command does not know.
pub fn unknown_flag(command: &str, name: &str) -> CliError {
    CliError::usage(format!(
        "unknown option {name} (see `rig {command} --help`)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(name: &str, value: Option<&str>) -> Arg {
        Arg::Flag {
            name: name.into(),
            inline_value: value.map(Into::into),
        }
    }

    fn lex(items: &[&str]) -> Vec<Arg> {
        let mut args = Args::new(items.iter().copied());
        let mut out = Vec::new();
        while let Some(a) = args.next_arg().unwrap() {
            out.push(a);
        }
        out
    }

    #[test]
    fn splits_flags_inline_values_and_positionals() {
        assert_eq!(
            lex(&["spec.json", "--logs", "--color=never", "-h", "-"]),
            vec![
                Arg::Positional("spec.json".into()),
                flag("--logs", None),
                flag("--color", Some("never")),
                flag("-h", None),
                Arg::Positional("-".into()),
            ]
        );
    }

    #[test]
    fn double_dash_ends_flags() {
        assert_eq!(
            lex(&["--", "--logs", "x"]),
            vec![
                Arg::Positional("--logs".into()),
                Arg::Positional("x".into())
            ]
        );
    }

    #[test]
    fn value_takes_inline_or_next_and_rejects_missing() {
        let mut args = Args::new(["127.0.0.1:1", "--logs"]);
        assert_eq!(args.value("--server", None).unwrap(), "127.0.0.1:1");
        assert_eq!(
            args.value("--server", None).unwrap_err(),
            CliError::usage("--server needs a value")
        );
        assert_eq!(args.value("--server", Some("a:1".into())).unwrap(), "a:1");
        let mut empty = Args::new(Vec::<String>::new());
        assert_eq!(empty.value("--color", None).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn no_value_rejects_inline_value() {
        assert!(Args::no_value("--logs", None).is_ok());
        assert_eq!(
            Args::no_value("--logs", Some("yes".into()))
                .unwrap_err()
                .message(),
            "--logs takes no value (got --logs=yes)"
        );
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_positional_is_kept_and_non_utf8_flag_is_an_error() {
        use std::os::unix::ffi::OsStringExt;
        let path = OsString::from_vec(b"sp\xffec.json".to_vec());
        let bad_flag = OsString::from_vec(b"--x\xff".to_vec());
        let mut args = Args::new([path.clone(), bad_flag]);
        assert_eq!(args.next_arg().unwrap(), Some(Arg::Positional(path)));
        assert_eq!(args.next_arg().unwrap_err().exit_code(), 2);
    }
}
