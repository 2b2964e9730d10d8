//! Writing a dataset to disk in the reference layout, streaming the examples.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use super::{
    ArcBuildConfig, ArcError, ArcPlan, ArcSplitMetadata, SEQ_LEN, SplitIndices, SplitSink,
    TEST_PUZZLES_FILE, io_err, test_puzzles_json,
};
use crate::layout::{DEFAULT_SET as SET_NAME, DatasetWriter, LayoutError, METADATA_FILE};
use crate::npy::{NpyElement, numpy_header, write_npy_file};

/// A `.npy` file of `(rows, 900)` tokens written row by row.
struct NpyRowWriter {
    path: PathBuf,
    w: BufWriter<File>,
}

impl NpyRowWriter {
    fn create(path: PathBuf, rows: usize) -> Result<Self, ArcError> {
        let f = File::create(&path).map_err(io_err(&path))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        w.write_all(&numpy_header(u8::DESCR, &[rows, SEQ_LEN]))
            .map_err(io_err(&path))?;
        Ok(Self { path, w })
    }
    fn push(&mut self, row: &[u8; SEQ_LEN]) -> Result<(), ArcError> {
        self.w.write_all(row).map_err(io_err(&self.path))
    }
    fn finish(self) -> Result<(), ArcError> {
        let path = self.path;
        let f = self
            .w
            .into_inner()
            .map_err(|e| io_err(&path)(e.into_error()))?;
        f.sync_all().map_err(io_err(&path))
    }
}

/// A [`SplitSink`] streaming the splits into a [`DatasetWriter`]'s directory: inputs and
/// labels go to disk as they are produced, so memory stays small whatever `num_aug`.
struct DirSink<'a> {
    writer: &'a mut DatasetWriter,
    current: Option<(NpyRowWriter, NpyRowWriter)>,
}

impl SplitSink for DirSink<'_> {
    fn begin(&mut self, split: &str, total_examples: usize) -> Result<(), ArcError> {
        let dir = self.writer.tmp_dir().join(split);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let file = |field: &str| dir.join(format!("{SET_NAME}__{field}.npy"));
        self.current = Some((
            NpyRowWriter::create(file("inputs"), total_examples)?,
            NpyRowWriter::create(file("labels"), total_examples)?,
        ));
        Ok(())
    }
    fn push(&mut self, input: &[u8; SEQ_LEN], label: &[u8; SEQ_LEN]) -> Result<(), ArcError> {
        let (i, l) = self
            .current
            .as_mut()
            .ok_or_else(|| ArcError::Config("push before begin".into()))?;
        i.push(input)?;
        l.push(label)
    }
    fn finish(
        &mut self,
        split: &str,
        indices: SplitIndices,
        meta: ArcSplitMetadata,
    ) -> Result<(), ArcError> {
        let (inputs, labels) = self
            .current
            .take()
            .ok_or_else(|| ArcError::Config("finish before begin".into()))?;
        inputs.finish()?;
        labels.finish()?;
        let dir = self.writer.tmp_dir().join(split);
        for (field, v) in [
            ("puzzle_identifiers", &indices.puzzle_identifiers),
            ("puzzle_indices", &indices.puzzle_indices),
            ("group_indices", &indices.group_indices),
        ] {
            write_npy_file(&dir.join(format!("{SET_NAME}__{field}.npy")), &[v.len()], v)
                .map_err(LayoutError::from)?;
        }
        let json = meta.to_dataset_metadata().to_json()?;
        self.writer
            .write_text(&format!("{split}/{METADATA_FILE}"), &json)?;
        Ok(())
    }
}

/// What a build produced, for reporting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArcBuildSummary {
    /// Tasks read.
    pub total_tasks: usize,
    /// Identifiers including `<blank>`.
    pub num_identifiers: usize,
    /// Puzzles whose augmentation group is not full, with their group size.
    pub incomplete_groups: Vec<(String, usize)>,
}

/// Builds the dataset into `config.output_dir` in the reference layout, byte-identical to the
/// reference builder's output (see the module docs for the exceptions).
pub fn build_arc_dataset(config: &ArcBuildConfig) -> Result<ArcBuildSummary, ArcError> {
    let plan = ArcPlan::new(config)?;
    let mut writer = DatasetWriter::create(&config.output_dir, config.overwrite)?;
    let summary = ArcBuildSummary {
        total_tasks: plan.tasks.len(),
        num_identifiers: plan.identifiers.len(),
        incomplete_groups: plan.incomplete_groups.clone(),
    };
    writer.write_identifiers(&plan.identifiers)?;
    writer.write_text(TEST_PUZZLES_FILE, &test_puzzles_json(plan.test_tasks()))?;
    plan.emit(&mut DirSink {
        writer: &mut writer,
        current: None,
    })?;
    writer.commit()?;
    Ok(summary)
}
