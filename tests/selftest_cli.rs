//! `greta selftest` ends with a one-line verdict a reader of the tail can trust.

use std::process::Command;

#[test]
fn selftest_ends_with_a_summary_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_greta"))
        .args(["selftest", "--backend", "cpu", "add", "argmax"])
        .output()
        .expect("run greta");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cases = stdout.lines().filter(|l| l.ends_with(" pass")).count();
    assert!(cases > 0, "{stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    assert_eq!(last, format!("{cases} passed, 0 failed"));
}
