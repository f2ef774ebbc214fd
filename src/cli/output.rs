//! Terminal output: whether to colour, how to colour, and writing lines without dying on a
//! closed pipe.
//!
//! Colour follows `--color auto|always|never`. With `auto` (the default) it is on when stdout
//! is a terminal, unless `NO_COLOR` is set to a non-empty value (<https://no-color.org>) or
//! `TERM=dumb`. An explicit `--color always|never` beats both.

use std::ffi::OsStr;
use std::fmt;
use std::io::{IsTerminal, Write};
use std::str::FromStr;

use super::error::CliError;

/// The `--color` setting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ColorChoice {
    /// Colour when writing to a terminal and `NO_COLOR` is unset.
    #[default]
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

impl FromStr for ColorChoice {
    type Err = CliError;

    fn from_str(s: &str) -> Result<ColorChoice, CliError> {
        match s {
            "auto" => Ok(ColorChoice::Auto),
            "always" => Ok(ColorChoice::Always),
            "never" => Ok(ColorChoice::Never),
            other => Err(CliError::usage(format!(
                "invalid --color value {other:?}: expected auto, always or never"
            ))),
        }
    }
}

impl ColorChoice {
    /// Decides whether to colour, given `NO_COLOR`, `TERM` and whether the output is a
    /// terminal.
    pub fn enabled(self, no_color: Option<&OsStr>, term: Option<&OsStr>, is_tty: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                let no_color = no_color.is_some_and(|v| !v.is_empty());
                let dumb = term.is_some_and(|t| t == "dumb");
                is_tty && !no_color && !dumb
            }
        }
    }

    /// Decides whether to colour standard output, reading the process environment.
    pub fn enabled_for_stdout(self) -> bool {
        self.enabled(
            std::env::var_os("NO_COLOR").as_deref(),
            std::env::var_os("TERM").as_deref(),
            std::io::stdout().is_terminal(),
        )
    }
}

/// A colour or text attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paint {
    /// Bold text.
    Bold,
    /// Dim text, for secondary detail.
    Dim,
    /// Green: success.
    Green,
    /// Yellow: warnings, 4xx.
    Yellow,
    /// Red: failures, 5xx.
    Red,
    /// Cyan: methods and protocols.
    Cyan,
    /// A 24-bit colour.
    Rgb(u8, u8, u8),
}

impl Paint {
    fn sgr(self) -> String {
        match self {
            Paint::Bold => "1".into(),
            Paint::Dim => "2".into(),
            Paint::Green => "32".into(),
            Paint::Yellow => "33".into(),
            Paint::Red => "31".into(),
            Paint::Cyan => "36".into(),
            Paint::Rgb(r, g, b) => format!("38;2;{r};{g};{b}"),
        }
    }
}

/// Applies colours, or does nothing when colour is off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    color: bool,
}

impl Style {
    /// A style that colours when `color` is true.
    pub fn new(color: bool) -> Style {
        Style { color }
    }

    /// A style that never colours (tests, pipes).
    pub fn plain() -> Style {
        Style { color: false }
    }

    /// True when this style emits escape codes.
    pub fn is_colored(&self) -> bool {
        self.color
    }

    /// Output a service (or a test) wrote, made safe for this terminal: see
    /// [`terminal_safe`]; its colours are kept when this style colours.
    pub fn service_text<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        terminal_safe(text, self.color)
    }

    /// `text` wrapped in the escape codes for `paint`, or unchanged when colour is off.
    pub fn paint(&self, paint: Paint, text: &str) -> String {
        if self.color && !text.is_empty() {
            format!("\x1b[{}m{text}\x1b[0m", paint.sgr())
        } else {
            text.to_string()
        }
    }

    /// Colours an HTTP status: 2xx green, 3xx plain, 4xx yellow, 5xx red.
    pub fn http_status(&self, status: u16) -> String {
        let text = status.to_string();
        match status {
            200..=299 => self.paint(Paint::Green, &text),
            400..=499 => self.paint(Paint::Yellow, &text),
            500..=599 => self.paint(Paint::Red, &text),
            _ => text,
        }
    }
}

/// Service colours in order of first appearance ([`service_color`]): a service keeps its
/// colour for the whole output. Shared by `rig traffic`, `rig logs` and `rig up`.
#[derive(Debug, Default)]
pub struct ServiceColors(std::collections::HashMap<String, Paint>);

impl ServiceColors {
    /// The colour of `name`.
    pub fn of(&mut self, name: &str) -> Paint {
        let next = self.0.len();
        *self
            .0
            .entry(name.to_string())
            .or_insert_with(|| service_color(next))
    }
}

/// The colour of the `index`-th service to appear: hues spread by the golden angle from 210°
/// (so neighbours differ and any number of services gets distinct colours), S = L = 0.65.
pub fn service_color(index: usize) -> Paint {
    // The golden angle keeps consecutive hues far apart without knowing the total count.
    let hue = (210.0 + 137.507_764 * index as f64) % 360.0;
    let (r, g, b) = hsl_to_rgb(hue, 0.65, 0.65);
    Paint::Rgb(r, g, b)
}

fn hsl_to_rgb(hue: f64, s: f64, l: f64) -> (u8, u8, u8) {
    let c = (1.0 - (2.0 * l - 1.0).abs()) * s;
    let h = hue / 60.0;
    let x = c * (1.0 - (h % 2.0 - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = l - c / 2.0;
    let to_byte = |v: f64| ((v + m) * 255.0).round().clamp(0.0, 255.0) as u8;
    (to_byte(r), to_byte(g), to_byte(b))
}

/// `text` padded with spaces to `width` characters (not bytes), so `→` and `—` align.
pub fn pad(text: &str, width: usize) -> String {
    let len = text.chars().count();
    let mut out = String::with_capacity(text.len() + width.saturating_sub(len));
    out.push_str(text);
    out.extend(std::iter::repeat_n(' ', width.saturating_sub(len)));
    out
}

/// Writes lines to standard output, ignoring write errors: a closed pipe (`rig up | head`)
/// must not abort a command that still has an environment to tear down.
#[derive(Debug, Default, Clone, Copy)]
pub struct Out;

impl Out {
    /// Prints one line.
    pub fn line(&self, text: impl fmt::Display) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{text}");
        let _ = stdout.flush();
    }

    /// Prints each line of `lines`.
    pub fn lines<I, T>(&self, lines: I)
    where
        I: IntoIterator<Item = T>,
        T: fmt::Display,
    {
        let mut stdout = std::io::stdout().lock();
        for line in lines {
            let _ = writeln!(stdout, "{line}");
        }
        let _ = stdout.flush();
    }
}

/// Prints a message to standard error, ignoring write errors.
pub fn eprint_line(text: impl fmt::Display) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// `text` as it can go to a terminal: colour codes (SGR, `ESC [ … m`) are kept when
/// `keep_colors` is set, with a reset at the end so a colour left on does not run into the
/// next line, and dropped otherwise; every other control character, and so every other
/// escape sequence (cursor moves, screen clears, window titles), is written as an escape
/// (`\r`, `\u{1b}`), so that output of a service can neither garble nor drive the terminal.
/// Tabs pass.
pub fn terminal_safe(text: &str, keep_colors: bool) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut colored = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if let Some(len) = sgr_len(rest) {
            if keep_colors {
                out.push_str(&rest[..len]);
                colored = true;
            }
            rest = &rest[len..];
            continue;
        }
        if c.is_control() && c != '\t' {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    if colored {
        out.push_str("\x1b[0m");
    }
    std::borrow::Cow::Owned(out)
}

/// `text` with its control characters escaped ([`push_escaped`]), so it takes one line and
/// sends the terminal no escape sequence.
pub fn one_line(text: String) -> String {
    if !text.chars().any(char::is_control) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    out
}

/// Writes control character `c` as an escape: `\n`, `\r`, `\t`, else `\u{..}`.
pub fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c => out.extend(c.escape_unicode()),
    }
}

/// The length of the SGR sequence (`ESC [ digits;... m`) `s` starts with, if it does.
fn sgr_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if !b.starts_with(b"\x1b[") {
        return None;
    }
    let params = b[2..]
        .iter()
        .take_while(|&&c| c.is_ascii_digit() || c == b';' || c == b':')
        .count();
    (b.get(2 + params) == Some(&b'm')).then_some(3 + params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_safe_keeps_or_drops_colours_and_escapes_everything_else() {
        assert!(matches!(
            terminal_safe("plain\ttext", true),
            std::borrow::Cow::Borrowed("plain\ttext")
        ));
        let text = "\x1b[1;31mred\x1b[m \x1b[38:5:2mx \x1b[H\x08\u{9b}";
        assert_eq!(
            terminal_safe(text, true),
            "\x1b[1;31mred\x1b[m \x1b[38:5:2mx \\u{1b}[H\\u{8}\\u{9b}\x1b[0m"
        );
        assert_eq!(terminal_safe(text, false), "red x \\u{1b}[H\\u{8}\\u{9b}");
        // An escape at the very end, or an unfinished colour code, is shown, not sent.
        assert_eq!(terminal_safe("a\x1b", true), "a\\u{1b}");
        assert_eq!(terminal_safe("\x1b[31", false), "\\u{1b}[31");
    }

    #[test]
    fn color_choice_parses_and_rejects_unknown() {
        assert_eq!("auto".parse::<ColorChoice>().unwrap(), ColorChoice::Auto);
        assert_eq!(
            "always".parse::<ColorChoice>().unwrap(),
            ColorChoice::Always
        );
        assert_eq!("never".parse::<ColorChoice>().unwrap(), ColorChoice::Never);
        let err = "yes".parse::<ColorChoice>().unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.message().contains("\"yes\""), "{err}");
    }

    #[test]
    fn auto_follows_tty_no_color_and_dumb_terminals() {
        let auto = ColorChoice::Auto;
        assert!(auto.enabled(None, None, true));
        assert!(!auto.enabled(None, None, false));
        assert!(!auto.enabled(Some(OsStr::new("1")), None, true));
        // An empty NO_COLOR does not disable colour (no-color.org).
        assert!(auto.enabled(Some(OsStr::new("")), None, true));
        assert!(!auto.enabled(None, Some(OsStr::new("dumb")), true));
        assert!(ColorChoice::Always.enabled(Some(OsStr::new("1")), None, false));
        assert!(!ColorChoice::Never.enabled(None, None, true));
    }

    #[test]
    fn paint_is_a_no_op_without_colour() {
        assert_eq!(Style::plain().paint(Paint::Red, "x"), "x");
        assert_eq!(Style::new(true).paint(Paint::Red, "x"), "\x1b[31mx\x1b[0m");
        assert_eq!(Style::new(true).http_status(503), "\x1b[31m503\x1b[0m");
        assert_eq!(Style::new(true).http_status(302), "302");
    }

    #[test]
    fn pad_counts_characters_not_bytes() {
        assert_eq!(pad("a→b", 5), "a→b  ");
        assert_eq!(pad("toolong", 3), "toolong");
    }

    #[test]
    fn service_colors_start_at_210_degrees_and_differ() {
        // 210°, S=L=0.65 is a light blue.
        assert_eq!(service_color(0), Paint::Rgb(108, 166, 224));
        assert_ne!(service_color(0), service_color(1));
        assert_ne!(service_color(1), service_color(2));
    }
}
