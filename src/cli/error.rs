//! How a `rig` command fails, and the exit status each failure maps to.

use std::fmt;

/// Exit status of a successful command.
pub const EXIT_OK: i32 = 0;
/// Exit status of a command that failed (bad input file, rigd error, environment failure).
pub const EXIT_FAILURE: i32 = 1;
/// Exit status of a command line that could not be parsed.
pub const EXIT_USAGE: i32 = 2;
/// Exit status after a second Ctrl-C cut a teardown short (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: i32 = 130;

/// A command's failure. The variant decides the exit status; the text is printed after a
/// `rig <command>: ` prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// The command line is wrong; exit status [`EXIT_USAGE`] with a pointer to `--help`.
    Usage(String),
    /// The command ran and failed; exit status [`EXIT_FAILURE`].
    Failed(String),
}

impl CliError {
    /// A usage error with the given message.
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError::Usage(message.into())
    }

    /// A failure with the given message.
    pub fn failed(message: impl Into<String>) -> CliError {
        CliError::Failed(message.into())
    }

    /// The exit status this error maps to.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Failed(_) => EXIT_FAILURE,
        }
    }

    /// The message without any prefix.
    pub fn message(&self) -> &str {
        match self {
            CliError::Usage(m) | CliError::Failed(m) => m,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for CliError {}

/// The outcome of a command: an exit status on success (a command may succeed in running and
/// still report a non-zero status, e.g. `rig up` when the environment fails), or an error.
pub type CmdResult = Result<i32, CliError>;
