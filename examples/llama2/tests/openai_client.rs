//! The official `openai` Python client against `llama2 serve` on the CPU backend with
//! SmolLM2: chat and text completions, whole and streamed, batched together; the greedy
//! chat answer is "The capital of France is Paris." (`tests/clients/openai_client.py`).
//! The client is installed by `scripts/install-openai.sh` (the test command runs it).

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The Python with the `openai` package: `$GRETA_PYTHON`, else the environment the install
/// script makes.
fn python() -> PathBuf {
    let path = std::env::var_os("GRETA_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::repo_root().join(".greta-tools/py/bin/python"));
    assert!(
        path.is_file(),
        "{} is missing: run `bash scripts/install-openai.sh` first",
        path.display()
    );
    path
}

#[test]
fn the_openai_python_client_chats_and_completes_through_the_server() {
    let python = python();
    let mut server = Command::new(env!("CARGO_BIN_EXE_llama2"))
        .args(["serve", "--backend", "cpu", "--port", "0"])
        .args(["--ctx", "256", "--parallel", "4"])
        .arg("--model")
        .arg(common::smollm2())
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .expect("server started");
    let mut lines = BufReader::new(server.stderr.take().expect("stderr")).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("the server printed its address")
            .expect("stderr line");
        if let Some(addr) = line.strip_prefix("listening on ") {
            break addr.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let out = Command::new(python)
        .arg(common::repo_root().join("examples/llama2/tests/clients/openai_client.py"))
        .args([&base, "SmolLM2-135M-Instruct.Q4_1"])
        .output()
        .expect("python ran");
    let _ = server.kill();
    let _ = server.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}
