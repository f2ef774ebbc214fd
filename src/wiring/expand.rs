//! `$NAME` / `${NAME}` expansion with Go's `os.Expand` semantics, byte for byte, but for one
//! addition: `$$` is a literal `$`.
//!
//! Used for service `args`, container `cmd` and (through [`super::attributes`]) endpoint
//! attribute templates. The rules, taken from Go's `os.Expand`/`getShellName`:
//!
//! - `$$` is a literal `$`, so that an argument can carry one to a shell
//!   (`sh -c 'echo $$HOME'` gives the shell `echo $HOME`). Go reads `$$` as the variable
//!   `$`, which is never set, so upstream has no way to write a `$` that is followed by a
//!   name; docker compose uses the same escape.
//! - `${NAME}` reads everything up to the first `}` as the name (spaces included).
//! - `$NAME` reads the longest run of `[A-Za-z0-9_]`.
//! - A single special character after `$` is a name on its own: one of `*#$@!?-` or a digit
//!   (`$12` is `$1` followed by `2`). The same holds in `${x}` form when `x` is one special
//!   character immediately followed by `}`.
//! - `${}` is swallowed and produces nothing; an unterminated `${` swallows those two
//!   characters and keeps the rest.
//! - A `$` followed by a character that cannot start a name is kept literally, as is a
//!   trailing lone `$`.

use std::collections::BTreeMap;

/// Expands `$NAME` and `${NAME}` in `s`, asking `lookup` for each name in order of
/// appearance, and `$$` to `$`. A name `lookup` does not know (`None`) expands to the empty
/// string.
///
/// Strings without a `$` are returned unchanged without calling `lookup`.
pub fn expand(s: &str, mut lookup: impl FnMut(&str) -> Option<String>) -> String {
    let bytes = s.as_bytes();
    let mut out: Option<String> = None;
    // Start of the literal run not yet copied to `out`.
    let mut copied = 0;
    let mut j = 0;
    while j < bytes.len() {
        if bytes[j] == b'$' && j + 1 < bytes.len() {
            let buf = out.get_or_insert_with(|| String::with_capacity(2 * s.len()));
            buf.push_str(&s[copied..j]);
            let (name, width) = match bytes[j + 1] {
                b'$' => (None, 1),
                _ => shell_name(&s[j + 1..]),
            };
            match name {
                // `$$`: the escaped dollar.
                None if bytes[j + 1] == b'$' => buf.push('$'),
                // Bad syntax (`${}` or an unterminated `${`): the characters are eaten.
                None if width > 0 => {}
                // `$` not followed by a name: keep the dollar.
                None => buf.push('$'),
                Some(name) => {
                    if let Some(value) = lookup(name) {
                        buf.push_str(&value);
                    }
                }
            }
            j += width;
            copied = j + 1;
        }
        j += 1;
    }
    match out {
        None => s.to_string(),
        Some(mut buf) => {
            buf.push_str(&s[copied.min(s.len())..]);
            buf
        }
    }
}

/// Expands one template against `vars`; unknown names expand to `""` (upstream
/// `ExpandTemplate`).
pub fn expand_template(template: &str, vars: &BTreeMap<String, String>) -> String {
    expand(template, |name| vars.get(name).cloned())
}

/// Expands every template against `vars`; unknown names expand to `""` (upstream
/// `ExpandTemplates`). An empty list gives an empty list (upstream's `nil`).
pub fn expand_templates(templates: &[String], vars: &BTreeMap<String, String>) -> Vec<String> {
    templates.iter().map(|t| expand_template(t, vars)).collect()
}

/// Warnings for the names in `templates` that `vars` does not hold, which expand to nothing:
/// almost always a typo (`$PROT`) or a `$` meant for a shell that needs `$$`. One line per
/// template and name, naming the template as `{what}[i]`.
pub fn unset_names(
    what: &str,
    templates: &[String],
    vars: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut warnings = Vec::new();
    for (i, template) in templates.iter().enumerate() {
        let mut unset: Vec<String> = Vec::new();
        expand(template, |name| {
            if !vars.contains_key(name) && !unset.iter().any(|seen| seen == name) {
                unset.push(name.to_string());
            }
            None
        });
        warnings.extend(unset.into_iter().map(|name| {
            format!(
                "{what}[{i}] {template:?}: ${name} is not set for this service, so it expands \
                 to nothing; check the spelling, or write $$ for a literal $"
            )
        }));
    }
    warnings
}

/// Go's `isShellSpecialVar`.
fn is_special(c: u8) -> bool {
    matches!(
        c,
        b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-' | b'0'..=b'9'
    )
}

/// Go's `isAlphaNum`.
fn is_name_byte(c: u8) -> bool {
    c == b'_' || c.is_ascii_alphanumeric()
}

/// Go's `getShellName`: the name starting at `s` (the text after a `$`, never empty) and the
/// number of bytes it consumed. `(None, w > 0)` is bad syntax whose `w` bytes are eaten;
/// `(None, 0)` means the `$` was not followed by a name.
///
/// Every slice boundary falls next to an ASCII byte, so slicing the `str` cannot split a
/// multi-byte character.
fn shell_name(s: &str) -> (Option<&str>, usize) {
    let b = s.as_bytes();
    if b[0] == b'{' {
        if b.len() > 2 && is_special(b[1]) && b[2] == b'}' {
            return (Some(&s[1..2]), 3);
        }
        return match b.iter().skip(1).position(|&c| c == b'}') {
            Some(0) => (None, 2),                   // `${}`
            Some(i) => (Some(&s[1..i + 1]), i + 2), // `${name}`
            None => (None, 1),                      // unterminated `${`
        };
    }
    if is_special(b[0]) {
        return (Some(&s[..1]), 1);
    }
    let len = b.iter().take_while(|&&c| is_name_byte(c)).count();
    if len == 0 {
        (None, 0)
    } else {
        (Some(&s[..len]), len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Expands against a lookup that renders every name as `<name>`, to show exactly which
    /// names were parsed.
    fn show(s: &str) -> String {
        expand(s, |name| Some(format!("<{name}>")))
    }

    // Upstream TestExpandTemplates.
    #[test]
    fn expand_templates_braced_and_bare_forms() {
        let attrs = vars(&[
            ("RIG_TEMP_DIR", "/tmp/rig/abc/order-service"),
            ("PORT", "8080"),
            ("HOST", "127.0.0.1"),
        ]);
        let templates: Vec<String> = [
            "-c",
            "${RIG_TEMP_DIR}/config.json",
            "--port",
            "${PORT}",
            "--host",
            "$HOST",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            expand_templates(&templates, &attrs),
            [
                "-c",
                "/tmp/rig/abc/order-service/config.json",
                "--port",
                "8080",
                "--host",
                "127.0.0.1"
            ]
        );
    }

    // Upstream TestExpandTemplates_Empty.
    #[test]
    fn unset_names_are_named_once_per_template_and_escapes_are_not() {
        let vars = vars(&[("PORT", "8080")]);
        let args = [
            "--port=${PORT}".to_string(),
            "--port=$PROT,$PROT".to_string(),
            "$$HOME".to_string(),
            "${MISSING}".to_string(),
        ];
        assert_eq!(
            unset_names("args", &args, &vars),
            [
                "args[1] \"--port=$PROT,$PROT\": $PROT is not set for this service, so it \
                 expands to nothing; check the spelling, or write $$ for a literal $",
                "args[3] \"${MISSING}\": $MISSING is not set for this service, so it expands \
                 to nothing; check the spelling, or write $$ for a literal $",
            ]
        );
        assert!(unset_names("args", &args[..1], &vars).is_empty());
    }

    #[test]
    fn expand_templates_empty_gives_empty() {
        assert!(expand_templates(&[], &vars(&[("FOO", "bar")])).is_empty());
    }

    // Upstream TestExpandTemplates_UnknownVarBecomesEmpty.
    #[test]
    fn unknown_variable_becomes_empty() {
        assert_eq!(
            expand_templates(&["${UNKNOWN_VAR}".to_string()], &BTreeMap::new()),
            [""]
        );
        assert_eq!(expand_template("a$NOPE-b", &BTreeMap::new()), "a-b");
    }

    // Upstream TestExpandTemplate_Single.
    #[test]
    fn expand_template_single() {
        let attrs = vars(&[("RIG_TEMP_DIR", "/tmp/test")]);
        assert_eq!(
            expand_template("${RIG_TEMP_DIR}/output.json", &attrs),
            "/tmp/test/output.json"
        );
    }

    #[test]
    fn braced_name_reads_to_first_closing_brace() {
        assert_eq!(show("${A}"), "<A>");
        assert_eq!(show("x${A B}y"), "x<A B>y");
        assert_eq!(show("${A}}"), "<A>}");
        assert_eq!(show("${a-b.c}"), "<a-b.c>");
        assert_eq!(show("${{}"), "<{>");
    }

    #[test]
    fn bare_name_is_longest_alphanumeric_run() {
        assert_eq!(show("$HOST:$PORT"), "<HOST>:<PORT>");
        assert_eq!(show("$RIG_TEMP_DIR/x"), "<RIG_TEMP_DIR>/x");
        assert_eq!(show("$a1_b2.c"), "<a1_b2>.c");
        assert_eq!(show("$_"), "<_>");
    }

    #[test]
    fn special_single_character_names() {
        for c in ['*', '#', '@', '!', '?', '-'] {
            assert_eq!(show(&format!("${c}x")), format!("<{c}>x"), "bare ${c}");
            assert_eq!(
                show(&format!("${{{c}}}x")),
                format!("<{c}>x"),
                "braced ${c}"
            );
        }
        assert_eq!(show("$12"), "<1>2");
        assert_eq!(show("${1}2"), "<1>2");
        assert_eq!(show("${$}x"), "<$>x");
        // More than one character in braces is read up to the brace as usual.
        assert_eq!(show("${12}"), "<12>");
        assert_eq!(show("${-x}"), "<-x>");
    }

    /// `$$` is a literal dollar (Go reads it as the variable `$`), whatever follows it.
    #[test]
    fn a_doubled_dollar_is_a_literal_dollar() {
        assert_eq!(show("$$HOME"), "$HOME");
        assert_eq!(show("$$$HOME"), "$<HOME>");
        assert_eq!(show("$$$$"), "$$");
        assert_eq!(show("$$$"), "$$");
        assert_eq!(show("a$${X}"), "a${X}");
        assert_eq!(
            show("i=0; while [ $$i -lt $N ]"),
            "i=0; while [ $i -lt <N> ]"
        );
        // Without a `$` nothing is looked up; with only escapes, nothing either.
        let mut asked = Vec::new();
        let out = expand("cost: $$5", |name| {
            asked.push(name.to_string());
            None
        });
        assert_eq!((out.as_str(), asked.len()), ("cost: $5", 0));
    }

    #[test]
    fn empty_braces_are_swallowed() {
        assert_eq!(show("a${}b"), "ab");
        assert_eq!(show("${}"), "");
    }

    #[test]
    fn unterminated_brace_swallows_two_characters() {
        assert_eq!(show("a${b"), "ab");
        assert_eq!(show("${HOST"), "HOST");
        assert_eq!(show("x${"), "x");
    }

    #[test]
    fn dollar_without_a_name_is_kept() {
        assert_eq!(show("a$ b"), "a$ b");
        assert_eq!(show("$/x"), "$/x");
        assert_eq!(show("cost: 5$"), "cost: 5$");
        assert_eq!(show("$"), "$");
        assert_eq!(show("$é"), "$é");
        assert_eq!(show("$.$HOST"), "$.<HOST>");
    }

    #[test]
    fn no_dollar_returns_input_without_lookups() {
        let mut calls = 0;
        let out = expand("plain text ünïcode", |_| {
            calls += 1;
            None
        });
        assert_eq!(out, "plain text ünïcode");
        assert_eq!(calls, 0);
    }

    #[test]
    fn multibyte_text_around_names_is_preserved() {
        assert_eq!(show("ä$Xö${Y}ü"), "ä<X>ö<Y>ü");
        assert_eq!(show("${ü}"), "<ü>");
    }

    #[test]
    fn lookup_sees_names_in_order() {
        let mut seen = Vec::new();
        expand("$A ${B} $1 ${C", |n| {
            seen.push(n.to_string());
            None
        });
        assert_eq!(seen, ["A", "B", "1"]);
    }
}
