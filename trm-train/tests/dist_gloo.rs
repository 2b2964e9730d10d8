//! `trm_train::dist` over Gloo on loopback: 2 and 3 real processes (this test binary re-run as
//! workers through the ignored test `worker_entry`) run every collective on CPU tensors and
//! check the values against sums computed here; an unreachable store, ranks disagreeing on the
//! world size, and a missing rank give clear errors within the timeout.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tch::{Device, Kind, Tensor};
use trm_train::dist::{Backend, DistConfig, DistError, ProcessGroup, ReduceOp, StoreMode};

const ROLE: &str = "TRM_DIST_TEST_ROLE";

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

fn to_vec(t: &Tensor) -> Vec<f64> {
    let t = t.to_kind(Kind::Double).flatten(0, -1);
    (0..t.size()[0]).map(|i| t.double_value(&[i])).collect()
}

/// The body of a worker process: every collective, checked against values computed from the
/// rank numbers alone.
fn run_collectives() {
    let pg = ProcessGroup::from_env(Backend::Gloo, Duration::from_secs(20)).expect("join");
    let (r, n) = (pg.rank(), pg.world_size());
    let base: Vec<f64> = (1..=5).map(f64::from).collect();

    // all_reduce sum: rank r contributes (r+1)*base.
    let mine: Vec<f32> = base
        .iter()
        .map(|b| (*b * (r as f64 + 1.0)) as f32)
        .collect();
    let mut t = Tensor::from_slice(&mine);
    pg.all_reduce(&mut t, ReduceOp::Sum).expect("all_reduce");
    let ranks_sum: f64 = (0..n).map(|k| k as f64 + 1.0).sum();
    let want: Vec<f64> = base.iter().map(|b| b * ranks_sum).collect();
    assert_eq!(to_vec(&t), want, "all_reduce sum on rank {r}");

    // all_reduce max on int64: rank r contributes 10*r - 7.
    let mut t = Tensor::from_slice(&[10 * r as i64 - 7, -(r as i64)]);
    pg.all_reduce(&mut t, ReduceOp::Max)
        .expect("all_reduce max");
    let want_max = (0..n).map(|k| 10 * k as i64 - 7).max().unwrap_or(0);
    let want_max2 = (0..n).map(|k| -(k as i64)).max().unwrap_or(0);
    assert_eq!(
        to_vec(&t),
        vec![want_max as f64, want_max2 as f64],
        "all_reduce max"
    );

    // all_gather: rank r sends [100r, 100r+1, 100r+2].
    let t = Tensor::from_slice(&[
        100.0 * r as f64,
        100.0 * r as f64 + 1.0,
        100.0 * r as f64 + 2.0,
    ]);
    let got = pg.all_gather(&t).expect("all_gather");
    assert_eq!(got.len(), n);
    for (i, g) in got.iter().enumerate() {
        let w = 100.0 * i as f64;
        assert_eq!(
            to_vec(g),
            vec![w, w + 1.0, w + 2.0],
            "all_gather slot {i} on rank {r}"
        );
    }

    // broadcast from the last rank: only it holds the values.
    let root = n - 1;
    let payload = [3.5f32, -1.25, 8.0, 0.5];
    let mut t = if r == root {
        Tensor::from_slice(&payload)
    } else {
        Tensor::zeros([4], (Kind::Float, Device::Cpu))
    };
    pg.broadcast(&mut t, root).expect("broadcast");
    assert_eq!(
        to_vec(&t),
        payload.iter().map(|v| f64::from(*v)).collect::<Vec<_>>(),
        "broadcast"
    );

    // reduce sum onto rank 0: rank r contributes r+1 in every element.
    let mut t = Tensor::full([6], r as f64 + 1.0, (Kind::Float, Device::Cpu));
    pg.reduce(&mut t, 0, ReduceOp::Sum).expect("reduce");
    if r == 0 {
        assert_eq!(to_vec(&t), vec![ranks_sum; 6], "reduce on the root");
    }

    // Errors that never reach the backend: a bad root, a non-contiguous tensor.
    let mut t = Tensor::zeros([2], (Kind::Float, Device::Cpu));
    assert!(matches!(
        pg.broadcast(&mut t, n),
        Err(DistError::InvalidArgument(_))
    ));
    let mut nc = Tensor::zeros([3, 4], (Kind::Float, Device::Cpu)).transpose(0, 1);
    assert!(matches!(
        pg.all_reduce(&mut nc, ReduceOp::Sum),
        Err(DistError::InvalidArgument(_))
    ));

    // Throughput: a 5M-float all_reduce.
    let mut big = Tensor::ones([5_000_000], (Kind::Float, Device::Cpu));
    pg.barrier().expect("barrier");
    let t0 = Instant::now();
    pg.all_reduce(&mut big, ReduceOp::Sum)
        .expect("big all_reduce");
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let (lo, hi) = (big.min().double_value(&[]), big.max().double_value(&[]));
    assert_eq!((lo, hi), (n as f64, n as f64), "5M all_reduce");
    eprintln!("rank {r}/{n}: all_reduce of 5M f32 took {ms:.1} ms");

    pg.barrier().expect("final barrier");
    println!("worker {r} ok");
}

/// Joins and expects failure; prints the error for the parent to check.
fn run_expect_join_error() {
    let t0 = Instant::now();
    match ProcessGroup::from_env(Backend::Gloo, Duration::from_secs(3)) {
        Ok(_) => panic!("joining unexpectedly succeeded"),
        Err(e) => println!("JOIN-ERROR after {:.1}s: {e:?}", t0.elapsed().as_secs_f64()),
    }
}

/// Entry point of the worker processes (does nothing in a normal `--ignored` run).
#[test]
#[ignore = "a worker process of the other tests, run by them"]
fn worker_entry() {
    match std::env::var(ROLE).as_deref() {
        Ok("collectives") => run_collectives(),
        Ok("join-error") => run_expect_join_error(),
        _ => {}
    }
}

fn spawn(role: &str, rank: usize, world: usize, port: u16) -> Child {
    Command::new(std::env::current_exe().expect("current exe"))
        .args([
            "worker_entry",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, role)
        .env("RANK", rank.to_string())
        .env("LOCAL_RANK", rank.to_string())
        .env("WORLD_SIZE", world.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .env_remove("TORCHELASTIC_RESTART_COUNT")
        .env_remove("TORCHELASTIC_USE_AGENT_STORE")
        .env_remove("GLOO_SOCKET_IFNAME")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn worker")
}

/// Waits for every child (killing all after `limit`), returning (success, stdout, stderr).
fn collect(children: Vec<Child>, limit: Duration) -> Vec<(bool, String, String)> {
    let t0 = Instant::now();
    let mut children: Vec<Option<Child>> = children.into_iter().map(Some).collect();
    loop {
        let done = children.iter_mut().all(|c| match c {
            Some(ch) => ch.try_wait().ok().flatten().is_some(),
            None => true,
        });
        if done {
            break;
        }
        if t0.elapsed() > limit {
            for ch in children.iter_mut().flatten() {
                let _ = ch.kill();
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    children
        .into_iter()
        .flatten()
        .map(|ch| {
            let out = ch.wait_with_output().expect("worker output");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
        .collect()
}

fn collectives_with(world: usize) {
    let port = free_port();
    let t0 = Instant::now();
    let children: Vec<Child> = (0..world)
        .map(|r| spawn("collectives", r, world, port))
        .collect();
    let results = collect(children, Duration::from_secs(60));
    for (r, (ok, out, err)) in results.iter().enumerate() {
        assert!(*ok, "rank {r} failed:\n{out}\n{err}");
        assert!(
            out.contains(&format!("worker {r} ok")),
            "rank {r}: {out}\n{err}"
        );
        for line in err.lines().filter(|l| l.contains("all_reduce of 5M")) {
            eprintln!("{line}");
        }
    }
    eprintln!("{world} ranks: {:.2}s in all", t0.elapsed().as_secs_f64());
}

#[test]
fn collectives_two_ranks() {
    collectives_with(2);
}

#[test]
fn collectives_three_ranks() {
    collectives_with(3);
}

#[test]
fn unreachable_store_times_out_with_a_clear_error() {
    let cfg = DistConfig {
        rank: 1,
        world_size: 2,
        local_rank: 1,
        master_addr: "127.0.0.1".into(),
        master_port: free_port(),
        store: StoreMode::RankZeroHosts,
        timeout: Duration::from_secs(2),
        backend: Backend::Gloo,
        gloo_interface: None,
    };
    let t0 = Instant::now();
    let err = ProcessGroup::new(&cfg).expect_err("nobody hosts the store");
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert!(
        took >= Duration::from_millis(1500),
        "gave up early: {took:?}: {err}"
    );
    assert!(matches!(err, DistError::Timeout(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("127.0.0.1:{}", cfg.master_port)),
        "{msg}"
    );
}

#[test]
fn world_size_mismatch_is_reported_by_both_ranks() {
    let port = free_port();
    let first = spawn("join-error", 0, 2, port);
    std::thread::sleep(Duration::from_millis(500));
    let second = spawn("join-error", 1, 3, port);
    let t0 = Instant::now();
    let results = collect(vec![first, second], Duration::from_secs(20));
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t0.elapsed()
    );
    for (r, (ok, out, err)) in results.iter().enumerate() {
        assert!(*ok, "rank {r}:\n{out}\n{err}");
        assert!(out.contains("JOIN-ERROR"), "rank {r}: {out}\n{err}");
        assert!(
            out.contains("WorldSizeMismatch") && out.contains("world size mismatch"),
            "rank {r}: {out}"
        );
    }
}

#[test]
fn missing_rank_times_out_naming_the_count() {
    let port = free_port();
    let children: Vec<Child> = (0..2).map(|r| spawn("join-error", r, 3, port)).collect();
    let results = collect(children, Duration::from_secs(20));
    for (r, (ok, out, err)) in results.iter().enumerate() {
        assert!(*ok, "rank {r}:\n{out}\n{err}");
        assert!(
            out.contains("Timeout") && out.contains("2 of 3 joined"),
            "rank {r}: {out}\n{err}"
        );
    }
}

#[test]
fn env_errors_are_specific() {
    let vars = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    };
    let t = Duration::from_secs(1);
    let e = DistConfig::from_vars(vars(&[("WORLD_SIZE", "2")]), Backend::Gloo, t).unwrap_err();
    assert_eq!(e, DistError::MissingEnv { var: "RANK" });
    let e = DistConfig::from_vars(
        vars(&[("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "h")]),
        Backend::Gloo,
        t,
    )
    .unwrap_err();
    assert_eq!(e, DistError::MissingEnv { var: "MASTER_PORT" });
    let e = DistConfig::from_vars(
        vars(&[
            ("RANK", "x"),
            ("WORLD_SIZE", "2"),
            ("MASTER_ADDR", "h"),
            ("MASTER_PORT", "1"),
        ]),
        Backend::Gloo,
        t,
    )
    .unwrap_err();
    assert!(matches!(e, DistError::BadEnv { var: "RANK", .. }), "{e:?}");
    let e = DistConfig::from_vars(
        vars(&[
            ("RANK", "2"),
            ("WORLD_SIZE", "2"),
            ("MASTER_ADDR", "h"),
            ("MASTER_PORT", "1"),
        ]),
        Backend::Gloo,
        t,
    )
    .unwrap_err();
    assert!(
        matches!(e, DistError::InvalidArgument(ref m) if m.contains("rank 2")),
        "{e:?}"
    );
    let e = DistConfig::from_vars(
        vars(&[
            ("RANK", "0"),
            ("WORLD_SIZE", "2"),
            ("MASTER_ADDR", "h"),
            ("MASTER_PORT", "70000"),
        ]),
        Backend::Gloo,
        t,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            DistError::BadEnv {
                var: "MASTER_PORT",
                ..
            }
        ),
        "{e:?}"
    );
    // torchrun: every rank is a client under the attempt prefix.
    let c = DistConfig::from_vars(
        vars(&[
            ("RANK", "1"),
            ("WORLD_SIZE", "4"),
            ("LOCAL_RANK", "0"),
            ("MASTER_ADDR", "node0"),
            ("MASTER_PORT", "29500"),
            ("TORCHELASTIC_RESTART_COUNT", "3"),
        ]),
        Backend::Nccl,
        t,
    )
    .expect("torchrun env");
    assert_eq!(
        c.store,
        StoreMode::External {
            prefix: "/worker/attempt_3".into()
        }
    );
    assert_eq!(
        (c.rank, c.world_size, c.local_rank, c.master_port),
        (1, 4, 0, 29500)
    );
}
