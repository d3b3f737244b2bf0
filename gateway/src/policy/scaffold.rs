//! `portcullis policy new`: scaffolds a policy project in Rust, Python or JavaScript.
//!
//! Every project gets the same small policy (DROP and TRUNCATE reserved to the groups
//! in a `ddl_groups` setting), a `settings.json`, a `fixtures.toml` and a `build.sh`
//! that builds the component and runs the fixtures through the real policy host
//! (`portcullis policy test`). Python and JavaScript projects get a copy of the WIT
//! contract and of the authoring helper module kept in `policies-examples/lib/`; a
//! Rust project depends on the SDK by path.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The policy's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust with `portcullis-sdk`.
    Rust,
    /// Python with componentize-py.
    Python,
    /// JavaScript with componentize-js.
    Js,
}

const WIT: &str = include_str!("../../../wit/policy.wit");
const PY_HELPER: &str = include_str!("../../../policies-examples/lib/python/portcullis_policy.py");
const JS_HELPER: &str = include_str!("../../../policies-examples/lib/js/portcullis-policy.js");
const JS_ENTRY: &str = include_str!("../../../policies-examples/lib/js/portcullis-entry.js");
const FIXTURES: &str = include_str!("scaffold/fixtures.toml");
const SETTINGS: &str = include_str!("scaffold/settings.json");
const README: &str = include_str!("scaffold/README.md.tmpl");
const GITIGNORE: &str = include_str!("scaffold/gitignore.tmpl");

/// The files of a new project for `lang`: `(relative path, contents)`.
/// `sdk` is the path a Rust project uses for `portcullis-sdk`.
pub fn files(lang: Lang, name: &str, sdk: &Path) -> Vec<(&'static str, String)> {
    let fill = |t: &str| {
        t.replace("{{name}}", name)
            .replace("{{sdk}}", &sdk.display().to_string())
    };
    let (source, label) = match lang {
        Lang::Rust => ("src/lib.rs", "Rust"),
        Lang::Python => ("app.py", "Python, componentize-py"),
        Lang::Js => ("policy.js", "JavaScript, componentize-js"),
    };
    let mut out = vec![
        ("fixtures.toml", fill(FIXTURES)),
        ("settings.json", SETTINGS.to_owned()),
        (".gitignore", GITIGNORE.to_owned()),
        (
            "README.md",
            fill(README)
                .replace("{{lang}}", label)
                .replace("{{source}}", source),
        ),
    ];
    match lang {
        Lang::Rust => {
            out.push(("Cargo.toml", fill(include_str!("scaffold/Cargo.toml.tmpl"))));
            out.push(("src/lib.rs", fill(include_str!("scaffold/lib.rs.tmpl"))));
            out.push(("build.sh", fill(include_str!("scaffold/build-rust.sh"))));
        }
        Lang::Python => {
            out.push(("app.py", fill(include_str!("scaffold/app.py.tmpl"))));
            out.push(("portcullis_policy.py", PY_HELPER.to_owned()));
            out.push(("wit/policy.wit", WIT.to_owned()));
            out.push(("build.sh", fill(include_str!("scaffold/build-python.sh"))));
        }
        Lang::Js => {
            out.push(("policy.js", fill(include_str!("scaffold/policy.js.tmpl"))));
            out.push(("portcullis-policy.js", JS_HELPER.to_owned()));
            out.push(("portcullis-entry.js", JS_ENTRY.to_owned()));
            out.push(("build.mjs", fill(include_str!("scaffold/build.mjs"))));
            out.push((
                "package.json",
                fill(include_str!("scaffold/package.json.tmpl")),
            ));
            out.push(("wit/policy.wit", WIT.to_owned()));
            out.push(("build.sh", fill(include_str!("scaffold/build-js.sh"))));
        }
    }
    out
}

/// Checks a project name: lower-case letters, digits and `-`, starting with a letter
/// (a valid crate, package and file name everywhere).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "policy name {name:?}: use lower-case letters, digits and '-', starting with a letter"
        ))
    }
}

/// The SDK path for new Rust projects: this source tree's `sdk/` when it exists.
pub fn default_sdk_path() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    p.canonicalize().unwrap_or(p)
}

/// Writes a new project `name` in `lang` into `dir` (which must not exist yet).
pub fn create(lang: Lang, name: &str, dir: &Path, sdk: &Path) -> anyhow::Result<()> {
    check_name(name).map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        !dir.exists(),
        "{} already exists; choose another --dir",
        dir.display()
    );
    for (rel, text) in files(lang, name, sdk) {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        if rel.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("no-drops2").is_ok());
        for bad in ["", "Caps", "2x", "a b", "a_b", "../x"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_language_gets_a_policy_fixtures_and_a_build_script() {
        let dir = tempfile::tempdir().unwrap();
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            let d = dir.path().join(format!("{lang:?}"));
            create(lang, "no-drops", &d, Path::new("/sdk")).unwrap();
            for f in ["fixtures.toml", "settings.json", "build.sh", "README.md"] {
                assert!(d.join(f).is_file(), "{lang:?}: {f}");
            }
            let build = std::fs::read_to_string(d.join("build.sh")).unwrap();
            assert!(build.contains("policy test no-drops.wasm"), "{build}");
            let all: String = files(lang, "no-drops", Path::new("/sdk"))
                .into_iter()
                .map(|(_, t)| t)
                .collect();
            assert!(!all.contains("{{"), "{lang:?}: an unfilled placeholder");
            // The fixtures parse in the format `portcullis policy test` reads.
            let text = std::fs::read_to_string(d.join("fixtures.toml")).unwrap();
            let fx: crate::policy::reload::manifest::Fixtures = toml::from_str(&text).unwrap();
            assert_eq!(fx.cases.len(), 4);
            assert!(create(lang, "no-drops", &d, Path::new("/sdk")).is_err());
        }
        let cargo = std::fs::read_to_string(dir.path().join("Rust/Cargo.toml")).unwrap();
        assert!(cargo.contains("path = \"/sdk\""), "{cargo}");
    }
}
