//! Locating the external toolchains. `scripts/install-toolchains.sh` installs them into
//! `.greta-tools/` and writes an env file; these lookups honour those variables and fall
//! back to the folder next to the working directory or the executable.

use std::path::PathBuf;

/// How to install missing toolchains, for error messages.
pub const INSTALL_HINT: &str =
    "run `scripts/install-toolchains.sh` and `source .greta-tools/env` from the repository root";

/// The tools folder: `$GRETA_TOOLS`, else a `.greta-tools` in the working directory or
/// above the running executable.
pub fn tools_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("GRETA_TOOLS") {
        return Some(PathBuf::from(d));
    }
    let mut candidates = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        candidates.extend(cwd.ancestors().map(|a| a.join(".greta-tools")));
    }
    if let Ok(exe) = std::env::current_exe() {
        candidates.extend(exe.ancestors().map(|a| a.join(".greta-tools")));
    }
    candidates.into_iter().find(|p| p.is_dir())
}

/// A path from an environment variable, else `default` inside the tools folder.
pub fn tool_path(var: &str, default: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        return Some(PathBuf::from(p));
    }
    let p = tools_dir()?.join(default);
    p.exists().then_some(p)
}

/// An executable from an environment variable, else by name on `PATH`.
pub fn executable(var: &str, name: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(name))
}
