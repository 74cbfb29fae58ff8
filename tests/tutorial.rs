//! The tutorial, docs/mlp-expansion.md, runs: every `neoprobe` command in its `sh` blocks runs on
//! the fixture model and succeeds (its output folder moved to a temporary one), every line of an
//! `output` block is a line the command before it printed, and every figure it shows exists.

use std::path::{Path, PathBuf};
use std::process::Command;

const TUTORIAL: &str = "docs/mlp-expansion.md";

/// The fenced blocks of a markdown text: (language, lines).
fn blocks(markdown: &str) -> Vec<(String, Vec<String>)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, Vec<String>)> = None;
    for line in markdown.lines() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(language)) => open = Some((language.trim().to_string(), Vec::new())),
            (Some(_), Some(_)) => blocks.push(open.take().unwrap()),
            (Some((_, lines)), None) => lines.push(line.to_string()),
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "{TUTORIAL} has an unclosed code block");
    blocks
}

/// Runs one tutorial command with `--out-dir X` moved under `scratch`; its stdout.
fn run(command: &str, scratch: &Path) -> String {
    let mut args: Vec<String> = command.split_whitespace().skip(1).map(String::from).collect();
    if let Some(i) = args.iter().position(|a| a == "--out-dir") {
        let target: PathBuf = scratch.join(&args[i + 1]);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        args[i + 1] = target.to_str().unwrap().to_string();
    }
    let output = Command::new(env!("CARGO_BIN_EXE_neoprobe"))
        .args(&args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "tutorial command failed: {command}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn every_tutorial_command_runs_and_prints_what_the_tutorial_quotes() {
    let markdown = std::fs::read_to_string(TUTORIAL).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let (mut commands, mut quoted) = (0, 0);
    let mut last_output: Option<String> = None;
    for (language, lines) in blocks(&markdown) {
        match language.as_str() {
            "sh" => {
                for line in lines.iter().filter(|l| l.starts_with("neoprobe ")) {
                    last_output = Some(run(line, scratch.path()));
                    commands += 1;
                }
            }
            "output" => {
                let output = last_output.as_deref().expect("an output block before any command");
                for line in &lines {
                    assert!(
                        output.lines().any(|l| l == line),
                        "the tutorial quotes a line the command did not print:\n{line}"
                    );
                    quoted += 1;
                }
            }
            _ => {}
        }
    }
    assert!(commands >= 4 && quoted >= 5, "{commands} commands, {quoted} quoted lines");
}

#[test]
fn every_figure_the_tutorial_shows_exists() {
    let markdown = std::fs::read_to_string(TUTORIAL).unwrap();
    let mut figures = 0;
    for part in markdown.split("](").skip(1) {
        let target = part.split(')').next().unwrap();
        if target.starts_with("http") {
            continue;
        }
        let path = Path::new("docs").join(target);
        assert!(path.exists(), "{TUTORIAL} links {target}, which does not exist");
        figures += target.ends_with(".png") as usize;
    }
    assert!(figures >= 3);
}
