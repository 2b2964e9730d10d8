//! The optimizers, schedule and EMA against independent computations: an f64 transcription of
//! the AdamATan2 formula and an f32 transcription of the `adam-atan2` package's CUDA kernel, the
//! reference's sign-SGD written out per row, the cosine schedule's closed-form values, the EMA
//! recursion; plus exact resume from exported state.

use std::cell::Cell;
use std::rc::Rc;
use tch::{Device, Kind, Tensor, nn};
use trm_train::optim::{
    AdamAtan2, AdamAtan2Config, CosineSchedule, Ema, OptimError, SparseSignSgd,
    cosine_schedule_with_warmup_lr, total_train_steps, trainable_named,
};

// ---------------------------------------------------------------------------------------------
// Helpers

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.detach().to_kind(Kind::Double).reshape([-1])).unwrap()
}

fn bits(t: &Tensor) -> Vec<u32> {
    Vec::<f32>::try_from(t.detach().to_kind(Kind::Float).reshape([-1]))
        .unwrap()
        .into_iter()
        .map(f32::to_bits)
        .collect()
}

fn leaf(vals: &[f64], shape: &[i64], kind: Kind) -> Tensor {
    Tensor::from_slice(vals)
        .to_kind(kind)
        .reshape(shape)
        .set_requires_grad(true)
}

/// Makes `p.grad` equal `g` (after zeroing it) through a real backward pass.
fn set_grad(p: &mut Tensor, g: &[f64]) {
    p.zero_grad();
    let gt = Tensor::from_slice(g).to_kind(p.kind()).reshape(p.size());
    (&*p * gt).sum(p.kind()).backward();
}

/// A deterministic gradient for step `k` of a parameter with `n` elements, with mixed signs and
/// magnitudes; element 0 is zero on step 0.
fn grad_at(k: usize, n: usize, seed: f64) -> Vec<f64> {
    (0..n)
        .map(|i| {
            if k == 0 && i == 0 {
                0.0
            } else {
                (1.3 * i as f64 + 0.7 * k as f64 + seed).sin() * 10f64.powi((i % 3) as i32 - 2)
            }
        })
        .collect()
}

const LRS: [f64; 7] = [1e-2, 5e-3, 2e-2, 1e-3, 3e-2, 1e-2, 7e-3];

fn assert_close(got: &[f64], want: &[f64], atol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(worst <= atol, "{what}: max |diff| {worst:e} > {atol:e}");
}

// ---------------------------------------------------------------------------------------------
// AdamATan2

/// The formula of DESIGN.md / the package, written in f64 with the textbook EMA form.
struct AdamRef {
    p: Vec<f64>,
    m: Vec<f64>,
    v: Vec<f64>,
    t: i32,
}

impl AdamRef {
    fn step(&mut self, g: &[f64], lr: f64, c: AdamAtan2Config) {
        self.t += 1;
        let bc1 = 1.0 - c.beta1.powi(self.t);
        let bc2 = 1.0 - c.beta2.powi(self.t);
        let coords = self.p.iter_mut().zip(&mut self.m).zip(&mut self.v).zip(g);
        for (((p, m), v), &g) in coords {
            *p *= 1.0 - lr * c.weight_decay;
            *m = c.beta1 * *m + (1.0 - c.beta1) * g;
            *v = c.beta2 * *v + (1.0 - c.beta2) * g * g;
            *p -= lr / bc1 * m.atan2(v.sqrt() / bc2.sqrt());
        }
    }
}

fn p0(n: usize) -> Vec<f64> {
    (0..n).map(|i| 0.5 - 0.13 * i as f64).collect()
}

#[test]
fn adam_atan2_matches_f64_formula() {
    let c = AdamAtan2Config::reference();
    let (na, nb) = (6, 4);
    let mut a = leaf(&p0(na), &[2, 3], Kind::Double);
    let mut b = leaf(&p0(nb), &[4], Kind::Double);
    let mut opt = AdamAtan2::new(
        vec![
            ("a".into(), a.shallow_clone()),
            ("b".into(), b.shallow_clone()),
        ],
        c,
    )
    .unwrap();
    let mut ra = AdamRef {
        p: p0(na),
        m: vec![0.0; na],
        v: vec![0.0; na],
        t: 0,
    };
    let mut rb = AdamRef {
        p: p0(nb),
        m: vec![0.0; nb],
        v: vec![0.0; nb],
        t: 0,
    };
    for (k, &lr) in LRS.iter().enumerate() {
        let (ga, gb) = (grad_at(k, na, 0.0), grad_at(k, nb, 2.0));
        set_grad(&mut a, &ga);
        set_grad(&mut b, &gb);
        opt.step(lr).unwrap();
        ra.step(&ga, lr, c);
        rb.step(&gb, lr, c);
        assert_close(
            &values(&a),
            &ra.p,
            1e-13,
            &format!("a after step {}", k + 1),
        );
        assert_close(
            &values(&b),
            &rb.p,
            1e-13,
            &format!("b after step {}", k + 1),
        );
    }
    assert_eq!(opt.step_count("a"), Some(LRS.len() as u64));
    // The test is sensitive: moving by the learning rate shows at this tolerance.
    assert!((values(&a)[1] - p0(na)[1]).abs() > 1e-3);
}

/// The package's CUDA kernel (`adam_math` in csrc/adam_atan2.cu), transcribed in f32 scalar
/// arithmetic: scalars computed in f64 then rounded, lerp as fma(t, v1, fma(-t, v0, v0)).
fn kernel_f32(
    p: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    g: &[f32],
    step: f32,
    lr: f64,
    c: AdamAtan2Config,
) {
    let bc1 = 1.0 - c.beta1.powf(f64::from(step));
    let bc2 = 1.0 - c.beta2.powf(f64::from(step));
    let step_size = (lr / bc1) as f32;
    let wd_alpha = (1.0 - lr * c.weight_decay) as f32;
    let bc2_sqrt = bc2.sqrt() as f32;
    let (mb1, mb2) = ((1.0 - c.beta1) as f32, (1.0 - c.beta2) as f32);
    let lerp = |v0: f32, v1: f32, t: f32| t.mul_add(v1, (-t).mul_add(v0, v0));
    for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
        *p *= wd_alpha;
        *m = lerp(*m, g, mb1);
        *v = lerp(*v, g * g, mb2);
        let denom = v.sqrt() / bc2_sqrt;
        *p -= step_size * m.atan2(denom);
    }
}

#[test]
fn adam_atan2_f32_matches_package_kernel() {
    let c = AdamAtan2Config {
        beta1: 0.9,
        beta2: 0.95,
        weight_decay: 0.1,
    };
    let n = 9;
    let mut p = leaf(&p0(n), &[3, 3], Kind::Float);
    let mut opt = AdamAtan2::new(vec![("w".into(), p.shallow_clone())], c).unwrap();
    let mut kp: Vec<f32> = p0(n).iter().map(|&x| x as f32).collect();
    let (mut km, mut kv) = (vec![0f32; n], vec![0f32; n]);
    for (k, &lr) in LRS.iter().enumerate() {
        let g = grad_at(k, n, 1.0);
        let g32: Vec<f32> = g.iter().map(|&x| x as f32).collect();
        set_grad(
            &mut p,
            &g32.iter().map(|&x| f64::from(x)).collect::<Vec<_>>(),
        );
        opt.step(lr).unwrap();
        kernel_f32(&mut kp, &mut km, &mut kv, &g32, (k + 1) as f32, lr, c);
        let want: Vec<f64> = kp.iter().map(|&x| f64::from(x)).collect();
        // A few f32 ulps of values below 1.
        assert_close(&values(&p), &want, 4e-7, &format!("step {}", k + 1));
    }
    let sd = opt.state_dict().unwrap();
    let m = sd.iter().find(|(n, _)| n == "w.exp_avg").unwrap();
    let kmf: Vec<f64> = km.iter().map(|&x| f64::from(x)).collect();
    // lerp with fma (kernel) and libtorch's lerp differ by an ulp or so.
    assert_close(&values(&m.1), &kmf, 1e-7, "exp_avg");
}

#[test]
fn adam_atan2_zero_gradient_is_pure_decoupled_decay() {
    // atan2(0, 0) = 0: with a zero gradient only the weight decay acts, p *= 1 - lr * wd.
    let c = AdamAtan2Config {
        beta1: 0.9,
        beta2: 0.99,
        weight_decay: 0.5,
    };
    let mut p = leaf(&[1.0, -2.0, 0.25], &[3], Kind::Double);
    let mut opt = AdamAtan2::new(vec![("p".into(), p.shallow_clone())], c).unwrap();
    set_grad(&mut p, &[0.0, 0.0, 0.0]);
    opt.step(0.1).unwrap();
    assert_close(&values(&p), &[0.95, -1.9, 0.2375], 1e-15, "decayed");
}

#[test]
fn adam_atan2_skips_parameters_without_gradient() {
    let c = AdamAtan2Config::reference();
    let mut used = leaf(&[1.0, 2.0], &[2], Kind::Float);
    let unused = leaf(&[3.0, 4.0], &[2], Kind::Float);
    let mut opt = AdamAtan2::new(
        vec![
            ("used".into(), used.shallow_clone()),
            ("unused".into(), unused.shallow_clone()),
        ],
        c,
    )
    .unwrap();
    set_grad(&mut used, &[0.5, -0.5]);
    opt.step(0.01).unwrap();
    assert_eq!(values(&unused), vec![3.0, 4.0]);
    assert_ne!(values(&used), vec![1.0, 2.0]);
    assert_eq!(opt.step_count("unused"), Some(0));
    assert_eq!(opt.step_count("used"), Some(1));
    let names: Vec<String> = opt
        .state_dict()
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, vec!["used.exp_avg", "used.exp_avg_sq", "used.step"]);
}

/// Runs `steps` steps of LRS (from `from`) on two f32 parameters; returns their final bits.
fn run_adam(a: &mut Tensor, b: &mut Tensor, opt: &mut AdamAtan2, from: usize, steps: usize) {
    for k in from..from + steps {
        set_grad(a, &grad_at(k, 6, 0.3));
        set_grad(b, &grad_at(k, 4, 1.7));
        opt.step(LRS[k % LRS.len()]).unwrap();
    }
}

#[test]
fn adam_atan2_state_round_trip_resumes_bit_for_bit() {
    let c = AdamAtan2Config::reference();
    let mut a = leaf(&p0(6), &[2, 3], Kind::Float);
    let mut b = leaf(&p0(4), &[4], Kind::Float);
    let named = |a: &Tensor, b: &Tensor| {
        vec![
            ("x.a".to_string(), a.shallow_clone()),
            ("x.b".to_string(), b.shallow_clone()),
        ]
    };
    let mut opt = AdamAtan2::new(named(&a, &b), c).unwrap();
    run_adam(&mut a, &mut b, &mut opt, 0, 3);
    let state = opt.state_dict().unwrap();
    let (a_saved, b_saved) = (a.detach().copy(), b.detach().copy());
    run_adam(&mut a, &mut b, &mut opt, 3, 4);

    // Resume from the saved parameters and state.
    let mut a2 = a_saved.copy().set_requires_grad(true);
    let mut b2 = b_saved.copy().set_requires_grad(true);
    let mut opt2 = AdamAtan2::new(named(&a2, &b2), c).unwrap();
    opt2.load_state_dict(&state).unwrap();
    assert_eq!(opt2.step_count("x.a"), Some(3));
    run_adam(&mut a2, &mut b2, &mut opt2, 3, 4);
    assert_eq!(bits(&a), bits(&a2));
    assert_eq!(bits(&b), bits(&b2));

    // Without the state the same steps give other values: the state matters.
    let mut a3 = a_saved.copy().set_requires_grad(true);
    let mut b3 = b_saved.copy().set_requires_grad(true);
    let mut opt3 = AdamAtan2::new(named(&a3, &b3), c).unwrap();
    run_adam(&mut a3, &mut b3, &mut opt3, 3, 4);
    assert_ne!(bits(&a), bits(&a3));
}

#[test]
fn adam_atan2_rejects_bad_state_and_keeps_its_own() {
    let c = AdamAtan2Config::reference();
    let mut p = leaf(&[1.0, 2.0, 3.0], &[3], Kind::Float);
    let mut opt = AdamAtan2::new(vec![("p".into(), p.shallow_clone())], c).unwrap();
    set_grad(&mut p, &[1.0, -1.0, 0.5]);
    opt.step(0.01).unwrap();
    let good = opt.state_dict().unwrap();
    let with = |name: &str, t: Tensor| -> Vec<(String, Tensor)> {
        good.iter()
            .map(|(n, v)| {
                (
                    n.clone(),
                    if n == name {
                        t.shallow_clone()
                    } else {
                        v.shallow_clone()
                    },
                )
            })
            .collect()
    };
    let bad_shape = with("p.exp_avg", Tensor::zeros([4], (Kind::Float, Device::Cpu)));
    assert!(matches!(
        opt.load_state_dict(&bad_shape),
        Err(OptimError::State(_))
    ));
    let bad_step = with("p.step", Tensor::from(-1i64));
    assert!(matches!(
        opt.load_state_dict(&bad_step),
        Err(OptimError::State(_))
    ));
    let mut unknown = with("p.step", Tensor::from(1i64));
    unknown.push(("q.step".into(), Tensor::from(1i64)));
    assert!(matches!(
        opt.load_state_dict(&unknown),
        Err(OptimError::State(_))
    ));
    let partial: Vec<(String, Tensor)> = good
        .iter()
        .filter(|(n, _)| n != "p.exp_avg_sq")
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    assert!(matches!(
        opt.load_state_dict(&partial),
        Err(OptimError::State(_))
    ));
    // Still the state it had.
    assert_eq!(opt.step_count("p"), Some(1));
    let now = opt.state_dict().unwrap();
    for ((n1, t1), (n2, t2)) in good.iter().zip(&now) {
        assert_eq!(n1, n2);
        assert_eq!(bits(t1), bits(t2));
    }
    assert!(AdamAtan2::new(vec![], AdamAtan2Config { beta1: 1.0, ..c }).is_err());
    assert!(
        AdamAtan2::new(
            vec![],
            AdamAtan2Config {
                weight_decay: -0.1,
                ..c
            }
        )
        .is_err()
    );
    assert!(opt.step(f64::NAN).is_err());
}

#[test]
fn adam_atan2_over_a_var_store_leaves_buffers_alone() {
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let w = root.var("w", &[2, 2], nn::Init::Const(0.5));
    let buf = root.zeros_no_train("buf", &[3]);
    let mut opt = AdamAtan2::from_var_store(&vs, AdamAtan2Config::reference()).unwrap();
    assert_eq!(opt.param_names().collect::<Vec<_>>(), vec!["w"]);
    (&w * 2.0 + buf.sum(Kind::Float))
        .sum(Kind::Float)
        .backward();
    opt.step(0.1).unwrap();
    assert!(values(&w).iter().all(|&x| x < 0.5));
    assert_eq!(values(&buf), vec![0.0; 3]);
    opt.zero_grad();
    assert_eq!(values(&w.grad()), vec![0.0; 4]);
}

#[test]
fn adam_atan2_bf16_computes_in_f32() {
    // First step: the update of a bf16 parameter is the f32 update of its values, rounded once.
    let c = AdamAtan2Config::reference();
    let init = [0.3, -1.7, 2.5, 0.01];
    let g = [0.2, -0.05, 1e-3, -3.0];
    let mut half = leaf(&init, &[4], Kind::BFloat16);
    let rounded = values(&half);
    let mut full = leaf(&rounded, &[4], Kind::Float);
    let mut o1 = AdamAtan2::new(vec![("p".into(), half.shallow_clone())], c).unwrap();
    let mut o2 = AdamAtan2::new(vec![("p".into(), full.shallow_clone())], c).unwrap();
    set_grad(&mut half, &g);
    let g_rounded = values(&half.grad());
    set_grad(&mut full, &g_rounded);
    o1.step(0.05).unwrap();
    o2.step(0.05).unwrap();
    assert_eq!(half.kind(), Kind::BFloat16);
    assert_eq!(bits(&half), bits(&full.to_kind(Kind::BFloat16)));
    assert_ne!(values(&half), rounded);
}

/// Run on a CUDA machine with `cargo test -p trm-train --test optim -- --ignored`; without a
/// CUDA device it fails.
#[test]
#[ignore = "needs CUDA (run with --ignored on a CUDA machine)"]
fn adam_atan2_on_cuda_matches_cpu() {
    assert!(
        tch::Cuda::is_available(),
        "no CUDA device (or a libtorch without CUDA): this test needs one"
    );
    let c = AdamAtan2Config::reference();
    let mut cpu = leaf(&p0(6), &[2, 3], Kind::Float);
    let mut gpu = cpu
        .detach()
        .to_device(Device::Cuda(0))
        .set_requires_grad(true);
    let mut o1 = AdamAtan2::new(vec![("p".into(), cpu.shallow_clone())], c).unwrap();
    let mut o2 = AdamAtan2::new(vec![("p".into(), gpu.shallow_clone())], c).unwrap();
    for (k, &lr) in LRS.iter().enumerate() {
        let g = grad_at(k, 6, 0.9);
        set_grad(&mut cpu, &g);
        gpu.zero_grad();
        let gt = Tensor::from_slice(&g)
            .to_kind(Kind::Float)
            .reshape([2, 3])
            .to_device(Device::Cuda(0));
        (&gpu * gt).sum(Kind::Float).backward();
        o1.step(lr).unwrap();
        o2.step(lr).unwrap();
    }
    assert_close(&values(&gpu), &values(&cpu), 1e-6, "cuda vs cpu");
}

// ---------------------------------------------------------------------------------------------
// Sign-SGD

fn table() -> Tensor {
    let v: Vec<f32> = (0..15).map(|i| 0.1 * i as f32 - 0.7).collect();
    Tensor::from_slice(&v).reshape([5, 3])
}

/// The reference's update written per row in f32: sum gradient rows per id, then
/// `p * (1 - lr * wd) - lr * sign(sum)` (libtorch rounds each f64 scalar to f32).
fn sign_sgd_expected(
    table: &[f32],
    d: usize,
    ids: &[i64],
    grads: &[f32],
    lr: f64,
    wd: f64,
) -> Vec<f32> {
    let mut out = table.to_vec();
    let mut uniq: Vec<i64> = ids.to_vec();
    uniq.sort_unstable();
    uniq.dedup();
    for &id in &uniq {
        for j in 0..d {
            let s: f64 = ids
                .iter()
                .enumerate()
                .filter(|(_, i)| **i == id)
                .map(|(r, _)| f64::from(grads[r * d + j]))
                .sum();
            let sign = if s > 0.0 {
                1.0f32
            } else if s < 0.0 {
                -1.0
            } else {
                0.0
            };
            let idx = id as usize * d + j;
            out[idx] = out[idx] * ((1.0 - lr * wd) as f32) + (-lr as f32) * sign;
        }
    }
    out
}

#[test]
fn sign_sgd_sums_repeated_ids_before_the_sign() {
    let w = table();
    let before = Vec::<f32>::try_from(w.reshape([-1])).unwrap();
    let ids = [3i64, 1, 3, 0];
    // Id 3's two rows cancel in columns 0 and 2 and disagree in sign in column 1: a sign taken
    // per row and then summed would give another result.
    let grads: [f32; 12] = [
        1.0, -2.0, 0.5, 0.3, 0.0, -0.1, -1.0, 1.0, -0.5, -4.0, 2.0, 1e-9,
    ];
    let (lr, wd) = (0.01, 0.1);
    let opt = SparseSignSgd::new(wd).unwrap();
    opt.step(
        &w,
        &Tensor::from_slice(&ids).to_kind(Kind::Int),
        &Tensor::from_slice(&grads).reshape([4, 3]),
        lr,
    )
    .unwrap();
    let got = Vec::<f32>::try_from(w.reshape([-1])).unwrap();
    let want = sign_sgd_expected(&before, 3, &ids, &grads, lr, wd);
    let gb: Vec<u32> = got.iter().map(|x| x.to_bits()).collect();
    let wb: Vec<u32> = want.iter().map(|x| x.to_bits()).collect();
    assert_eq!(gb, wb, "got {got:?}, want {want:?}");
    // Rows 2 and 4 were not in the batch: unchanged; row 3 column 0 got decay only.
    for j in 0..3 {
        assert_eq!(got[2 * 3 + j], before[2 * 3 + j]);
        assert_eq!(got[4 * 3 + j], before[4 * 3 + j]);
    }
    assert_eq!(got[9], before[9] * ((1.0 - lr * wd) as f32));
}

#[test]
fn sign_sgd_gathers_through_the_hook() {
    // A stand-in for two ranks: the hook appends another rank's rows.
    let calls = Rc::new(Cell::new(0));
    let seen = calls.clone();
    let other_ids = [2i64, 1];
    let other_grads: [f32; 6] = [0.5, 0.5, -0.5, -3.0, 0.0, 0.0];
    let hook = move |ids: &Tensor, g: &Tensor| -> Result<(Tensor, Tensor), OptimError> {
        seen.set(seen.get() + 1);
        let oi = Tensor::from_slice(&other_ids).to_kind(ids.kind());
        let og = Tensor::from_slice(&other_grads).reshape([2, 3]);
        Ok((Tensor::cat(&[ids, &oi], 0), Tensor::cat(&[g, &og], 0)))
    };
    let (lr, wd) = (0.05, 0.2);
    let opt = SparseSignSgd::with_gather(wd, hook).unwrap();
    let w = table();
    let before = Vec::<f32>::try_from(w.reshape([-1])).unwrap();
    let ids = [1i64, 4];
    let grads: [f32; 6] = [1.0, -1.0, 0.0, 0.0, 0.0, 2.0];
    opt.step(
        &w,
        &Tensor::from_slice(&ids),
        &Tensor::from_slice(&grads).reshape([2, 3]),
        lr,
    )
    .unwrap();
    assert_eq!(calls.get(), 1);
    let all_ids = [1i64, 4, 2, 1];
    let all_grads: Vec<f32> = grads.iter().chain(&other_grads).copied().collect();
    let want = sign_sgd_expected(&before, 3, &all_ids, &all_grads, lr, wd);
    assert_eq!(Vec::<f32>::try_from(w.reshape([-1])).unwrap(), want);
}

#[test]
fn sign_sgd_rejects_bad_input_without_touching_the_table() {
    let w = table();
    let before = bits(&w);
    let opt = SparseSignSgd::new(0.1).unwrap();
    let g = Tensor::ones([2, 3], (Kind::Float, Device::Cpu));
    assert!(
        opt.step(&w, &Tensor::from_slice(&[0i64, 5]), &g, 0.1)
            .is_err()
    );
    assert!(
        opt.step(&w, &Tensor::from_slice(&[-1i64, 0]), &g, 0.1)
            .is_err()
    );
    assert!(opt.step(&w, &Tensor::from_slice(&[0i64]), &g, 0.1).is_err());
    assert!(
        opt.step(&w, &Tensor::from_slice(&[0.0f32, 1.0]), &g, 0.1)
            .is_err()
    );
    assert!(
        opt.step(
            &w,
            &Tensor::from_slice(&[0i64, 1]),
            &Tensor::ones([2, 4], (Kind::Float, Device::Cpu)),
            0.1
        )
        .is_err()
    );
    assert!(
        opt.step(&w, &Tensor::from_slice(&[0i64, 1]), &g, -1.0)
            .is_err()
    );
    assert_eq!(bits(&w), before);
    assert!(SparseSignSgd::new(-0.1).is_err());
}

// ---------------------------------------------------------------------------------------------
// Schedule

fn rel_eq(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-14 * b.abs().max(1e-300)
}

#[test]
fn schedule_warmup_and_cosine_tail() {
    let (base, min) = (1e-3, 0.1);
    let s = CosineSchedule::new(10, 110, min);
    assert_eq!(s.lr(base, 0), 0.0);
    assert!(rel_eq(s.lr(base, 1), 1e-4));
    assert!(rel_eq(s.lr(base, 5), 5e-4));
    // End of warmup: the cosine starts at its top.
    assert!(rel_eq(s.lr(base, 10), base));
    // A quarter of the decay: cos(pi / 4) = sqrt(2) / 2.
    let quarter = base * (min + (1.0 - min) * 0.5 * (1.0 + std::f64::consts::FRAC_1_SQRT_2));
    assert!(
        rel_eq(s.lr(base, 35), quarter),
        "{} vs {quarter}",
        s.lr(base, 35)
    );
    // Half way: min + (1 - min) / 2 (cos(pi/2) is 6e-17 in f64).
    assert!((s.lr(base, 60) - base * 0.55).abs() < 1e-18);
    // The end: the floor.
    assert!(rel_eq(s.lr(base, 110), base * min));
    // Monotone decreasing after warmup.
    let tail: Vec<f64> = (10..=110).map(|k| s.lr(base, k)).collect();
    assert!(tail.windows(2).all(|w| w[1] < w[0]));
    // The paper configs: lr_min_ratio 1 is constant after warmup.
    let flat = CosineSchedule::new(2000, 50_000, 1.0);
    assert!(rel_eq(flat.lr(1e-4, 1000), 5e-5));
    for k in [2000, 2001, 30_000, 50_000] {
        assert_eq!(flat.lr(1e-4, k), 1e-4);
    }
    // No warmup: step 0 is already the top; total <= warmup does not divide by zero.
    assert_eq!(
        cosine_schedule_with_warmup_lr(0, 0.5, 0, 100, 0.0, 0.5),
        0.5
    );
    assert!(cosine_schedule_with_warmup_lr(7, 0.5, 5, 3, 0.0, 0.5).is_finite());
}

#[test]
fn total_steps_as_the_reference_estimates() {
    // int(2 * 1000 * 1.5 / 768) = int(3.90625)
    assert_eq!(total_train_steps(2, 1000, 1.5, 768), 3);
    // Sudoku-Extreme 1k: 50000 epochs * 1000 groups * 1.0 / 768 = 65104.16...
    assert_eq!(total_train_steps(50_000, 1000, 1.0, 768), 65_104);
    assert_eq!(total_train_steps(1, 1, 1.0, 0), 0);
}

// ---------------------------------------------------------------------------------------------
// EMA

#[test]
fn ema_after_n_steps_follows_the_recursion() {
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let _buf = root.zeros_no_train("buf", &[1]);
    let w = root.var_copy("w", &Tensor::from_slice(&[1.0f64, -2.0, 0.5]));
    let mut vs = vs;
    vs.double();
    let mu = 0.9;
    let mut ema = Ema::register(&vs, mu).unwrap();
    assert_eq!(ema.names().collect::<Vec<_>>(), vec!["w"]);
    assert_eq!(w.kind(), Kind::Double);
    let mut shadow = vec![1.0, -2.0, 0.5];
    for k in 0..5 {
        let new: Vec<f64> = (0..3)
            .map(|i| (k as f64 + 1.0) * (i as f64 - 1.0) + 0.25)
            .collect();
        tch::no_grad(|| w.shallow_clone().copy_(&Tensor::from_slice(&new)));
        ema.update().unwrap();
        for i in 0..3 {
            shadow[i] = (1.0 - mu) * new[i] + mu * shadow[i];
        }
        assert_close(
            &values(ema.shadow("w").unwrap()),
            &shadow,
            1e-14,
            &format!("step {k}"),
        );
    }
    // A constant parameter c: shadow_N = c + (s_0 - c) * mu^N.
    let mut ema2 = Ema::new(vec![("c".into(), Tensor::from_slice(&[3.0f64]))], 0.999).unwrap();
    let c = Tensor::from_slice(&[3.0f64]);
    let mut e3 = Ema::new(vec![("c".into(), c.shallow_clone())], 0.999).unwrap();
    tch::no_grad(|| c.shallow_clone().copy_(&Tensor::from_slice(&[1.0f64])));
    for _ in 0..100 {
        e3.update().unwrap();
        ema2.update().unwrap();
    }
    let want = 1.0 + 2.0 * 0.999f64.powi(100);
    assert_close(
        &values(e3.shadow("c").unwrap()),
        &[want],
        1e-12,
        "closed form",
    );
    assert_close(
        &values(ema2.shadow("c").unwrap()),
        &[3.0],
        0.0,
        "fixed point",
    );
}

#[test]
fn ema_covers_trainable_parameters_only() {
    let config = trm_nostd::Config {
        hidden_size: 16,
        num_heads: 2,
        expansion: 4.0,
        l_layers: 1,
        h_cycles: 2,
        l_cycles: 2,
        mlp_t: false,
        pos_encodings: trm_nostd::PosEncoding::Rope,
        puzzle_emb_ndim: 16,
        puzzle_emb_len: 1,
        num_puzzle_identifiers: 3,
        vocab_size: 11,
        seq_len: 9,
        halt_max_steps: 4,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let _model = trm_train::model::Trm::new(&vs.root(), &config).unwrap();
    let ema = Ema::register(&vs, 0.999).unwrap();
    let names: Vec<&str> = ema.names().collect();
    let all = vs.variables();
    assert!(all.len() > names.len());
    for (n, t) in &all {
        assert_eq!(names.contains(&n.as_str()), t.requires_grad(), "{n}");
    }
    assert!(
        names
            .iter()
            .all(|n| !n.contains("puzzle_emb") && !n.contains("_init")),
        "{names:?}"
    );
    let adam = AdamAtan2::from_var_store(&vs, AdamAtan2Config::reference()).unwrap();
    assert_eq!(adam.param_names().collect::<Vec<_>>(), names);
    assert_eq!(trainable_named(&vs).len(), names.len());
}

#[test]
fn ema_swap_in_and_out_and_round_trip() {
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let w = root.var_copy("w", &Tensor::from_slice(&[1.0f32, 2.0]));
    let mut ema = Ema::register(&vs, 0.5).unwrap();
    let set = |v: &[f32]| tch::no_grad(|| w.shallow_clone().copy_(&Tensor::from_slice(v)));
    set(&[3.0, 4.0]);
    ema.update().unwrap(); // shadow = (2, 3)
    set(&[5.0, 6.5]);
    let inside = ema.with_ema(|| values(&w)).unwrap();
    assert_eq!(inside, vec![2.0, 3.0]);
    assert_eq!(values(&w), vec![5.0, 6.5]);

    // Exact resume of the EMA state.
    let saved = ema.state_dict().unwrap();
    let mut other = Ema::new(vec![("w".into(), w.shallow_clone())], 0.5).unwrap();
    assert_ne!(
        bits(other.shadow("w").unwrap()),
        bits(ema.shadow("w").unwrap())
    );
    other.load_state_dict(&saved).unwrap();
    for v in [[0.1f32, 0.2], [0.3, -0.7]] {
        set(&v);
        ema.update().unwrap();
        other.update().unwrap();
    }
    assert_eq!(
        bits(other.shadow("w").unwrap()),
        bits(ema.shadow("w").unwrap())
    );
    let bad = vec![(
        "v".to_string(),
        Tensor::zeros([2], (Kind::Float, Device::Cpu)),
    )];
    assert!(other.load_state_dict(&bad).is_err());
    assert!(Ema::register(&vs, 1.5).is_err());

    ema.copy_to_params().unwrap();
    assert_eq!(bits(&w), bits(ema.shadow("w").unwrap()));
}
