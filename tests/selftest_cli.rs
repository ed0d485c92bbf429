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

/// Every case of every built-in kernel passes on the CPU backend at both wave sizes: wave
/// 64 executes gfx942's fragment layouts and wave 32 sm_90's.
#[test]
fn every_selftest_case_passes_on_the_cpu_backend_at_wave_64_and_32() {
    let expected = greta::selftest::cases().len();
    for wave in ["64", "32"] {
        let out = Command::new(env!("CARGO_BIN_EXE_greta"))
            .args(["selftest", "--backend", "cpu", "--wave", wave])
            .output()
            .expect("run greta");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "wave {wave}:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let last = stdout.lines().last().unwrap_or_default();
        assert_eq!(last, format!("{expected} passed, 0 failed"), "wave {wave}");
        let rows = stdout
            .lines()
            .filter(|l| l.split_whitespace().nth_back(4) == Some(wave))
            .count();
        assert!(
            rows >= expected,
            "wave {wave}: {rows} rows at this wave of {expected} cases\n{stdout}"
        );
    }
}
