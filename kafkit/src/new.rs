//! `kafkit new <name>`: a new consumer service crate, ready to build, test
//! and change: two schemas, their event types, a handler, a `main` of a few
//! lines on the runtime, and a test against Tansu and the schema registry.
//!
//! The templates are files under `kafkit/templates/service/`, compiled in.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The service's crate name: lowercase letters, digits and dashes.
    pub name: String,
    /// The workspace (or any directory) to create it in; a workspace's
    /// `members` list gets the new crate.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// A kafkit source checkout: the new crate depends on its library crates
    /// by path. Default: the source this `kafkit` was built from, when it is
    /// still there; otherwise crates.io versions.
    #[arg(long)]
    pub kafkit_path: Option<PathBuf>,
}

/// (path in the new crate, template); `{{snake}}` in a path is replaced too.
const TEMPLATES: [(&str, &str); 8] = [
    (
        "Cargo.toml",
        include_str!("../templates/service/Cargo.toml.tmpl"),
    ),
    (
        "schemas/{{snake}}_requested.avsc",
        include_str!("../templates/service/schemas/requested.avsc.tmpl"),
    ),
    (
        "schemas/{{snake}}_completed.avsc",
        include_str!("../templates/service/schemas/completed.avsc.tmpl"),
    ),
    (
        "src/events.rs",
        include_str!("../templates/service/src/events.rs.tmpl"),
    ),
    (
        "src/handler.rs",
        include_str!("../templates/service/src/handler.rs.tmpl"),
    ),
    (
        "src/lib.rs",
        include_str!("../templates/service/src/lib.rs.tmpl"),
    ),
    (
        "src/main.rs",
        include_str!("../templates/service/src/main.rs.tmpl"),
    ),
    (
        "tests/service.rs",
        include_str!("../templates/service/tests/service.rs.tmpl"),
    ),
];

/// kafkit's crates a new service uses, by directory in the kafkit source.
const KAFKIT_CRATES: [(&str, &str); 5] = [
    ("events", "events"),
    ("messaging", "messaging"),
    ("runtime", "runtime"),
    ("devstack", "devstack"),
    ("schema-registry", "schema-registry"),
];

pub fn run(args: NewArgs) -> anyhow::Result<()> {
    let created = create(&args)?;
    println!(
        "created {} ({} files)",
        created.crate_dir.display(),
        created.files
    );
    match &created.workspace {
        Some(manifest) => println!("added to the members of {}", manifest.display()),
        None => println!(
            "a workspace of its own (no workspace in {})",
            args.dir.display()
        ),
    }
    println!(
        "next: cd {} && cargo test -p {}   (needs Tansu: kafkit dev install)",
        created.root.display(),
        args.name
    );
    Ok(())
}

/// What [`create`] wrote.
#[derive(Debug)]
pub struct Created {
    pub crate_dir: PathBuf,
    pub files: usize,
    /// The workspace manifest the crate was added to.
    pub workspace: Option<PathBuf>,
    /// Where to run cargo.
    pub root: PathBuf,
}

pub fn create(args: &NewArgs) -> anyhow::Result<Created> {
    let names = Names::of(&args.name)?;
    let crate_dir = args.dir.join(&args.name);
    if crate_dir.exists() {
        bail!(
            "{} exists already; choose another name or remove it",
            crate_dir.display()
        );
    }
    let source = args.kafkit_path.clone().or_else(built_from);
    let mut files = 0;
    for (path, template) in TEMPLATES {
        let target = crate_dir.join(path.replace("{{snake}}", &names.snake));
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let text = names.render(template, source.as_deref())?;
        std::fs::write(&target, text)
            .with_context(|| format!("cannot write {}", target.display()))?;
        files += 1;
    }
    let manifest = args.dir.join("Cargo.toml");
    let workspace = match std::fs::read_to_string(&manifest) {
        Ok(text) if text.contains("[workspace]") => {
            let added = add_member(&text, &args.name).with_context(|| {
                format!(
                    "add \"{}\" to the members of {} yourself",
                    args.name,
                    manifest.display()
                )
            })?;
            std::fs::write(&manifest, added)?;
            Some(manifest)
        }
        _ => {
            // Its own workspace root, so cargo does not look further up.
            let own = crate_dir.join("Cargo.toml");
            let text = std::fs::read_to_string(&own)?;
            std::fs::write(&own, format!("{text}\n[workspace]\n"))?;
            None
        }
    };
    let root = if workspace.is_some() {
        args.dir.clone()
    } else {
        crate_dir.clone()
    };
    Ok(Created {
        crate_dir,
        files,
        workspace,
        root,
    })
}

/// The kafkit source this binary was built from, when it is still there.
fn built_from() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()?
        .to_path_buf();
    root.join("runtime/Cargo.toml").exists().then_some(root)
}

/// `name` added to the `members = [...]` list of a workspace manifest.
fn add_member(manifest: &str, name: &str) -> anyhow::Result<String> {
    let start = manifest
        .find("members")
        .and_then(|at| manifest[at..].find('[').map(|open| at + open))
        .context("the workspace has no `members = [...]`")?;
    let end = manifest[start..]
        .find(']')
        .map(|close| start + close)
        .context("the `members` list does not end")?;
    let inside = manifest[start + 1..end].trim().trim_end_matches(',');
    let list = if inside.is_empty() {
        format!("\"{name}\"")
    } else {
        format!("{inside}, \"{name}\"")
    };
    Ok(format!(
        "{}[{list}]{}",
        &manifest[..start],
        &manifest[end + 1..]
    ))
}

/// The spellings of a service name the templates need.
#[derive(Debug)]
struct Names {
    name: String,
    snake: String,
    pascal: String,
}

impl Names {
    fn of(name: &str) -> anyhow::Result<Self> {
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.ends_with('-')
            && !name.contains("--");
        if !valid {
            bail!(
                "`{name}` is not a service name: use lowercase letters, digits and single dashes, starting with a letter (e.g. shipping-notes)"
            );
        }
        let pascal = name
            .split('-')
            .map(|part| {
                let mut chars = part.chars();
                chars
                    .next()
                    .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            })
            .collect();
        Ok(Self {
            name: name.to_owned(),
            snake: name.replace('-', "_"),
            pascal,
        })
    }

    fn render(&self, template: &str, kafkit: Option<&Path>) -> anyhow::Result<String> {
        let mut text = template
            .replace("{{name}}", &self.name)
            .replace("{{snake}}", &self.snake)
            .replace("{{crate}}", &self.snake)
            .replace("{{Pascal}}", &self.pascal)
            .replace("{{namespace}}", &format!("io.example.{}", self.snake))
            .replace("{{uuid}}", &uuid::Uuid::new_v4().simple().to_string());
        for (package, dir) in KAFKIT_CRATES {
            let dependency = match kafkit {
                Some(root) => {
                    let path = root.join(dir);
                    let path = path.canonicalize().unwrap_or(path);
                    format!("path = {:?}", path.to_string_lossy())
                }
                None => format!("version = \"{}\"", env!("CARGO_PKG_VERSION")),
            };
            text = text.replace(&format!("{{{{kafkit:{package}}}}}"), &dependency);
        }
        if text.contains("{{") {
            bail!("a template placeholder was not filled in: this is a bug of kafkit new");
        }
        Ok(text)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_are_spelled_for_crates_types_and_files() {
        let names = Names::of("shipping-notes").unwrap();
        assert_eq!(names.snake, "shipping_notes");
        assert_eq!(names.pascal, "ShippingNotes");
        for bad in ["Shipping", "1st", "a_b", "a--b", "a-", ""] {
            assert!(Names::of(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn members_get_the_new_crate() {
        let manifest = "[workspace]\nmembers = [\"a\", \"b\",]\n\n[workspace.package]\n";
        let added = add_member(manifest, "c").unwrap();
        assert!(
            added.contains("members = [\"a\", \"b\", \"c\"]\n\n[workspace.package]"),
            "{added}"
        );
        assert_eq!(
            add_member("[workspace]\nmembers = []\n", "c").unwrap(),
            "[workspace]\nmembers = [\"c\"]\n"
        );
        assert!(add_member("[workspace]\n", "c").is_err());
    }
}
