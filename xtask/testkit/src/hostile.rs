//! The bad-input suites' helpers: run a command bounded in time (optionally as an
//! unprivileged user), judge its error, and give a test a small full file system.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Mode of a test's temporary directory: an unprivileged child must reach inside it.
pub const TEMP_MODE: u32 = 0o755;

/// The user an unprivileged child runs as, when the tests run as root.
const NOBODY: u32 = 65534;

/// How long one command may run.
const BOUND: Duration = Duration::from_secs(60);

/// What a command did.
#[derive(Debug)]
pub struct Run {
    /// The exit code, if it exited.
    pub code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

/// One bad-input case of a command: how to prepare its directory and what it must end in.
pub struct Case {
    /// Named in a failure.
    pub name: &'static str,
    /// Prepares the directory; returns the arguments.
    pub setup: fn(&Path) -> Vec<String>,
    /// What the command must end in.
    pub expect: Expect,
    /// Run as uid/gid 65534 when the tests run as root.
    pub unprivileged: bool,
}

/// Runs every case with `bin`, each in a fresh directory, and [`check`]s how it ended.
pub fn run_cases(bin: &str, cases: Vec<Case>) {
    for case in cases {
        let dir = tempfile::tempdir().expect("a temporary directory");
        chmod(dir.path(), TEMP_MODE);
        let args = (case.setup)(dir.path());
        let out = run(bin, &args, dir.path(), case.unprivileged);
        check(case.name, &out, &case.expect);
    }
}

/// The owned arguments of a command line.
pub fn args(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

/// `rest` under `dir`, as a command-line argument.
pub fn path_in(dir: &Path, rest: &str) -> String {
    dir.join(rest).display().to_string()
}

/// What a case must end in.
pub enum Expect {
    /// Exit code 2 and a usage message naming this flag (or text).
    Usage(&'static str),
    /// Exit code 1 and one line of error holding every one of these.
    Error(&'static [&'static str]),
}

/// Whether this process runs as root (judged by the owner of `/proc/self`).
pub fn euid_is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Sets `path`'s permission bits to `mode`.
pub fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Makes `dir` one the unprivileged child may read but not write.
pub fn read_only(dir: &Path) {
    chmod(dir, 0o555);
}

/// Runs `bin` with `args` in `dir`, killed (and the test failed) after 60 s. With
/// `unprivileged` and a root test process, the child runs as uid and gid 65534 (from a
/// copy of the binary its user can reach).
pub fn run(bin: &str, args: &[String], dir: &Path, unprivileged: bool) -> Run {
    run_with(bin, args, dir, unprivileged, None)
}

/// [`run`], with `stdin` written to the child's standard input when given.
pub fn run_with(
    bin: &str,
    args: &[String],
    dir: &Path,
    unprivileged: bool,
    stdin: Option<&[u8]>,
) -> Run {
    let mut cmd;
    if unprivileged && euid_is_root() {
        let copy = reachable_copy(bin, dir);
        cmd = Command::new(copy);
        cmd.uid(NOBODY).gid(NOBODY);
    } else {
        cmd = Command::new(bin);
    }
    cmd.args(args)
        .current_dir(dir)
        .env("RUST_BACKTRACE", "1")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn(&mut cmd).unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
    if let Some(input) = stdin {
        use std::io::Write;
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input).expect("write stdin");
    }
    // Drain both pipes on threads so a chatty child never blocks.
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > BOUND {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{bin} {args:?} still ran after {BOUND:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    use std::os::unix::process::ExitStatusExt;
    Run {
        code: status.code(),
        signal: status.signal(),
        stdout: out.join().expect("stdout thread"),
        stderr: err.join().expect("stderr thread"),
    }
}

/// A copy of `bin` in `dir/.bin`, which every user may enter (the build directory may not
/// be); it goes with the test's temporary directory.
/// Spawns `cmd`, retrying for up to 5 s while its executable is busy (`ETXTBSY`): a binary
/// a test has just copied can still be open for writing in a child that another test thread
/// forked meanwhile, until that child's `exec` closes it.
pub fn spawn(cmd: &mut Command) -> std::io::Result<std::process::Child> {
    let started = Instant::now();
    loop {
        match cmd.spawn() {
            Err(e)
                if e.kind() == std::io::ErrorKind::ExecutableFileBusy
                    && started.elapsed() < Duration::from_secs(5) =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

fn reachable_copy(bin: &str, dir: &Path) -> PathBuf {
    let dir = dir.join(".bin");
    std::fs::create_dir_all(&dir).expect("a directory for the binary");
    chmod(&dir, 0o755);
    let name = Path::new(bin).file_name().expect("a binary name");
    let copy = dir.join(name);
    if !copy.exists() {
        let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
        std::fs::copy(bin, &tmp).expect("copy the binary");
        chmod(&tmp, 0o755);
        std::fs::rename(&tmp, &copy).expect("place the binary");
    }
    copy
}

/// Panics unless the command ended as `expect` says: never a panic, a backtrace or a
/// signal; usage errors exit 2 naming the flag; other errors exit 1 with one line.
pub fn check(name: &str, out: &Run, expect: &Expect) {
    assert_eq!(out.signal, None, "{name}: killed by a signal: {out:?}");
    for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
        assert!(!out.stderr.contains(bad), "{name}: {bad}: {out:?}");
    }
    match expect {
        Expect::Usage(flag) => {
            assert_eq!(out.code, Some(2), "{name}: a usage error exits 2: {out:?}");
            assert!(
                out.stderr.contains(flag),
                "{name}: the message does not name `{flag}`: {out:?}"
            );
        }
        Expect::Error(parts) => {
            assert_eq!(out.code, Some(1), "{name}: an error exits 1: {out:?}");
            let lines: Vec<&str> = out
                .stderr
                .lines()
                .filter(|l| !l.trim().is_empty())
                .collect();
            assert_eq!(lines.len(), 1, "{name}: not one line of error: {out:?}");
            for part in *parts {
                assert!(
                    lines[0].contains(part),
                    "{name}: the error does not name `{part}`: {out:?}"
                );
            }
        }
    }
}

/// A small tmpfs mounted on a temporary directory, unmounted when dropped.
struct Mount {
    dir: tempfile::TempDir,
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn mount_tmpfs(size: &str) -> Result<Mount, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let out = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0755"),
            "tmpfs",
        ])
        .arg(dir.path())
        .output()
        .map_err(|e| format!("run mount: {e}"))?;
    if out.status.success() {
        Ok(Mount { dir })
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

const INNER: &str = "MQ_HOSTILE_FULL_DISK_INNER";

/// Runs `body` on a directory of a tmpfs of `size` bytes (`64k`, `1m`). As root, mounts it
/// here; otherwise re-runs the test `test` inside a user and mount namespace where the
/// test is root. Fails, saying how to run it, when neither works.
pub fn full_disk(test: &str, size: &str, body: impl FnOnce(&Path)) {
    let inner = std::env::var_os(INNER).is_some();
    if inner || euid_is_root() {
        match mount_tmpfs(size) {
            Ok(mount) => {
                body(mount.dir.path());
                return;
            }
            Err(e) if inner => panic!("mount -t tmpfs in a user namespace failed: {e}"),
            Err(e) => eprintln!("mount -t tmpfs as root failed ({e}); trying unshare"),
        }
    }
    let exe = std::env::current_exe().expect("the test binary");
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount"])
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(INNER, "1")
        .output();
    match out {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains("1 passed"),
                "the test did not run inside unshare: {text}"
            );
            eprint!("{}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(out) => panic!(
            "the full-disk test failed inside `unshare --user --map-root-user --mount`: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!(
            "a full disk needs a small tmpfs: run the tests as root (mount -t tmpfs), or \
             install util-linux's unshare and allow unprivileged user namespaces \
             (unshare --user --map-root-user --mount): {e}"
        ),
    }
}
