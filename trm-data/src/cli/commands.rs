//! The subcommands: each checks its output directory, runs its builder and returns the notes
//! of its summary.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::{ArcArgs, MazeArgs, SudokuArgs, SudokuGenerateArgs};
use crate::arc::{ArcBuildConfig, build_arc_dataset};
use crate::layout::clean_stale_temporaries;
use crate::maze::{MazeOptions, MazeSource};
use crate::sudoku::{SudokuOptions, SudokuSource};

/// Checks, before any input is read, that the build may write `out` (see [`check_output_dir`]),
/// then removes the temporary directories that killed builds of `out` left beside it
/// ([`clean_stale_temporaries`]) and reports each on stderr.
fn check_output(out: &Path, overwrite: bool, inputs: &[PathBuf]) -> Result<()> {
    check_output_dir(out, overwrite, inputs)?;
    for stale in clean_stale_temporaries(out)
        .with_context(|| format!("cleaning up after earlier builds of {}", out.display()))?
    {
        eprintln!("build-dataset: {stale}");
    }
    Ok(())
}

/// `out` must not exist unless `overwrite`, must be a directory if it does, and must not hold
/// any of `inputs`.
fn check_output_dir(out: &Path, overwrite: bool, inputs: &[PathBuf]) -> Result<()> {
    if out.file_name().is_none() {
        bail!(
            "--output-dir {}: not a directory name (it must end in a name, e.g. data/sudoku)",
            out.display()
        );
    }
    if !out.exists() {
        return Ok(());
    }
    if !overwrite {
        bail!(
            "--output-dir {}: already exists (pass --overwrite to replace it)",
            out.display()
        );
    }
    if !out.is_dir() {
        bail!(
            "--output-dir {}: exists and is not a directory",
            out.display()
        );
    }
    let out_abs = out
        .canonicalize()
        .with_context(|| format!("--output-dir {}", out.display()))?;
    for input in inputs {
        // An input that does not exist is reported by the builder, with its path.
        if let Ok(abs) = input.canonicalize()
            && abs.starts_with(&out_abs)
        {
            bail!(
                "--output-dir {} holds the input {}: --overwrite would delete it",
                out.display(),
                input.display()
            );
        }
    }
    Ok(())
}

pub(super) fn sudoku(a: SudokuArgs) -> Result<Vec<String>> {
    let source = match (a.input_dir, a.train_csv, a.test_csv) {
        (Some(dir), _, _) => SudokuSource::from_dir(&dir),
        (None, Some(train), Some(test)) => SudokuSource { train, test },
        // clap requires --input-dir or both CSVs.
        _ => bail!("give --input-dir, or --train-csv and --test-csv"),
    };
    check_output(
        &a.output_dir,
        a.flags.overwrite,
        &[source.train.clone(), source.test.clone()],
    )?;
    let opts = SudokuOptions {
        subsample_size: a.subsample_size,
        min_difficulty: a.min_difficulty,
        num_aug: a.num_aug,
        seed: a.seed,
        overwrite: a.flags.overwrite,
        progress: !a.flags.no_progress,
        compact_tokens: a.compact_tokens,
        keep_provenance: false,
    };
    crate::sudoku::build_dataset(&source, &a.output_dir, &opts).with_context(|| {
        format!(
            "build-dataset sudoku ({} + {} -> {})",
            source.train.display(),
            source.test.display(),
            a.output_dir.display()
        )
    })?;
    Ok(vec![format!("seed {}", a.seed)])
}

pub(super) fn maze(a: MazeArgs) -> Result<Vec<String>> {
    let source = MazeSource::from_dir(&a.input_dir);
    check_output(
        &a.output_dir,
        a.flags.overwrite,
        &[source.train.clone(), source.test.clone()],
    )?;
    let opts = MazeOptions {
        subsample_size: a.subsample_size,
        aug: a.aug,
        seed: a.seed,
        overwrite: a.flags.overwrite,
        progress: !a.flags.no_progress,
    };
    crate::maze::build_dataset(&source, &a.output_dir, &opts).with_context(|| {
        format!(
            "build-dataset maze ({} -> {})",
            a.input_dir.display(),
            a.output_dir.display()
        )
    })?;
    Ok(vec![format!("seed {}", a.seed)])
}

pub(super) fn arc(a: ArcArgs) -> Result<Vec<String>> {
    let inputs: Vec<PathBuf> = a
        .subsets
        .iter()
        .flat_map(|s| {
            ["challenges", "solutions"]
                .map(|kind| PathBuf::from(format!("{}_{s}_{kind}.json", a.input_file_prefix)))
        })
        .collect();
    check_output(&a.output_dir, a.flags.overwrite, &inputs)?;
    let config = ArcBuildConfig {
        input_file_prefix: a.input_file_prefix.clone(),
        output_dir: a.output_dir.clone(),
        subsets: a.subsets.clone(),
        test_set_name: a.test_set_name.clone(),
        test_set_name2: a.test_set_name2.clone(),
        seed: a.seed,
        num_aug: a.num_aug,
        puzzle_identifiers_start: a.puzzle_identifiers_start,
        overwrite: a.flags.overwrite,
    };
    let built = build_arc_dataset(&config).with_context(|| {
        format!(
            "build-dataset arc ({}_{{{}}}_*.json -> {})",
            a.input_file_prefix,
            a.subsets.join(","),
            a.output_dir.display()
        )
    })?;
    let mut notes = vec![format!(
        "{} tasks from {} (test set {}), {} augmentations a puzzle, seed {}",
        built.total_tasks,
        a.subsets.join("+"),
        a.test_set_name,
        a.num_aug,
        a.seed
    )];
    if !built.incomplete_groups.is_empty() {
        let mut note = format!(
            "{} puzzles got fewer than {} augmentations (every extra draw was a duplicate)",
            built.incomplete_groups.len(),
            a.num_aug
        );
        const SHOWN: usize = 5;
        let shown: Vec<String> = built
            .incomplete_groups
            .iter()
            .take(SHOWN)
            .map(|(id, size)| format!("{id}: {}", size.saturating_sub(1)))
            .collect();
        let _ = write!(note, ": {}", shown.join(", "));
        if built.incomplete_groups.len() > SHOWN {
            note.push_str(", ...");
        }
        notes.push(note);
    }
    Ok(notes)
}

pub(super) fn sudoku_generate(a: SudokuGenerateArgs) -> Result<Vec<String>> {
    check_output(&a.output_dir, a.flags.overwrite, &[])?;
    let opts = SudokuOptions {
        num_aug: a.num_aug,
        seed: a.seed,
        overwrite: a.flags.overwrite,
        progress: !a.flags.no_progress,
        compact_tokens: a.compact_tokens,
        ..SudokuOptions::default()
    };
    crate::sudoku_gen::generate_dataset(&a.output_dir, a.n_train, a.n_test, a.blanks, &opts)
        .with_context(|| {
            format!(
                "build-dataset sudoku-generate ({} + {} puzzles with {} blanks -> {})",
                a.n_train,
                a.n_test,
                a.blanks,
                a.output_dir.display()
            )
        })?;
    Ok(vec![format!("{} blanks, seed {}", a.blanks, a.seed)])
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn output_inside_check_refuses_inputs_in_the_output() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let out = dir.path().join("out");
        fs::create_dir(&out)?;
        let input = out.join("train.csv");
        fs::write(&input, "x")?;
        let outside = dir.path().join("test.csv");
        fs::write(&outside, "x")?;
        // Existing without --overwrite.
        assert!(check_output(&out, false, std::slice::from_ref(&outside)).is_err());
        // With --overwrite: fine unless an input lies inside.
        check_output(&out, true, std::slice::from_ref(&outside))?;
        let err = check_output(&out, true, &[outside, input]).err();
        assert!(err.is_some_and(|e| e.to_string().contains("would delete")));
        // A directory that does not exist yet is always fine.
        check_output(&dir.path().join("new"), false, &[])?;
        Ok(())
    }
}
