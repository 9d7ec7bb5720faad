//! Plugin projects: `burrow new` writes one, `burrow build` turns one into a `.wasm`.
//!
//! A project is a directory named after its plugin. A Rust project is a crate depending on
//! `burrow-plugin` (`Cargo.toml`, `src/lib.rs`); a Python one is `plugin.py` with its
//! `burrow_plugin` SDK, which this binary carries along with the contract (`wit/`) so that a
//! build needs nothing from this repository. Both get a unit test, sample records for
//! `burrow test` and a four-line README; both build to `NAME.wasm` in the project directory.
//!
//! - [`rust`] — the crate template and `cargo build --target wasm32-wasip2`.
//! - [`python`] — the module template and `componentize-py`.

pub mod python;
pub mod rust;

use std::path::{Path, PathBuf};
use std::process::Command;

/// A plugin project's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Rust,
    Python,
}

/// Why a project could not be made or built. Each says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error(
        "{} exists and is not empty: choose another name, or remove it first",
        .0.display()
    )]
    NotEmpty(PathBuf),
    #[error(
        "{name:?} cannot name a plugin: use lower-case letters, digits and '-', starting with a letter"
    )]
    BadName { name: String },
    #[error(
        "{} is not a plugin project: it has neither Cargo.toml (Rust) nor plugin.py (Python)",
        .0.display()
    )]
    NotAProject(PathBuf),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A tool the build needs is not installed; says how to get it.
    #[error("{tool} is missing: {fix}")]
    Missing { tool: &'static str, fix: String },
    /// The build tool ran and failed; its own output has been shown.
    #[error("{tool} failed ({status}); its output is above")]
    Failed { tool: &'static str, status: String },
}

/// What `burrow new` wrote.
#[derive(Debug)]
pub struct Created {
    pub dir: PathBuf,
    pub language: Language,
    pub files: Vec<PathBuf>,
}

/// Writes a new project for plugin `dir`'s last component, in `language`. Refuses a directory
/// that exists and is not empty.
pub fn create(dir: &Path, language: Language) -> Result<Created, ProjectError> {
    let name = plugin_name(dir)?;
    if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(ProjectError::NotEmpty(dir.to_owned()));
    }
    let files = match language {
        Language::Rust => rust::files(&name, dir),
        Language::Python => python::files(&name),
    };
    let mut written = Vec::new();
    for (relative, content) in files {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, content).map_err(io(&path))?;
        written.push(path);
    }
    Ok(Created {
        dir: dir.to_owned(),
        language,
        files: written,
    })
}

/// Builds the project in `dir` and returns the absolute path of the `.wasm` it wrote
/// (`dir/NAME.wasm`).
pub fn build(dir: &Path) -> Result<PathBuf, ProjectError> {
    let name = plugin_name(dir)?;
    let out = std::path::absolute(dir)
        .map_err(io(dir))?
        .join(format!("{name}.wasm"));
    match language_of(dir)? {
        Language::Rust => rust::build(dir, &out)?,
        Language::Python => python::build(dir, &out)?,
    }
    Ok(out)
}

/// Which language the project in `dir` is written in.
pub fn language_of(dir: &Path) -> Result<Language, ProjectError> {
    if dir.join("Cargo.toml").is_file() {
        Ok(Language::Rust)
    } else if dir.join("plugin.py").is_file() {
        Ok(Language::Python)
    } else {
        Err(ProjectError::NotAProject(dir.to_owned()))
    }
}

/// The plugin's name: the directory's own name, made absolute first (so `.` works).
fn plugin_name(dir: &Path) -> Result<String, ProjectError> {
    let absolute = std::path::absolute(dir).map_err(io(dir))?;
    let name = absolute
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut chars = name.chars();
    let good = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if good {
        Ok(name)
    } else {
        Err(ProjectError::BadName { name })
    }
}

/// `{{name}}` (and any other `{{key}}` given) replaced in a template.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    values
        .iter()
        .fold(template.to_owned(), |text, (key, value)| {
            text.replace(&format!("{{{{{key}}}}}"), value)
        })
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ProjectError + '_ {
    move |source| ProjectError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Runs `command`, its output passed through to the user; `Failed` if it exits non-zero,
/// `Missing` (with `fix`) if it cannot be started.
fn run(mut command: Command, tool: &'static str, fix: &str) -> Result<(), ProjectError> {
    let status = command.status().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ProjectError::Missing {
            tool,
            fix: fix.to_owned(),
        },
        _ => ProjectError::Failed {
            tool,
            status: e.to_string(),
        },
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(ProjectError::Failed {
            tool,
            status: status.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_what_a_crate_and_a_file_both_accept() {
        assert_eq!(
            plugin_name(Path::new("/tmp/my-plugin2")).expect("should succeed"),
            "my-plugin2"
        );
        for bad in ["/tmp/My", "/tmp/2x", "/tmp/a_b", "/tmp/a b"] {
            assert!(
                matches!(
                    plugin_name(Path::new(bad)),
                    Err(ProjectError::BadName { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_non_empty_directory_is_refused() {
        let dir = tempfile::tempdir().expect("should succeed");
        let project = dir.path().join("taken");
        std::fs::create_dir(&project).expect("should succeed");
        std::fs::write(project.join("notes.txt"), "mine").expect("should succeed");
        let err = create(&project, Language::Rust).expect_err("should fail");
        assert_eq!(
            err.to_string(),
            format!(
                "{} exists and is not empty: choose another name, or remove it first",
                project.display()
            )
        );
        assert_eq!(
            std::fs::read_to_string(project.join("notes.txt")).expect("should succeed"),
            "mine"
        );
    }

    #[test]
    fn templates_are_filled() {
        assert_eq!(
            fill("# {{name}} {{x}}", &[("name", "p"), ("x", "y")]),
            "# p y"
        );
    }
}
