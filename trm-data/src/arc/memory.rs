//! Building a dataset in memory (for tests and small builds).

use super::{
    ArcBuildConfig, ArcError, ArcPlan, ArcSplitMetadata, ArcTask, SEQ_LEN, SplitIndices, SplitSink,
};

/// One split held in memory (for tests and small builds).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ArcSplit {
    /// `train` or `test`.
    pub name: String,
    /// Inputs, `[examples, 900]` row major.
    pub inputs: Vec<u8>,
    /// Labels, `[examples, 900]` row major.
    pub labels: Vec<u8>,
    /// Index arrays.
    pub indices: SplitIndices,
    /// Metadata (`None` until the split is finished).
    pub meta: Option<ArcSplitMetadata>,
}

impl ArcSplit {
    /// Number of examples.
    pub fn num_examples(&self) -> usize {
        self.inputs.len() / SEQ_LEN
    }
}

/// A [`SplitSink`] keeping everything in memory.
#[derive(Debug, Default)]
pub struct MemorySink {
    /// Finished and current splits, in order.
    pub splits: Vec<ArcSplit>,
}

impl SplitSink for MemorySink {
    fn begin(&mut self, split: &str, total_examples: usize) -> Result<(), ArcError> {
        self.splits.push(ArcSplit {
            name: split.to_string(),
            inputs: Vec::with_capacity(total_examples * SEQ_LEN),
            labels: Vec::with_capacity(total_examples * SEQ_LEN),
            ..ArcSplit::default()
        });
        Ok(())
    }
    fn push(&mut self, input: &[u8; SEQ_LEN], label: &[u8; SEQ_LEN]) -> Result<(), ArcError> {
        let s = self
            .splits
            .last_mut()
            .ok_or_else(|| ArcError::Config("push before begin".into()))?;
        s.inputs.extend_from_slice(input);
        s.labels.extend_from_slice(label);
        Ok(())
    }
    fn finish(
        &mut self,
        _split: &str,
        indices: SplitIndices,
        meta: ArcSplitMetadata,
    ) -> Result<(), ArcError> {
        let s = self
            .splits
            .last_mut()
            .ok_or_else(|| ArcError::Config("finish before begin".into()))?;
        s.indices = indices;
        s.meta = Some(meta);
        Ok(())
    }
}

/// An ARC dataset built in memory.
#[derive(Debug, Clone)]
pub struct ArcDataset {
    /// The splits (`train`, then `test` when there is a test subset).
    pub splits: Vec<ArcSplit>,
    /// identifiers.json.
    pub identifiers: Vec<String>,
    /// The tasks of test_puzzles.json, in order.
    pub test_puzzles: Vec<ArcTask>,
    /// Puzzles whose augmentation group is not full, with their group size.
    pub incomplete_groups: Vec<(String, usize)>,
}

impl ArcDataset {
    /// The split named `name`.
    pub fn split(&self, name: &str) -> Option<&ArcSplit> {
        self.splits.iter().find(|s| s.name == name)
    }
}

/// Builds the dataset in memory (`config.output_dir` is ignored). About 1.8 KB per example:
/// use [`build_arc_dataset`](super::build_arc_dataset) for large `num_aug`.
pub fn build_arc_in_memory(config: &ArcBuildConfig) -> Result<ArcDataset, ArcError> {
    let plan = ArcPlan::new(config)?;
    let identifiers = plan.identifiers.clone();
    let test_puzzles = plan.test_tasks().cloned().collect();
    let incomplete_groups = plan.incomplete_groups.clone();
    let mut sink = MemorySink::default();
    plan.emit(&mut sink)?;
    Ok(ArcDataset {
        splits: sink.splits,
        identifiers,
        test_puzzles,
        incomplete_groups,
    })
}
