//! `trm-train build-dataset` is trm-data's `build-dataset` command ([`trm_data::cli`]), whose
//! full tests run trm-data's own binary (trm-data/tests/build_dataset_cli.rs). Here: the
//! front end still parses and runs that command, writes what trm-data's builder writes, and
//! keeps its exit codes and messages.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use trm_data::sudoku::SudokuOptions;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn trm_train(args: &[&str]) -> Output {
    match Command::new(env!("CARGO_BIN_EXE_trm-train"))
        .args(args)
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!("cannot run trm-train {args:?}: {e}"),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// The regular files under `dir`, as paths relative to it, sorted.
fn files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(dir) {
                out.push(rel.to_path_buf());
            }
        }
    }
    out.sort();
    Ok(out)
}

#[test]
fn sudoku_generate_writes_what_the_builder_writes() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let cli_out = tmp.path().join("cli");
    let out = trm_train(&[
        "build-dataset",
        "sudoku-generate",
        "--output-dir",
        s(&cli_out),
        "--train",
        "6",
        "--test",
        "2",
        "--blanks",
        "30",
        "--num-aug",
        "1",
        "--seed",
        "7",
        "--no-progress",
    ]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "failed ({}): {stdout}\n{}",
        out.status,
        text(&out.stderr)
    );
    let expected = format!(
        "build-dataset sudoku-generate: wrote {}: train 12 examples in 6 groups (12 puzzles), \
         tokens int64; test 2 examples in 2 groups (2 puzzles), tokens uint8; seq_len 81, \
         vocab_size 11, 1 puzzle identifiers; 30 blanks, seed 7. 13 files, ",
        cli_out.display()
    );
    assert!(stdout.starts_with(&expected), "{stdout}");

    // The builder called directly, with the options the command line gives it.
    let lib_out = tmp.path().join("lib");
    let opts = SudokuOptions {
        num_aug: 1,
        seed: 7,
        ..SudokuOptions::default()
    };
    trm_data::sudoku_gen::generate_dataset(&lib_out, 6, 2, 30, &opts)?;
    let names = files(&cli_out)?;
    assert_eq!(names, files(&lib_out)?);
    assert_eq!(names.len(), 13);
    for name in &names {
        assert!(
            fs::read(cli_out.join(name))? == fs::read(lib_out.join(name))?,
            "{} differs",
            name.display()
        );
    }
    Ok(())
}

#[test]
fn usage_and_build_errors_keep_their_codes_and_messages() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let out_dir = tmp.path().join("out");
    let generate = |blanks: &str| {
        trm_train(&[
            "build-dataset",
            "sudoku-generate",
            "--output-dir",
            s(&out_dir),
            "--train",
            "1",
            "--test",
            "1",
            "--blanks",
            blanks,
        ])
    };
    // A usage error: clap's exit code 2, nothing written.
    let out = generate("65");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("at most 64"),
        "{}",
        text(&out.stderr)
    );
    assert!(!out_dir.exists());
    // A failed build: exit code 1 and the error chain on stderr.
    fs::create_dir(&out_dir)?;
    let out = generate("10");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: --output-dir {}: already exists (pass --overwrite to replace it)\n",
            out_dir.display()
        )
    );
    Ok(())
}
