//! The `llama2` command against hostile input: crafted counts in files of many gigabytes
//! (made sparse, so they cost no disk) under an address-space limit, special files given as
//! the model, out-of-range flags and prompts longer than the context. Each must end in a
//! clear error, quickly, never in an abort or a hang.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use greta_gguf::raw::Raw;

const GIB: u64 = 1 << 30;

/// Runs `llama2 args...` with its address space limited to `limit` bytes (when given),
/// killing it after `timeout`; returns its output and how long it ran.
fn llama2(args: &[&str], limit: Option<u64>, timeout: Duration) -> (Output, Duration) {
    let bin = env!("CARGO_BIN_EXE_llama2");
    let mut cmd = match limit {
        Some(bytes) => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!("ulimit -v {} && exec \"$0\" \"$@\"", bytes / 1024))
                .arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let start = Instant::now();
    let mut child = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn llama2");
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > timeout {
            child.kill().ok();
            panic!("llama2 {args:?} still running after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (child.wait_with_output().expect("output"), start.elapsed())
}

/// Asserts a clean failure (exit status 1 or 2, not a signal or an abort) whose message
/// contains every one of `needles`.
fn assert_refused(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        matches!(out.status.code(), Some(1 | 2)),
        "expected a clean error, got {:?}: {stderr}",
        out.status
    );
    for n in needles {
        assert!(stderr.contains(n), "`{n}` missing from: {stderr}");
    }
}

/// Writes `head` and extends the file with zeros to `len` bytes without using disk.
fn sparse_file(dir: &Path, name: &str, head: &[u8], len: u64) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, head).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(len))
        .unwrap();
    path
}

fn run_model(path: &Path) -> Vec<String> {
    ["run", "--backend", "cpu", "-n", "1", "--model"]
        .iter()
        .map(|s| s.to_string())
        .chain([path.display().to_string()])
        .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn crafted_counts_in_a_sparse_six_gb_file_fail_cleanly_under_a_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let len = 6 * GIB;
    // A limit the mapped file plus a small working set fits in: the old parser reserved
    // 3-4x the file for a claimed count and aborted.
    let limit = len + GIB;
    let cases = [
        ("keys.gguf", Raw::header(3, 0, (len - 64) / 13), "duplicate"),
        (
            "tensors.gguf",
            Raw::header(3, (len - 64) / 24, 0),
            "duplicate",
        ),
        (
            "strings.gguf",
            Raw::header(3, 0, 1).str("a").u32(9).u32(8).u64(len / 8 - 8),
            "out of memory",
        ),
    ];
    for (name, raw, why) in cases {
        let path = sparse_file(dir.path(), name, &raw.0, len);
        let args = run_model(&path);
        let (out, took) = llama2(&strs(&args), Some(limit), Duration::from_secs(120));
        assert_refused(&out, &[name, why]);
        eprintln!("{name}: refused in {took:.2?}");
    }
}

#[test]
fn a_byte_array_spanning_the_file_is_read_in_bulk() {
    let dir = tempfile::tempdir().unwrap();
    let len = GIB;
    let head = Raw::header(3, 0, 1).str("a.bytes").u32(9).u32(0);
    let count = len - head.0.len() as u64 - 8;
    let path = sparse_file(dir.path(), "bytes.gguf", &head.u64(count).0, len);
    let args = run_model(&path);
    // One copy of the array next to the map, and no per-element work.
    let (out, took) = llama2(&strs(&args), Some(3 * len + GIB), Duration::from_secs(60));
    assert_refused(&out, &["bytes.gguf", "general.architecture"]);
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

#[test]
fn special_files_are_refused_without_opening_them() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("model.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    // Opening a FIFO for reading would block until a writer came: the timeout catches it.
    let (out, _) = llama2(&strs(&run_model(&fifo)), None, Duration::from_secs(20));
    assert_refused(&out, &["model.fifo", "is a FIFO, not a regular file"]);
    let (out, _) = llama2(&strs(&run_model(dir.path())), None, Duration::from_secs(20));
    assert_refused(&out, &["is a folder, not a regular file"]);
}

#[test]
fn out_of_range_flags_are_refused_naming_the_flag() {
    let cases: [(&[&str], &str); 12] = [
        (&["--temperature", "NaN"], "--temperature"),
        (&["--temperature", "-1"], "--temperature"),
        (&["--temperature", "inf"], "--temperature"),
        (&["--top-p", "2.0"], "--top-p"),
        (&["--top-p", "NaN"], "--top-p"),
        (&["--top-p", "-0.1"], "--top-p"),
        (&["--top-k", "0"], "--top-k"),
        (&["--repetition-penalty", "0"], "--repetition-penalty"),
        (&["--repetition-penalty", "NaN"], "--repetition-penalty"),
        (&["--ctx", "0"], "--ctx"),
        (&["--ctx", "-5"], "--ctx"),
        (&["-n", "many"], "--max-tokens"),
    ];
    for (flags, flag) in cases {
        let mut args = vec!["run", "--backend", "cpu", "--model", "/nonexistent.gguf"];
        args.extend_from_slice(flags);
        let (out, _) = llama2(&args, None, Duration::from_secs(20));
        // clap's usage error (status 2), before the model is even opened.
        assert_eq!(out.status.code(), Some(2), "{flags:?}");
        assert_refused(&out, &[flag]);
    }
}

/// A tiny generated model with its tokenizer, written to `dir`.
fn tiny_model(dir: &Path) -> PathBuf {
    let path = dir.join("tiny.gguf");
    let (out, _) = llama2(
        &[
            "gen-model",
            "--preset",
            "tiny",
            "--type",
            "q8_0",
            "-o",
            path.to_str().unwrap(),
        ],
        None,
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

#[test]
fn context_and_prompt_length_are_checked_before_any_compute() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let base = run_model(&model);
    let with = |extra: &[&str]| {
        let mut a = strs(&base);
        a.extend_from_slice(extra);
        llama2(&a, None, Duration::from_secs(60))
    };
    let (out, _) = with(&["--ctx", "100000000"]);
    assert_refused(&out, &["--ctx 100000000", "above the model's context"]);

    let long = "the quick brown fox jumps over the lazy dog ".repeat(460);
    assert!(long.len() > 20_000);
    let (out, took) = with(&["--ctx", "64", "-p", &long]);
    assert_refused(&out, &["the prompt is", "the context holds 64"]);
    assert!(
        took < Duration::from_secs(20),
        "refused only after {took:?}"
    );
}
