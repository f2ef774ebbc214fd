//! The command line of `rig up`.

use std::path::PathBuf;

use crate::cli::args::{is_help, unknown_flag, Arg, Args};
use crate::cli::error::CliError;
use crate::cli::output::ColorChoice;

/// `rig up --help`.
pub const USAGE: &str = "\
Usage: rig up <spec.json> [options]

Bring up the environment described by a spec file, show each service's progress and the
endpoints, then follow the traffic between the services until Ctrl-C (or SIGTERM) tears the
environment down.

Arguments:
  <spec.json>       the environment spec (the JSON body of POST /environments); - reads stdin

Options:
      --logs        also show the services' output (stdout `|`, stderr `!`)
      --server ADDR use the rigd at ADDR (host:port) instead of finding or starting one
                    (default: $RIG_SERVER_ADDR)
      --color WHEN  colour: auto (default; off when NO_COLOR is set), always or never
  -h, --help        show this help

The spec's \"dir\" defaults to the spec file's directory (relative values are taken from
there too), and \"host_env\" is filled from this shell's environment; values in the spec win.

rigd is found through $RIG_DIR (default ~/.rig) and started when none is running: $RIG_BINARY,
else the rigd next to rig, else rigd on PATH.

Exit status: 0 after a Ctrl-C teardown of an environment that was up, 1 when the environment
fails or rigd errs, 2 on a usage error, 130 when Ctrl-C came before the environment was up
or a second Ctrl-C cuts the teardown short.";

/// What `rig up` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Run with these options.
    Run(UpOptions),
    /// Print [`USAGE`].
    Help,
}

/// The options of `rig up`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpOptions {
    /// The spec file; `-` for standard input.
    pub spec: PathBuf,
    /// Show `service.log` output.
    pub logs: bool,
    /// `--server`: use this rigd.
    pub server: Option<String>,
    /// `--color`.
    pub color: ColorChoice,
}

/// Parses the arguments after `up`.
pub fn parse(mut args: Args) -> Result<Parsed, CliError> {
    let mut spec: Option<PathBuf> = None;
    let mut logs = false;
    let mut server = None;
    let mut color = ColorChoice::Auto;
    while let Some(arg) = args.next_arg()? {
        match arg {
            Arg::Positional(p) => {
                if let Some(first) = &spec {
                    return Err(CliError::usage(format!(
                        "unexpected argument {} (the spec file is already {}); rig up takes one spec file",
                        p.to_string_lossy(),
                        first.display()
                    )));
                }
                spec = Some(PathBuf::from(p));
            }
            Arg::Flag { name, inline_value } => match name.as_str() {
                n if is_help(n) => return Ok(Parsed::Help),
                "--logs" => {
                    Args::no_value(&name, inline_value)?;
                    logs = true;
                }
                "--server" => {
                    let value = args.value(&name, inline_value)?;
                    if value.trim().is_empty() {
                        return Err(CliError::usage(
                            "--server needs an address such as 127.0.0.1:41234",
                        ));
                    }
                    server = Some(value);
                }
                "--color" | "--colour" => {
                    let value = args.value(&name, inline_value)?;
                    color = value.parse().map_err(|_| {
                        CliError::usage(format!(
                            "invalid {name} value {value:?}: expected auto, always or never"
                        ))
                    })?;
                }
                _ => return Err(unknown_flag("up", &name)),
            },
        }
    }
    let spec = spec.ok_or_else(|| {
        CliError::usage("missing the spec file: rig up <spec.json> (see `rig up --help`)")
    })?;
    Ok(Parsed::Run(UpOptions {
        spec,
        logs,
        server,
        color,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(items: &[&str]) -> UpOptions {
        match parse(Args::new(items.iter().copied())).unwrap() {
            Parsed::Run(o) => o,
            Parsed::Help => panic!("unexpected help"),
        }
    }

    fn parse_err(items: &[&str]) -> CliError {
        parse(Args::new(items.iter().copied())).unwrap_err()
    }

    #[test]
    fn defaults() {
        assert_eq!(
            parse_ok(&["spec.json"]),
            UpOptions {
                spec: "spec.json".into(),
                logs: false,
                server: None,
                color: ColorChoice::Auto,
            }
        );
    }

    #[test]
    fn every_option_in_any_order() {
        let want = UpOptions {
            spec: "dir/spec.json".into(),
            logs: true,
            server: Some("127.0.0.1:4000".into()),
            color: ColorChoice::Never,
        };
        assert_eq!(
            parse_ok(&[
                "--logs",
                "dir/spec.json",
                "--server",
                "127.0.0.1:4000",
                "--color=never"
            ]),
            want
        );
        assert_eq!(
            parse_ok(&[
                "--color",
                "never",
                "--server=127.0.0.1:4000",
                "--logs",
                "--",
                "dir/spec.json"
            ]),
            want
        );
    }

    #[test]
    fn help_is_recognised_anywhere() {
        for args in [
            &["-h"][..],
            &["spec.json", "--help"],
            &["--help", "--bogus"],
        ] {
            assert_eq!(
                parse(Args::new(args.iter().copied())).unwrap(),
                Parsed::Help,
                "{args:?}"
            );
        }
    }

    #[test]
    fn usage_errors_say_what_to_fix() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "missing the spec file: rig up <spec.json> (see `rig up --help`)"),
            (&["a.json", "b.json"], "unexpected argument b.json (the spec file is already a.json); rig up takes one spec file"),
            (&["a.json", "--verbose"], "unknown option --verbose (see `rig up --help`)"),
            (&["a.json", "--server"], "--server needs a value"),
            (&["a.json", "--server="], "--server needs an address such as 127.0.0.1:41234"),
            (&["a.json", "--color", "blue"], "invalid --color value \"blue\": expected auto, always or never"),
            (&["a.json", "--logs=yes"], "--logs takes no value (got --logs=yes)"),
        ];
        for (args, want) in cases {
            let err = parse_err(args);
            assert_eq!(err.message(), *want, "{args:?}");
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }
}
