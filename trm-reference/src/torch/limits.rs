//! Bounds on what a `torch.save` file may ask of the reader.

/// Highest pickle protocol this reader accepts.
pub(super) const MAX_PROTOCOL: u8 = 5;
/// The tensors read may total at most this many times the file's size (plus 1 MiB).
pub(super) const OUTPUT_BUDGET_FACTOR: usize = 16;
/// Most dimensions a tensor may have (torch allows 64; state_dicts use far fewer).
pub(super) const MAX_RANK: usize = 64;

/// Bytes of tensor data a file of `file_len` bytes may yield. Views of one storage each get
/// their own copy; bounding the total keeps a small file from asking for gigabytes (legitimate
/// sharing, such as tied weights, stays far below this).
pub(super) fn output_budget(file_len: usize) -> usize {
    file_len
        .saturating_mul(OUTPUT_BUDGET_FACTOR)
        .saturating_add(1 << 20)
}
