//! Finding and installing the pinned Tansu broker.
//!
//! Tansu is installed with `cargo install --locked` into a kafkit-owned cache
//! directory named after the version, so a different `tansu` on PATH is never
//! mistaken for the pinned one and the install is done once per machine.

use crate::DevstackError;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The Tansu release kafkit develops and tests against.
pub const TANSU_VERSION: &str = "0.6.0";
const TANSU_FEATURES: &str = "dynostore,libsql";

/// `$KAFKIT_CACHE_DIR/tansu-<version>`, default `~/.cache/kafkit/tansu-<version>`.
pub fn tansu_install_root() -> PathBuf {
    let cache = std::env::var_os("KAFKIT_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("kafkit")))
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("kafkit"))
        })
        .unwrap_or_else(|| std::env::temp_dir().join("kafkit-cache"));
    cache.join(format!("tansu-{TANSU_VERSION}"))
}

/// The pinned Tansu binary: `$KAFKIT_TANSU_BIN`, or the one in the kafkit cache.
pub fn find_tansu() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("KAFKIT_TANSU_BIN") {
        let bin = PathBuf::from(bin);
        return bin.is_file().then_some(bin);
    }
    let bin = tansu_install_root().join("bin").join("tansu");
    bin.is_file().then_some(bin)
}

/// Installs the pinned Tansu into the cache unless it is there; returns its path.
/// `say` receives progress sentences for the user.
pub fn install_tansu(mut say: impl FnMut(&str)) -> Result<PathBuf, DevstackError> {
    if let Some(bin) = find_tansu() {
        return Ok(bin);
    }
    let root = tansu_install_root();
    say(&format!(
        "Installing the Tansu {TANSU_VERSION} Kafka broker into {} with cargo install. \
         This is done once per machine and takes about 10 minutes on 2 cores.",
        root.display()
    ));
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "install",
            "tansu",
            "--locked",
            "--version",
            TANSU_VERSION,
            "--features",
            TANSU_FEATURES,
            "--root",
        ])
        .arg(&root)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| DevstackError::Install(format!("could not run cargo: {e}")))?;
    if !status.success() {
        return Err(DevstackError::Install(format!(
            "cargo install exited with {status}"
        )));
    }
    let bin = find_tansu().ok_or_else(|| {
        DevstackError::Install(format!("no tansu binary under {}", root.display()))
    })?;
    say(&format!("Installed Tansu at {}.", bin.display()));
    Ok(bin)
}
