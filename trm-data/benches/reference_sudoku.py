"""Runs the REFERENCE Sudoku builder (TRM dataset/build_sudoku_dataset.py) on local CSVs, for
comparison with benches/build_sudoku.rs. Nothing in the reference is patched: only
`hf_hub_download` in the imported module's namespace is replaced to return the local file.

    git -C <TRM mirror> archive HEAD dataset | tar -x -C /tmp/trm-ref
    /usr/bin/time -v python reference_sudoku.py /tmp/trm-ref <csv dir> <out dir> <num_aug>
"""
import os
import sys

ref_root, csv_dir, out_dir, num_aug = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sys.path.insert(0, os.path.join(ref_root, "dataset"))
import build_sudoku_dataset as ref  # noqa: E402

ref.hf_hub_download = lambda repo, filename, repo_type=None: os.path.join(csv_dir, filename)
cfg = ref.DataProcessConfig(source_repo="local", output_dir=out_dir, num_aug=num_aug)
ref.convert_subset("train", cfg)
ref.convert_subset("test", cfg)
