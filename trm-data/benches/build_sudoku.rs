//! Wall time of `build-dataset sudoku` (release). A plain `main` so that it can also be run
//! under `/usr/bin/time -v` for peak memory:
//!
//! ```text
//! cargo bench -p trm-data --bench build_sudoku                      # 1k x 100 augmentations
//! cargo bench -p trm-data --bench build_sudoku -- <csv dir> <out> <num_aug> [u8]
//! ```
//!
//! Tokens of an augmented train split are int64 like the reference's; `u8` stores them as
//! uint8 (`SudokuOptions::compact_tokens`).
//!
//! `<csv dir>` holds `train.csv` and `test.csv` (default: the shared Sudoku-Extreme 1k train
//! set for both). `reference_sudoku.py` beside this file runs the reference builder on the
//! same input for comparison.

use std::path::PathBuf;
use std::time::Instant;

use trm_data::layout::{Split, shared_dir};
use trm_data::sudoku::{self, SudokuOptions, SudokuSource};

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; ignore flags.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let tmp;
    let compact = args.get(3).is_some_and(|a| a == "u8");
    let (source, out, num_aug) = match args.as_slice() {
        [dir, out, aug, ..] => (
            SudokuSource::from_dir(&PathBuf::from(dir)),
            PathBuf::from(out),
            aug.parse()?,
        ),
        _ => {
            let csv = shared_dir().join("data/sudoku-extreme/sudoku-extreme-1k/train.csv");
            tmp = std::env::temp_dir().join(format!("trm-data-bench-{}", std::process::id()));
            (
                SudokuSource {
                    train: csv.clone(),
                    test: csv,
                },
                tmp.join("out"),
                100,
            )
        }
    };
    let opts = SudokuOptions {
        num_aug,
        seed: 0,
        overwrite: true,
        progress: true,
        compact_tokens: compact,
        ..Default::default()
    };
    let t = Instant::now();
    let (train, test) = sudoku::build_dataset(&source, &out, &opts)?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "build_sudoku: {} train + {} test examples (num_aug {num_aug}) in {secs:.2} s -> {}",
        train.set.num_examples(),
        test.set.num_examples(),
        out.display()
    );
    let t = Instant::now();
    let split = Split::open(&out.join("train"))?;
    println!(
        "Split::open(train): {} examples in {:.2} s",
        split.num_examples(),
        t.elapsed().as_secs_f64()
    );
    drop(split);
    if args.is_empty() {
        std::fs::remove_dir_all(out.parent().unwrap_or(&out))?;
    }
    Ok(())
}
