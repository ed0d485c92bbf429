//! The official `openai` Python client against `llama2 serve` on the CPU backend with
//! SmolLM2: chat and text completions, whole and streamed, batched together; the greedy
//! chat answer is "The capital of France is Paris." (`tests/clients/openai_client.py`).
//! The client is installed by `scripts/install-openai.sh` (the test command runs it).

mod common;

use std::path::PathBuf;
use std::process::Command;

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
    let model = common::smollm2();
    let (mut server, base) = common::serve(&[
        "--ctx".as_ref(),
        "256".as_ref(),
        "--parallel".as_ref(),
        "4".as_ref(),
        "--model".as_ref(),
        model.as_os_str(),
    ]);
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
