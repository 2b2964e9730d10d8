//! libtorch is linked, found at run time without LD_LIBRARY_PATH, and computes correctly.

use std::process::Command;
use tch::{Device, Kind, Tensor};

#[test]
fn matmul_matches_a_hand_loop() {
    tch::manual_seed(42);
    let (m, k, n) = (7usize, 13usize, 5usize);
    let a = Tensor::randn([m as i64, k as i64], (Kind::Float, Device::Cpu));
    let b = Tensor::randn([k as i64, n as i64], (Kind::Float, Device::Cpu));
    let c = Vec::<f32>::try_from(a.matmul(&b).flatten(0, -1)).unwrap();
    let av = Vec::<f32>::try_from(a.flatten(0, -1)).unwrap();
    let bv = Vec::<f32>::try_from(b.flatten(0, -1)).unwrap();
    assert_eq!(c.len(), m * n);
    for i in 0..m {
        for j in 0..n {
            let want: f64 = (0..k)
                .map(|p| av[i * k + p] as f64 * bv[p * n + j] as f64)
                .sum();
            let got = c[i * n + j] as f64;
            assert!(
                (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                "{i},{j}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn autograd_gives_the_analytic_gradient() {
    // d/dx sum(x^3) = 3 x^2
    let xs = [0.5f32, -1.25, 2.0];
    let x = Tensor::from_slice(&xs).set_requires_grad(true);
    x.pow_tensor_scalar(3).sum(Kind::Float).backward();
    let g = Vec::<f32>::try_from(x.grad()).unwrap();
    for (gi, xi) in g.iter().zip(xs) {
        assert!((gi - 3.0 * xi * xi).abs() < 1e-6);
    }
}

#[test]
fn info_binary_runs_without_ld_library_path() {
    let out = Command::new(env!("CARGO_BIN_EXE_trm-train"))
        .arg("info")
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("spawn trm-train");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "trm-train info failed:\n{stdout}\n{stderr}"
    );
    let loaded = stdout
        .lines()
        .find_map(|l| l.strip_prefix("libtorch (loaded):"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no loaded version in:\n{stdout}"));
    assert!(loaded.starts_with("2.13."), "{stdout}");
    // The CUDA line agrees with what this process sees.
    let cuda = format!("cuda available:     {}", tch::Cuda::is_available());
    assert!(stdout.contains(&cuda), "{stdout}");
}

#[test]
fn info_binary_rejects_a_bad_device() {
    let out = Command::new(env!("CARGO_BIN_EXE_trm-train"))
        .args(["info", "--device", "tpu:0"])
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("spawn trm-train");
    assert!(!out.status.success());
}
