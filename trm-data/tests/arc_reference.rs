//! The ARC builder against the reference builder's own output (fixtures made by
//! `tests/fixtures/arc/gen_reference.py` from hand-made puzzles) and NumPy's RNG streams.

use std::path::{Path, PathBuf};

use trm_data::arc::{ArcBuildConfig, NumpyLegacyRng, build_arc_dataset, build_arc_in_memory};
use trm_data::npy::read_npy;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/arc")
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn numpy_legacy_rng_matches_numpy() {
    let f = json(&fixtures().join("rng.json"));
    let mut rng = NumpyLegacyRng::seed(42);
    for triple in f["seed42_randint"].as_array().unwrap() {
        let t: Vec<u32> = triple
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(
            rng.randint(t[0], t[1]),
            Some(t[2]),
            "randint({}, {})",
            t[0],
            t[1]
        );
    }
    let mut rng = NumpyLegacyRng::seed(7);
    for perm in f["seed7_perm9"].as_array().unwrap() {
        let want: Vec<u8> = perm
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u8)
            .collect();
        assert_eq!(rng.permutation(&[1u8, 2, 3, 4, 5, 6, 7, 8, 9]), want);
    }
    let mut rng = NumpyLegacyRng::seed(123);
    let mut list: Vec<u64> = (0..400).collect();
    rng.shuffle(&mut list);
    let want: Vec<u64> = f["seed123_shuffle400"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(list, want);
    let mut rng = NumpyLegacyRng::seed(u32::MAX);
    let got: Vec<u64> = (0..20)
        .map(|_| rng.randint(0, 10).unwrap() as u64)
        .collect();
    let want: Vec<u64> = f["seedmax_randint"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(got, want);
    assert_eq!(rng.randint(3, 3), None, "empty range");
}

fn tiny_config(out: &Path) -> ArcBuildConfig {
    let prefix = fixtures().join("synthetic/tiny");
    let mut c = ArcBuildConfig::new(
        prefix.to_string_lossy(),
        out,
        &["training", "evaluation"],
        "evaluation",
    );
    c.num_aug = 2;
    c
}

/// Every file of the reference builder's output, compared byte for byte; arrays that differ
/// are reported by their first differing element.
#[test]
fn tiny_build_is_byte_identical_to_the_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("arc");
    let summary = build_arc_dataset(&tiny_config(&out)).unwrap();
    // a0000003 and e0000003 are 1x1 black grids: every augmentation is a duplicate.
    let mut incomplete: Vec<&str> = summary
        .incomplete_groups
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    incomplete.sort();
    assert_eq!(incomplete, ["a0000003", "e0000003"]);

    let reference = fixtures().join("reference_tiny");
    let mut files = Vec::new();
    for rel in ["identifiers.json", "test_puzzles.json"] {
        files.push(PathBuf::from(rel));
    }
    for split in ["train", "test"] {
        for entry in std::fs::read_dir(reference.join(split)).unwrap() {
            files.push(PathBuf::from(split).join(entry.unwrap().file_name()));
        }
    }
    assert_eq!(files.len(), 2 + 2 * 6, "reference fixture incomplete");
    for rel in &files {
        let want = std::fs::read(reference.join(rel)).unwrap();
        let got = std::fs::read(out.join(rel)).unwrap_or_else(|e| panic!("{}: {e}", rel.display()));
        if got == want {
            continue;
        }
        if rel.extension().is_some_and(|e| e == "npy") {
            let name = rel.file_name().unwrap().to_string_lossy();
            let (g, w): (Vec<i64>, Vec<i64>) = if name.contains("inputs") || name.contains("labels")
            {
                let g = read_npy::<u8>(&out.join(rel)).unwrap();
                let w = read_npy::<u8>(&reference.join(rel)).unwrap();
                assert_eq!(g.shape, w.shape, "{}: shape", rel.display());
                (
                    g.data.iter().map(|&v| v as i64).collect(),
                    w.data.iter().map(|&v| v as i64).collect(),
                )
            } else {
                let g = read_npy::<i32>(&out.join(rel)).unwrap();
                let w = read_npy::<i32>(&reference.join(rel)).unwrap();
                assert_eq!(g.shape, w.shape, "{}: shape", rel.display());
                (
                    g.data.iter().map(|&v| v as i64).collect(),
                    w.data.iter().map(|&v| v as i64).collect(),
                )
            };
            if let Some(i) = g.iter().zip(&w).position(|(a, b)| a != b) {
                panic!(
                    "{}: element {i} (row {}) is {} where the reference has {}",
                    rel.display(),
                    i / 900,
                    g[i],
                    w[i]
                );
            }
        }
        panic!(
            "{} differs from the reference:\n ours: {}\n ref:  {}",
            rel.display(),
            String::from_utf8_lossy(&got[..got.len().min(400)]),
            String::from_utf8_lossy(&want[..want.len().min(400)])
        );
    }

    // The in-memory build produces the same arrays.
    let mem = build_arc_in_memory(&tiny_config(&out)).unwrap();
    for split in &mem.splits {
        let inputs = read_npy::<u8>(&reference.join(&split.name).join("all__inputs.npy")).unwrap();
        let labels = read_npy::<u8>(&reference.join(&split.name).join("all__labels.npy")).unwrap();
        let ids = read_npy::<i32>(
            &reference
                .join(&split.name)
                .join("all__puzzle_identifiers.npy"),
        )
        .unwrap();
        assert_eq!(split.inputs, inputs.data, "{} inputs", split.name);
        assert_eq!(split.labels, labels.data, "{} labels", split.name);
        assert_eq!(
            split.indices.puzzle_identifiers, ids.data,
            "{} identifiers",
            split.name
        );
    }
}

#[test]
fn existing_output_is_kept_unless_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("arc");
    std::fs::create_dir(&out).unwrap();
    let err = build_arc_dataset(&tiny_config(&out)).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    let mut c = tiny_config(&out);
    c.overwrite = true;
    build_arc_dataset(&c).unwrap();
    assert!(out.join("train/all__inputs.npy").is_file());
}
