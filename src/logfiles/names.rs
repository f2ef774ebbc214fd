//! File names of an environment's log files: `<sanitised name>-<id>.jsonl` and `.log`.
//!
//! The `rig` CLI (ours and upstream's) finds log files by the environment name inside the file
//! name, so the name is kept recognisable: only `/`, `\` and space become `_`, as upstream does,
//! plus control characters (a NUL byte cannot be in a file name at all).

/// Extension of the machine-readable log.
pub const JSONL_EXTENSION: &str = "jsonl";

/// Extension of the human-readable timeline.
pub const PRETTY_EXTENSION: &str = "log";

/// The longest sanitised name kept in a file name, in bytes. With the id (`-` plus about 20
/// characters) and the extension, the file name stays well below the 255-byte limit of common
/// file systems however long the environment name is.
const MAX_NAME_BYTES: usize = 200;

/// The environment name with `/`, `\`, space (upstream's rule) and control characters
/// replaced by `_`, cut to at most 200 bytes at a character boundary.
pub fn sanitize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len().min(MAX_NAME_BYTES));
    for c in name.chars() {
        let c = match c {
            '/' | '\\' | ' ' => '_',
            c if c.is_control() => '_',
            other => other,
        };
        if out.len() + c.len_utf8() > MAX_NAME_BYTES {
            break;
        }
        out.push(c);
    }
    out
}

/// The base name shared by both files: `<sanitised name>-<id>`.
pub fn base_name(name: &str, id: &str) -> String {
    format!("{}-{}", sanitize_name(name), sanitize_name(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_and_spaces_become_underscores() {
        assert_eq!(
            base_name("TestOrderFlow/Go sub\\x", "19ca39c1dce-be7097ab"),
            "TestOrderFlow_Go_sub_x-19ca39c1dce-be7097ab"
        );
        // Everything else is kept, including dots, so `..` cannot climb out of the directory.
        assert_eq!(base_name("../etc", "1-2"), ".._etc-1-2");
        assert_eq!(base_name("", "1-2"), "-1-2");
    }

    #[test]
    fn control_characters_cannot_reach_the_file_name() {
        assert_eq!(sanitize_name("a\0b\nc\u{7f}"), "a_b_c_");
    }

    #[test]
    fn long_names_are_cut_at_a_character_boundary() {
        let name = "é".repeat(300);
        let cut = sanitize_name(&name);
        assert_eq!(cut.len(), MAX_NAME_BYTES);
        assert!(cut.chars().all(|c| c == 'é'));
        let odd = format!("a{}", "é".repeat(300));
        assert_eq!(sanitize_name(&odd).len(), MAX_NAME_BYTES - 1);
    }
}
