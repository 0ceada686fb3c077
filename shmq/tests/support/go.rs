//! Building the Go original's interop driver (tests and the bench share it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

const ORIGINAL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/originals/shqueue-go"
);
const DRIVER_SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/go/driver/main.go");
const X_SYS: &str = "/usr/share/gocode/src/golang.org/x/sys/unix";

pub fn run(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn have_go() -> bool {
    Command::new("go")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        && Path::new(X_SYS).is_dir()
}

/// Installs Go and x/sys from Debian if needed (once per process; apt serialises processes).
pub fn install_go() {
    if have_go() {
        return;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    assert!(
        root,
        "the Go interop tests need `go` and golang.org/x/sys: run `apt-get install golang-go golang-golang-x-sys-dev` (as root)"
    );
    run(
        Command::new("apt-get").args(["update", "-q"]),
        "apt-get update",
    );
    run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args([
                "install",
                "-y",
                "-q",
                "-o",
                "DPkg::Lock::Timeout=600",
                "golang-go",
                "golang-golang-x-sys-dev",
            ]),
        "apt-get install golang-go golang-golang-x-sys-dev",
    );
    assert!(have_go(), "go is still missing after apt-get install");
}

/// Builds the driver against the original, offline; cached under the target directory.
pub fn driver(install: bool) -> &'static Path {
    static DRIVER: OnceLock<PathBuf> = OnceLock::new();
    DRIVER.get_or_init(|| {
        let original = Path::new(ORIGINAL);
        assert!(
            original.join("shqueue/queue.go").is_file(),
            "the Go original is expected at {} (the project's shared folder beside the repository)",
            original.display()
        );
        if install {
            install_go();
        }
        let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("shmq-go");
        let parent = work.join("gopath/src/github.com/rdjjke");
        std::fs::create_dir_all(&parent).unwrap();
        let link = parent.join("shqueue-go");
        let target = original.canonicalize().unwrap();
        if std::fs::read_link(&link).ok() != Some(target.clone()) {
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&target, &link).unwrap();
        }
        let bin = work.join("driver");
        run(
            Command::new("go")
                .args(["build", "-o"])
                .arg(&bin)
                .arg(DRIVER_SRC)
                .env("GO111MODULE", "off")
                .env(
                    "GOPATH",
                    format!("{}:/usr/share/gocode", work.join("gopath").display()),
                )
                .env("GOCACHE", work.join("cache"))
                .env("GOPROXY", "off")
                .env("GOTOOLCHAIN", "local")
                .env("GOFLAGS", ""),
            "go build of the interop driver",
        );
        bin
    })
}
