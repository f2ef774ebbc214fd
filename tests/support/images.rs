//! Local Docker images for tests. Nothing can be pulled from a registry on these machines,
//! so images are made with `docker import` from a root filesystem of host binaries and the
//! shared libraries they load (found with `ldd`).
//!
//! [`image_from_host`] builds an image once per content (the tag carries a hash of the files,
//! so an unchanged image is reused across test runs and test binaries); [`busybox`] is the
//! usual base: a static busybox with its applets linked into `/bin`.

use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// Busybox applets linked into `/bin` of [`busybox`].
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "sleep", "httpd", "nc", "ls", "mkdir", "env", "wget", "true", "false",
    "kill", "ps", "printf", "test", "grep",
];

/// Serialises image builds of one test binary (tests run on parallel threads).
static BUILDS: Mutex<()> = Mutex::new(());

/// A file to put into an image.
pub struct ImageFile<'a> {
    /// Where it comes from on the host.
    pub host: &'a Path,
    /// Its absolute path inside the image.
    pub path: &'a str,
}

/// True when the Docker engine answers (`docker info`).
pub fn docker_available() -> bool {
    Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// An image `<name>:<content hash>` holding `files`, their shared libraries, and `symlinks`
/// (`(link path, target)`), with `/tmp`. Built with `docker import` unless it already exists.
/// Returns the image reference.
pub fn image_from_host(name: &str, files: &[ImageFile<'_>], symlinks: &[(&str, &str)]) -> String {
    let mut all: Vec<(PathBuf, String)> = files
        .iter()
        .map(|f| (f.host.to_path_buf(), f.path.to_string()))
        .collect();
    let mut libs = BTreeSet::new();
    for f in files {
        libs.extend(shared_libraries(f.host));
    }
    all.extend(libs.into_iter().map(|lib| {
        let inside = lib.to_string_lossy().into_owned();
        (lib, inside)
    }));

    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for (host, inside) in &all {
        inside.hash(&mut hasher);
        std::fs::read(host)
            .unwrap_or_else(|e| panic!("read {} for image {name}: {e}", host.display()))
            .hash(&mut hasher);
    }
    symlinks.hash(&mut hasher);
    let reference = format!("{name}:{:016x}", hasher.finish());

    let _one_at_a_time = BUILDS.lock().unwrap_or_else(|e| e.into_inner());
    if image_exists(&reference) {
        return reference;
    }
    let root = tempfile::tempdir().expect("a directory for the image's root filesystem");
    for (host, inside) in &all {
        let dest = root.path().join(inside.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().expect("a parent")).expect("create directories");
        std::fs::copy(host, &dest)
            .unwrap_or_else(|e| panic!("copy {} into the image: {e}", host.display()));
    }
    for (link, target) in symlinks {
        let dest = root.path().join(link.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().expect("a parent")).expect("create directories");
        std::os::unix::fs::symlink(target, &dest).expect("create a symlink");
    }
    std::fs::create_dir_all(root.path().join("tmp")).expect("create /tmp");

    let tar = Command::new("tar")
        .arg("-C")
        .arg(root.path())
        .args(["-cf", "-", "."])
        .stdout(Stdio::piped())
        .output()
        .expect("run tar");
    assert!(tar.status.success(), "tar of the image root failed");
    let mut import = Command::new("docker")
        .args(["import", "-", &reference])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run docker import");
    import
        .stdin
        .take()
        .expect("docker import's stdin")
        .write_all(&tar.stdout)
        .expect("feed docker import");
    let out = import.wait_with_output().expect("wait for docker import");
    assert!(
        out.status.success(),
        "docker import {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    reference
}

/// A busybox image (`rig-test/busybox:<hash>`): `/bin/busybox` (static) and its applets in
/// `/bin`, so `sh`, `httpd`, `nc`, `sleep`... work.
pub fn busybox() -> String {
    let host = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .expect("busybox is installed (scripts/install-test-deps.sh installs busybox-static)");
    let links: Vec<(String, &str)> = APPLETS
        .iter()
        .map(|a| (format!("/bin/{a}"), "busybox"))
        .collect();
    let links: Vec<(&str, &str)> = links.iter().map(|(l, t)| (l.as_str(), *t)).collect();
    image_from_host(
        "rig-test/busybox",
        &[ImageFile {
            host,
            path: "/bin/busybox",
        }],
        &links,
    )
}

fn image_exists(reference: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", reference])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The shared libraries `binary` loads (absolute paths), from `ldd`; none for static ones.
fn shared_libraries(binary: &Path) -> Vec<PathBuf> {
    let Ok(out) = Command::new("ldd").arg(binary).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            // `libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)` or
            // `/lib64/ld-linux-x86-64.so.2 (0x...)`; vdso has no file.
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// Ids of the containers (running or not) whose label `key` equals `value`.
pub fn containers_labelled(key: &str, value: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--no-trunc", "--filter"])
        .arg(format!("label={key}={value}"))
        .output()
        .expect("run docker ps");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}
