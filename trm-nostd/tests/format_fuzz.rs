//! Property test over mutated valid files: `Model::parse` never panics, and whatever it accepts
//! hands out only tensors that lie inside the file with the sizes their shapes need.
//!
//! Mutations: random bit flips (half of them aimed at the preamble, header and directory),
//! random truncation, random splices (a range replaced by random bytes of another length) and
//! overwriting a little-endian u32 with an extreme value. Half of the cases then repair the
//! metadata checksum, so that the mutated header and directory reach the checks behind it.
//! The cargo-fuzz target `parse_model` in `trm-nostd/fuzz` does the same with coverage guidance.

mod format_common;

use format_common::{build, fix_meta_crc, micro, tiny_attention};
use proptest::prelude::*;
use proptest::sample::Index;
use std::sync::OnceLock;
use trm_nostd::format::{ALIGN, Model};
use trm_nostd::{DType, PosEncoding, TensorId, TensorSource};

fn bases() -> &'static [Vec<u8>] {
    static BASES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    BASES.get_or_init(|| {
        let mut rope = tiny_attention(PosEncoding::Rope);
        rope.l_layers = 1;
        rope.hidden_size = 8;
        rope.puzzle_emb_ndim = 16;
        vec![
            build(&micro(), DType::F16, 1),
            build(&micro(), DType::F32, 2),
            build(&rope, DType::BF16, 3),
        ]
    })
}

/// Where the payload starts in an unmutated base (mutations of the bytes before it are the
/// interesting ones).
fn metadata_len(b: &[u8]) -> usize {
    u32::from_le_bytes(b[16..20].try_into().unwrap()) as usize
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipMeta(Index, u8),
    FlipAny(Index, u8),
    Truncate(Index),
    Splice(Index, usize, Vec<u8>),
    Word(Index, u32),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), 1u8..).prop_map(|(i, m)| Mutation::FlipMeta(i, m)),
        2 => (any::<Index>(), 1u8..).prop_map(|(i, m)| Mutation::FlipAny(i, m)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), 0usize..80, prop::collection::vec(any::<u8>(), 0..80))
            .prop_map(|(i, n, v)| Mutation::Splice(i, n, v)),
        2 => (
            any::<Index>(),
            prop_oneof![Just(0u32), Just(u32::MAX), Just(1u32 << 31), Just(64u32), any::<u32>()]
        )
            .prop_map(|(i, w)| Mutation::Word(i, w)),
    ]
}

fn apply(b: &mut Vec<u8>, meta_len: usize, m: &Mutation) {
    if b.is_empty() {
        return;
    }
    match m {
        Mutation::FlipMeta(i, mask) => {
            let at = i.index(meta_len.min(b.len()));
            b[at] ^= mask;
        }
        Mutation::FlipAny(i, mask) => {
            let at = i.index(b.len());
            b[at] ^= mask;
        }
        Mutation::Truncate(i) => {
            let n = i.index(b.len());
            b.truncate(n);
        }
        Mutation::Splice(i, n, v) => {
            let at = i.index(b.len());
            let end = (at + n).min(b.len());
            b.splice(at..end, v.iter().copied());
        }
        Mutation::Word(i, w) => {
            let at = i.index(meta_len.min(b.len()));
            let end = (at + 4).min(b.len());
            let le = w.to_le_bytes();
            b[at..end].copy_from_slice(&le[..end - at]);
        }
    }
}

/// Everything an accepted model hands out lies inside `bytes` and has consistent sizes.
fn check_accepted(bytes: &[u8], model: &Model<'_>) {
    let base = bytes.as_ptr() as usize;
    let end = base + bytes.len();
    let config = model.config();
    assert!(config.validate().is_ok());
    assert_eq!(model.flash_bytes(), bytes.len());
    let expected: Vec<TensorId> = TensorId::all(config).collect();
    assert_eq!(model.tensor_count(), expected.len());
    assert_eq!(model.tensors().count(), expected.len());
    let mut prev_end = 0usize;
    for (id, view) in model.tensors() {
        let start = view.data.as_ptr() as usize;
        assert!(
            start >= base && start + view.data.len() <= end,
            "{id} out of bounds"
        );
        assert_eq!((start - base) % ALIGN, 0, "{id} misaligned");
        assert!(start >= prev_end, "{id} overlaps");
        prev_end = start + view.data.len();
        assert_eq!(view.shape, id.shape(config));
        assert_eq!(view.data.len(), view.shape.numel() * view.dtype.size());
        if view.shape.numel() > 0 {
            assert!(view.get_f32(view.shape.numel() - 1).is_some());
        }
    }
    for id in expected {
        assert!(model.tensor(id).is_some(), "{id} not found");
    }
    assert_eq!(model.summary().parameter_count, config.parameter_count());
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 3000,
        // The failing input is printed; no regression file beside the tests.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_files_never_panic(
        which in 0usize..3,
        mutations in prop::collection::vec(mutation(), 1..4),
        fix_meta in any::<bool>(),
    ) {
        let base = &bases()[which];
        let meta_len = metadata_len(base);
        let mut b = base.clone();
        for m in &mutations {
            apply(&mut b, meta_len, m);
        }
        if fix_meta {
            fix_meta_crc(&mut b);
        }
        let _ = Model::file_len(&b);
        if let Ok(model) = Model::parse(&b) {
            check_accepted(&b, &model);
        }
    }
}

#[test]
fn unmutated_bases_are_accepted() {
    // The property above only means something if the bases themselves parse.
    for b in bases() {
        let model = Model::parse(b).unwrap();
        check_accepted(b, &model);
    }
}

#[test]
fn every_prefix_is_rejected_without_panic() {
    let b = &bases()[0];
    for n in 0..b.len() {
        assert!(Model::parse(&b[..n]).is_err(), "prefix {n} accepted");
    }
}
