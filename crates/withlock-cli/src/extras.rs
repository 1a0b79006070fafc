//! The man page and shell completions, generated from the clap definition
//! so they can never disagree with `--help`.
//!
//! `withlock --generate-extras PREFIX` writes them where man(1) and the
//! shells look under an install prefix such as /usr/local.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// Writes every extra under `prefix`; returns the files written.
pub fn generate(prefix: &Path) -> Result<Vec<PathBuf>> {
    let mut written = vec![man_page(&prefix.join("share/man/man1"))?];
    for (shell, dir) in [
        (Shell::Bash, "share/bash-completion/completions"),
        (Shell::Zsh, "share/zsh/site-functions"),
        (Shell::Fish, "share/fish/vendor_completions.d"),
    ] {
        let dir = prefix.join(dir);
        fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let mut path = clap_complete::generate_to(shell, &mut Cli::command(), "withlock", &dir)
            .with_context(|| format!("write {shell} completions in {}", dir.display()))?;
        if shell == Shell::Bash {
            // bash-completion loads completions/<command>, without a suffix.
            let plain = dir.join("withlock");
            fs::rename(&path, &plain).with_context(|| format!("write {}", plain.display()))?;
            path = plain;
        }
        written.push(path);
    }
    Ok(written)
}

fn man_page(dir: &Path) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join("withlock.1");
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .context("render the man page")?;
    fs::write(&path, page).with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_man_page_and_three_completions() {
        let prefix = tempfile::tempdir().unwrap();
        let written = generate(prefix.path()).unwrap();
        assert_eq!(written.len(), 4);
        let man = fs::read_to_string(prefix.path().join("share/man/man1/withlock.1")).unwrap();
        assert!(man.contains(".TH withlock"), "{man}");
        assert!(
            man.contains("conflict\\-exit\\-code"),
            "options are documented"
        );
        for file in &written[1..] {
            let text = fs::read_to_string(file).unwrap();
            assert!(text.contains("no-wait"), "{}: {text}", file.display());
        }
    }
}
