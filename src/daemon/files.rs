//! The rig directory and the addr file.
//!
//! The addr file holds rigd's listen address (`127.0.0.1:45123`, no trailing newline). SDKs
//! and the CLI read it to find a running rigd, so it is written atomically (`<file>.tmp`, then
//! a rename over the file): a reader sees either no file or the whole address. It is removed
//! when rigd exits. Files and directories rigd creates are owner-only (architecture section 8).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Creates `dir` (and its parents) owner-only if it does not exist yet.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Writes `addr` to `path` atomically, readable by the owner only.
pub(crate) fn write_addr_file(path: &Path, addr: &str) -> io::Result<()> {
    let tmp = tmp_path(path);
    let result = write_new(&tmp, addr.as_bytes()).and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes the addr file; a file that is already gone is fine.
pub(crate) fn remove_addr_file(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

fn write_new(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("rigd-files-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn addr_file_is_written_atomically_without_newline_and_removed() {
        let dir = scratch("addr");
        create_private_dir(&dir).unwrap();
        let file = dir.join("rigd.addr");
        write_addr_file(&file, "127.0.0.1:4000").unwrap();
        assert_eq!(fs::read_to_string(&file).unwrap(), "127.0.0.1:4000");
        assert!(!tmp_path(&file).exists());
        // Overwrites an existing file.
        write_addr_file(&file, "127.0.0.1:5000").unwrap();
        assert_eq!(fs::read_to_string(&file).unwrap(), "127.0.0.1:5000");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let mode = fs::metadata(&dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        remove_addr_file(&file).unwrap();
        assert!(!file.exists());
        remove_addr_file(&file).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn write_into_a_missing_directory_fails_and_leaves_no_tmp() {
        let dir = scratch("missing");
        let file = dir.join("rigd.addr");
        assert!(write_addr_file(&file, "x").is_err());
        assert!(!tmp_path(&file).exists());
    }
}
