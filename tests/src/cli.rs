//! Running the `yui` command as an administrator would: to completion, with
//! its output, on a data directory of its own. Finding the binary cargo built
//! next to the test or bench that runs is here too.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The `yui` binary cargo built along with the running test or bench
/// (`target/<profile>/yui`, next to the `deps` folder this binary is in),
/// if it is there.
pub fn built_yui() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // target/<profile>/deps/NAME-HASH → target/<profile>/yui
    let bin = exe.parent()?.parent()?.join("yui");
    bin.exists().then_some(bin)
}

/// The `yui` binary built by `cargo test` (target/<profile>/yui).
pub fn yui_bin() -> PathBuf {
    built_yui().unwrap_or_else(|| {
        panic!("the yui binary is missing: run the tests with `cargo test --workspace`, which builds it")
    })
}

/// Runs `yui --data-dir DIR ARGS…` to completion.
pub fn yui(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(yui_bin())
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("YUI_DATA_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("run yui")
}

/// Runs `yui --data-dir DIR ARGS…` with `input` on standard input (not a
/// terminal, so the password is read from its first line).
pub fn yui_with_stdin(data_dir: &Path, args: &[&str], input: &str) -> Output {
    let mut child = Command::new(yui_bin())
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("YUI_DATA_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn yui");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

/// Runs a command and insists it succeeds; returns its stdout.
pub fn yui_ok(data_dir: &Path, args: &[&str]) -> String {
    let out = yui(data_dir, args);
    assert!(
        out.status.success(),
        "yui {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command that must fail; returns its stderr.
pub fn yui_fails(data_dir: &Path, args: &[&str]) -> String {
    let out = yui(data_dir, args);
    assert!(
        !out.status.success(),
        "yui {args:?} should have failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Where a test keeps a backup: `root/backups/NAME`, in a directory `yui
/// backup` creates (mode 0700), as it writes only into a private directory.
pub fn backup_file(root: &Path, name: &str) -> PathBuf {
    root.join("backups").join(name)
}

/// `yui init --town TOWN`.
pub fn init(data_dir: &Path, town: &str) {
    yui_ok(data_dir, &["init", "--town", town]);
}

/// The permission bits of a file.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}
