//! Runs every `sh`, `python` and `make` block of docs/guide.md, and the
//! README's `sh` and `make` examples that can run here, so the recipes
//! cannot rot. Each block runs in a scratch directory with withlock
//! on PATH and a private lock directory, and must exit 0. Blocks that use
//! `$DATABASE_URL` get a private PostgreSQL server's URL there.

use std::path::Path;
use std::process::Command;

use withlock_pg_testing::TestServer;

use crate::support::{Env, output, stderr};

const GUIDE: &str = include_str!("../../../../docs/guide.md");
const README: &str = include_str!("../../../../README.md");

/// README examples that cannot run here: building and installing, a
/// server or an address this machine does not have, a fixed path in
/// /run/lock.
const NOT_HERE: [&str; 9] = [
    "cargo ",
    "scripts/",
    "pip install",
    "db.internal",
    "tcp:",
    "sudo",
    "/run/lock/",
    "etcd://10.0.0.",
    "etcdctl role",
];

/// The fenced blocks of `markdown` as (language, text).
fn blocks(markdown: &str) -> Vec<(&str, String)> {
    let mut found = Vec::new();
    let mut current: Option<(&str, String)> = None;
    for line in markdown.lines() {
        match (&mut current, line.strip_prefix("```")) {
            (None, Some(language)) => current = Some((language.trim(), String::new())),
            (Some(_), Some(_)) => found.push(current.take().unwrap()),
            (Some((_, text)), None) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, None) => {}
        }
    }
    found
}

fn run_block(env: &Env, index: usize, language: &str, text: &str) -> Option<Command> {
    run_block_with(env, index, language, text, None)
}

fn run_block_with(
    env: &Env,
    index: usize,
    language: &str,
    text: &str,
    server: Option<&TestServer>,
) -> Option<Command> {
    let scratch = env.file(&format!("scratch-{index}"));
    std::fs::create_dir_all(&scratch).unwrap();
    let mut command = match language {
        "sh" => {
            let mut c = Command::new("sh");
            c.args(["-eu", "-c", text]);
            c
        }
        "python" => {
            let mut c = Command::new("python3");
            c.args(["-c", text]);
            c
        }
        "make" => {
            std::fs::write(scratch.join("Makefile"), text).unwrap();
            // In parallel, as people run make: a recipe must state its
            // order in prerequisites, not in the order of the targets.
            let mut c = Command::new("make");
            c.args(["-s", "-j4"]);
            c
        }
        _ => return None,
    };
    let path = format!(
        "{}:{}",
        env.bin().parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    command
        .current_dir(&scratch)
        .env("PATH", path)
        .env("WITHLOCK_DIR", env.lock_dir());
    if let Some(server) = server {
        command.env("DATABASE_URL", server.url());
    }
    Some(command)
}

#[test]
fn every_runnable_block_of_the_guide_succeeds() {
    let env = Env::new();
    let server = GUIDE.contains("$DATABASE_URL").then(TestServer::start);
    let mut ran = 0;
    for (index, (language, text)) in blocks(GUIDE).into_iter().enumerate() {
        let server = server.as_ref().filter(|_| text.contains("$DATABASE_URL"));
        let Some(mut command) = run_block_with(&env, index, language, &text, server) else {
            continue;
        };
        let out = output(&mut command);
        assert!(
            out.status.success(),
            "this {language} block of docs/guide.md failed with {}:\n{text}\nstderr: {}",
            out.status,
            stderr(&out)
        );
        ran += 1;
    }
    assert!(
        ran >= 8,
        "only {ran} blocks ran: did the guide lose its examples?"
    );
}

/// The README's `sh` and `make` examples that can run here, with a
/// `./script`, a `./check`, a Makefile and its `do-build` target standing
/// in for a project's.
#[test]
fn every_readme_example_that_can_run_here_succeeds() {
    let env = Env::new();
    let mut ran = 0;
    for (index, (language, text)) in blocks(README).into_iter().enumerate() {
        if !["sh", "make"].contains(&language) || NOT_HERE.iter().any(|w| text.contains(w)) {
            continue;
        }
        let text = match language {
            "make" => format!("{text}do-build:\n\t@echo built\n"),
            _ => text,
        };
        let mut command = run_block(&env, index, language, &text).unwrap();
        let scratch = env.file(&format!("scratch-{index}"));
        for stub in ["script", "check"] {
            let path = scratch.join(stub);
            std::fs::write(&path, "#!/bin/sh\necho \"$0 $*\"\n").unwrap();
            crate::support::set_mode(&path, 0o755);
        }
        if language == "sh" {
            std::fs::write(scratch.join("Makefile"), "all:\n\t@echo made\n").unwrap();
        }
        let out = output(&mut command);
        assert!(
            out.status.success(),
            "this {language} block of README.md failed with {}:\n{text}\nstderr: {}",
            out.status,
            stderr(&out)
        );
        ran += 1;
    }
    assert!(ran >= 7, "only {ran} README blocks ran");
}

#[test]
fn the_skip_recipe_really_skips() {
    let env = Env::new();
    let (_, text) = blocks(GUIDE)
        .into_iter()
        .find(|(_, text)| text.contains("never printed"))
        .unwrap();
    let out = output(run_block(&env, 0, "sh", &text).as_mut().unwrap());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("second run exited 75"), "{stdout}");
    assert!(!stdout.contains("never printed"));
}

#[test]
fn the_makefile_recipe_builds_before_it_deploys_under_make_j() {
    let env = Env::new();
    let (_, text) = blocks(GUIDE)
        .into_iter()
        .find(|(language, _)| *language == "make")
        .unwrap();
    // Asking for `deploy` alone, from a clean tree, must build first: if
    // the order came only from `all`'s list, `-j` could ship nothing.
    let mut command = run_block(&env, 0, "make", &text).unwrap();
    let out = output(command.arg("deploy"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "app\n");
}

#[test]
fn finds_fenced_blocks() {
    let found = blocks("text\n```sh\necho a\n```\n```yaml\nk: v\n```\n");
    assert_eq!(
        found,
        [("sh", "echo a\n".to_owned()), ("yaml", "k: v\n".to_owned())]
    );
    assert!(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs/guide.md")
            .exists()
    );
}
