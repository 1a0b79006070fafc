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

use roff::{Roff, bold, roman};

use crate::cli::{self, Cli};

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
    fs::write(&path, render_man_page()?).with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

/// clap_mangen's sections, with the examples and exit statuses as proper
/// man page sections rather than `--help`'s plain-text columns.
fn render_man_page() -> Result<Vec<u8>> {
    let man = clap_mangen::Man::new(Cli::command());
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    page.extend(definition_list("EXAMPLES", &cli::EXAMPLES).as_bytes());
    page.extend(definition_list("EXIT STATUS", &cli::EXIT_STATUSES).as_bytes());
    man.render_version_section(&mut page)?;
    Ok(page)
}

/// A man page section of tagged paragraphs: each term, then its meaning.
fn definition_list(title: &str, rows: &[(&str, &str)]) -> String {
    let mut doc = Roff::new();
    doc.control("SH", [title]);
    for (left, right) in rows {
        doc.control("TP", []);
        doc.text([bold(*left)]);
        doc.text([roman(*right)]);
    }
    doc.to_roff()
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
