//! The pinned Python tools the suite checks with (`check-jsonschema`,
//! `kubernetes-validate`, `kubectl`, `openapi-spec-validator`,
//! `schemathesis`), installed by `scripts/install-deploy-tools.sh` into a
//! virtualenv: `$KAFKIT_DEPLOY_TOOLS`, else `$KAFKIT_CACHE_DIR/deploy-tools`,
//! else `~/.cache/kafkit/deploy-tools`. Tests never install them.

use std::path::PathBuf;

/// Where the tools' virtualenv lives.
pub fn tools_dir() -> PathBuf {
    std::env::var_os("KAFKIT_DEPLOY_TOOLS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("KAFKIT_CACHE_DIR").map(|c| PathBuf::from(c).join("deploy-tools"))
        })
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/kafkit/deploy-tools")
        })
}

/// The path of tool `name`.
///
/// # Panics
/// When it is not installed, saying how to install it (for tests).
pub fn tool(name: &str) -> PathBuf {
    let path = tools_dir().join("bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-deploy-tools.sh",
        path.display()
    );
    path
}
