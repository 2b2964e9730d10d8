//! The torch.save reader against what torch.load returns (recorded by
//! tests/fixtures/gen_pickle_checks.py), and against damaged input.

mod common;

use std::io::{Cursor, Read, Write};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use proptest::prelude::*;
use trm_reference::torch::{TorchLoadError, load_torch_bytes, load_torch_file};

#[test]
fn views_match_torch_load_for_protocols_2_and_4() {
    let checks = checks();
    let views = checks["views"].as_object().unwrap();
    assert_eq!(views.len(), 2);
    for (file, expected) in views {
        let got = load_torch_file(&fixtures().join(file)).unwrap();
        let expected = expected.as_array().unwrap();
        assert_eq!(got.len(), expected.len(), "{file}");
        for ((name, t), e) in got.iter().zip(expected) {
            assert_eq!(name, e["name"].as_str().unwrap(), "{file}");
            assert_eq!(
                t.dtype.name(),
                e["dtype"].as_str().unwrap(),
                "{file} {name}"
            );
            assert_eq!(t.shape, json_shape(&e["shape"]), "{file} {name}");
            assert_eq!(t.data.len(), t.numel() * t.dtype.size(), "{file} {name}");
            // Exact: every value widens to f64 without rounding on both sides.
            assert_eq!(values_f64(t), json_f64s(&e["values"]), "{file} {name}");
        }
    }
}

#[test]
fn to_f32_converts_float_types_and_refuses_others() {
    let got = load_torch_file(&fixtures().join("views_p2.pt")).unwrap();
    let by_name = |n: &str| &got.iter().find(|(k, _)| k == n).unwrap().1;
    for name in ["f32.transposed", "f16", "bf16"] {
        let t = by_name(name);
        let want: Vec<f32> = values_f64(t).iter().map(|&v| v as f32).collect();
        assert_eq!(t.to_f32().unwrap(), want, "{name}");
    }
    for name in ["i64.strided", "bool", "f64"] {
        assert!(matches!(
            by_name(name).to_f32(),
            Err(TorchLoadError::Unsupported(_))
        ));
    }
}

#[test]
fn reference_checkpoints_match_torch_load() {
    let checks = checks();
    let root = reference_fixtures();
    let reference = checks["reference"].as_object().unwrap();
    assert_eq!(reference.len(), REFERENCE_FIXTURES.len());
    for fixture in REFERENCE_FIXTURES {
        let expected = reference[fixture]["tensors"].as_array().unwrap();
        let got = load_torch_file(&root.join(fixture).join("step_0")).unwrap();
        assert_eq!(got.len(), expected.len(), "{fixture}");
        for ((name, t), e) in got.iter().zip(expected) {
            assert_eq!(name, e["name"].as_str().unwrap(), "{fixture}");
            assert!(name.starts_with("_orig_mod.model."), "{name}");
            assert_eq!(t.dtype.name(), e["dtype"].as_str().unwrap(), "{name}");
            assert_eq!(t.shape, json_shape(&e["shape"]), "{name}");
            // Byte-exact: the CRC of the contiguous little-endian bytes torch.load gives.
            assert_eq!(
                trm_nostd::format::crc32(&t.data) as u64,
                e["crc32"].as_u64().unwrap(),
                "{fixture} {name}"
            );
            let v = values_f64(t);
            let first = json_f64s(&e["first"]);
            assert_eq!(&v[..first.len()], first.as_slice(), "{name}");
            let sum: f64 = v.iter().sum();
            let want = e["sum"].as_f64().unwrap();
            let scale: f64 = v.iter().map(|x| x.abs()).sum::<f64>().max(1.0);
            assert!(
                (sum - want).abs() <= 1e-12 * scale,
                "{name}: {sum} vs {want}"
            );
        }
        // The brief's invariant: q_head.bias is 0.1 (in f32) in every fixture.
        let bias = &got
            .iter()
            .find(|(n, _)| n.ends_with("inner.q_head.bias"))
            .unwrap()
            .1;
        assert_eq!(bias.to_f32().unwrap(), vec![0.1f32; 2]);
    }
    // H_init / L_init are in the forward dtype.
    let bf16 = load_torch_file(&root.join("sudoku-mlp_t-d64-bf16/step_0")).unwrap();
    assert_eq!(bf16[0].0, "_orig_mod.model.inner.H_init");
    assert_eq!(bf16[0].1.dtype.name(), "bfloat16");
}

fn step0_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        std::fs::read(reference_fixtures().join("sudoku-mlp_t-d64-bf16/step_0")).unwrap()
    })
}

/// The records of a torch.save archive, in order.
fn records(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut z = zip::ZipArchive::new(Cursor::new(archive)).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let mut v = Vec::new();
            f.read_to_end(&mut v).unwrap();
            (f.name().to_string(), v)
        })
        .collect()
}

/// A stored zip of these records, with `data.pkl` replaced by `pickle`.
fn with_pickle(records: &[(String, Vec<u8>)], pickle: &[u8]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in records {
        w.start_file(name.as_str(), opts).unwrap();
        let data = if name.ends_with("/data.pkl") {
            pickle
        } else {
            data
        };
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn pickle_of(records: &[(String, Vec<u8>)]) -> Vec<u8> {
    records
        .iter()
        .find(|(n, _)| n.ends_with("/data.pkl"))
        .unwrap()
        .1
        .clone()
}

#[test]
fn rebuilt_archive_still_loads() {
    // The helper itself: an unchanged pickle in a rebuilt archive loads as the original.
    let recs = records(step0_bytes());
    let rebuilt = with_pickle(&recs, &pickle_of(&recs));
    assert_eq!(
        load_torch_bytes(&rebuilt).unwrap(),
        load_torch_bytes(step0_bytes()).unwrap()
    );
}

#[test]
fn truncated_archives_give_errors() {
    let bytes = step0_bytes();
    let start = Instant::now();
    for cut in (0..bytes.len()).step_by(997).chain([bytes.len() - 1]) {
        let r = load_torch_bytes(&bytes[..cut]);
        assert!(r.is_err(), "cut at {cut} loaded");
    }
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn every_truncated_pickle_gives_an_error() {
    let start = Instant::now();
    let small = records(&std::fs::read(fixtures().join("views_p4.pt")).unwrap());
    let big = records(step0_bytes());
    for (recs, step) in [(&small, 1), (&big, 7)] {
        let pickle = pickle_of(recs);
        for cut in (0..pickle.len()).step_by(step) {
            let r = load_torch_bytes(&with_pickle(recs, &pickle[..cut]));
            match r {
                Err(TorchLoadError::Truncated { .. }) | Err(TorchLoadError::Malformed { .. }) => {}
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
    }
    assert!(start.elapsed() < Duration::from_secs(5));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Random byte edits anywhere in a real checkpoint: an error or a state_dict, never a panic.
    #[test]
    fn mutated_archives_never_panic(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut b = step0_bytes().to_vec();
        let n = b.len();
        for (at, v) in edits {
            b[at % n] = v;
        }
        let _ = load_torch_bytes(&b);
    }

    /// Random edits of the pickle inside a valid archive, so that the pickle machine (not the
    /// archive's checksum) sees the damage.
    #[test]
    fn mutated_pickles_never_panic(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
        static RECS: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
        let recs = RECS.get_or_init(|| records(&std::fs::read(fixtures().join("views_p2.pt")).unwrap()));
        let mut p = pickle_of(recs);
        let n = p.len();
        for (at, v) in edits {
            p[at % n] = v;
        }
        match load_torch_bytes(&with_pickle(recs, &p)) {
            // An edit may leave a well-formed pickle (even an empty dict, see the regression
            // file): whatever loads must keep the documented data-length invariant.
            Ok(sd) => {
                for (name, t) in &sd {
                    prop_assert_eq!(t.data.len(), t.numel() * t.dtype.size(), "{}", name);
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}

#[test]
fn pickle_edits_are_reported_by_name() {
    let recs = records(step0_bytes());
    let pickle = pickle_of(&recs);
    // An unknown opcode right after PROTO 2.
    let mut p = pickle.clone();
    p[2] = 0xfe;
    match load_torch_bytes(&with_pickle(&recs, &p)) {
        Err(TorchLoadError::UnknownOpcode { op: 0xfe, pos: 2 }) => {}
        other => panic!("{other:?}"),
    }
    // An unknown global: `collections OrderedDict` renamed `collections OrderedDicz`.
    let mut p = pickle.clone();
    let at = p.windows(12).position(|w| w == b"OrderedDict\n").unwrap();
    p[at + 10] = b'z';
    match load_torch_bytes(&with_pickle(&recs, &p)) {
        Err(TorchLoadError::UnknownGlobal { module, name }) => {
            assert_eq!(
                (module.as_str(), name.as_str()),
                ("collections", "OrderedDicz")
            );
        }
        other => panic!("{other:?}"),
    }
    // A missing storage record.
    let without: Vec<_> = recs
        .iter()
        .filter(|(n, _)| !n.ends_with("/data/3"))
        .cloned()
        .collect();
    match load_torch_bytes(&with_pickle(&without, &pickle)) {
        Err(TorchLoadError::MissingRecord(r)) => assert_eq!(r, "step_0/data/3"),
        other => panic!("{other:?}"),
    }
    // A short storage record.
    let short: Vec<_> = recs
        .iter()
        .map(|(n, d)| {
            let d = if n.ends_with("/data/3") {
                d[..d.len() - 4].to_vec()
            } else {
                d.clone()
            };
            (n.clone(), d)
        })
        .collect();
    let e = load_torch_bytes(&with_pickle(&short, &pickle)).unwrap_err();
    assert!(e.to_string().contains("storage '3'"), "{e}");
    // Big-endian files are refused, not misread.
    let big: Vec<_> = recs
        .iter()
        .map(|(n, d)| {
            let d = if n.ends_with("/byteorder") {
                b"big".to_vec()
            } else {
                d.clone()
            };
            (n.clone(), d)
        })
        .collect();
    assert!(matches!(
        load_torch_bytes(&with_pickle(&big, &pickle)),
        Err(TorchLoadError::Unsupported(_))
    ));
}

#[test]
fn not_an_archive_is_an_error() {
    assert!(matches!(
        load_torch_bytes(b"\x80\x02}q\x00."),
        Err(TorchLoadError::Zip(_))
    ));
    let e = load_torch_file(std::path::Path::new("/nonexistent/step_0")).unwrap_err();
    assert!(format!("{e:#}").contains("/nonexistent/step_0"));
}

/// A hand-written pickle: an OrderedDict with `n` entries, all viewing storage '7' of the bf16
/// fixture (a float32 record of 99328 elements) through one memoized storage object.
fn shared_storage_pickle(n: usize) -> Vec<u8> {
    let mut p = b"\x80\x02ccollections\nOrderedDict\nq\x00)R".to_vec();
    p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\nq\x010");
    p.extend_from_slice(b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\n");
    p.extend_from_slice(b"X\x01\x00\x00\x007X\x03\x00\x00\x00cpuJ\x00\x84\x01\x00tQq\x020");
    for i in 0..n {
        let name = format!("t{i}");
        p.push(b'X');
        p.extend_from_slice(&(name.len() as u32).to_le_bytes());
        p.extend_from_slice(name.as_bytes());
        // _rebuild_tensor_v2(storage, 0, (99328,), (1,), False, {})
        p.extend_from_slice(b"h\x01(h\x02K\x00J\x00\x84\x01\x00\x85K\x01\x85\x89}tRs");
    }
    p.push(b'.');
    p
}

#[test]
fn hand_written_pickle_with_a_shared_storage() {
    let recs = records(step0_bytes());
    let sd = load_torch_bytes(&with_pickle(&recs, &shared_storage_pickle(2))).unwrap();
    let raw = &recs.iter().find(|(n, _)| n == "step_0/data/7").unwrap().1;
    assert_eq!(sd.len(), 2);
    for (i, (name, t)) in sd.iter().enumerate() {
        assert_eq!(name, &format!("t{i}"));
        assert_eq!(t.shape, vec![99328]);
        assert_eq!(&t.data, raw);
    }
    // Hundreds of views of a 388 KiB storage would ask for far more memory than the 1.6 MB
    // file holds: refused rather than allocated.
    let e = load_torch_bytes(&with_pickle(&recs, &shared_storage_pickle(200))).unwrap_err();
    assert!(matches!(e, TorchLoadError::Unsupported(_)), "{e}");
}

#[test]
fn globals_outside_the_allow_list_are_refused() {
    let recs = records(step0_bytes());
    let p = b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00echo\x85R.";
    match load_torch_bytes(&with_pickle(&recs, p)) {
        Err(TorchLoadError::UnknownGlobal { module, name }) => {
            assert_eq!((module.as_str(), name.as_str()), ("os", "system"));
        }
        other => panic!("{other:?}"),
    }
    // A pickle that is not a dict of tensors.
    let p = b"\x80\x02}X\x01\x00\x00\x00aK\x05s.";
    assert!(matches!(
        load_torch_bytes(&with_pickle(&recs, p)),
        Err(TorchLoadError::NotAStateDict(_))
    ));
}

#[test]
fn a_pickle_that_is_not_a_dict_names_its_type() {
    let recs = records(step0_bytes());
    for (pickle, found) in [
        (&b"\x80\x02]q\x00(K\x01K\x02e."[..], "a list"),
        (b"\x80\x02K\x05.", "an int"),
        (b"\x80\x02N.", "None"),
        (b"\x80\x02X\x01\x00\x00\x00a.", "a str"),
        (b"\x80\x02K\x01K\x02\x86.", "a tuple"),
    ] {
        match load_torch_bytes(&with_pickle(&recs, pickle)) {
            Err(TorchLoadError::NotAStateDict(m)) => assert_eq!(
                m,
                format!("the pickled object is {found}, not a dict"),
                "{pickle:?}"
            ),
            other => panic!("{found}: {other:?}"),
        }
    }
}
