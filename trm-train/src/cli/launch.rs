//! The built-in local launcher (`trm-train train --nproc-per-node N ...`): the parent spawns N
//! copies of itself with the torchrun variables set (rank 0 hosts the rendezvous store on
//! 127.0.0.1), forwards their output line by line prefixed with `[rank r]`, and, when any child
//! fails, kills the others and exits non-zero.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Drops `--nproc-per-node N`, `--nproc-per-node=N`, `--master-port P` and `--master-port=P`
/// from the command line, keeping everything else for the children.
pub fn child_args(args: &[OsString]) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut skip_next = false;
    for a in args {
        if skip_next {
            skip_next = false;
            continue;
        }
        let s = a.to_string_lossy();
        if s == "--nproc-per-node" || s == "--master-port" {
            skip_next = true;
            continue;
        }
        if s.starts_with("--nproc-per-node=") || s.starts_with("--master-port=") {
            continue;
        }
        out.push(a.clone());
    }
    out
}

/// A free TCP port on the loopback interface (bound and released: another process could take
/// it in between, which the store then reports as a clear error).
fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("finding a free port for the store")?;
    Ok(l.local_addr()?.port())
}

fn forward(rank: usize, from: impl Read + Send + 'static, to_stderr: bool) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let reader = BufReader::new(from);
        for line in reader.split(b'\n') {
            let Ok(line) = line else { break };
            let text = String::from_utf8_lossy(&line);
            // A progress bar redraws with \r: keep the last state of the line.
            let text = text.rsplit('\r').next().unwrap_or_default();
            if to_stderr {
                let mut e = std::io::stderr().lock();
                let _ = writeln!(e, "[rank {rank}] {text}");
            } else {
                let mut o = std::io::stdout().lock();
                let _ = writeln!(o, "[rank {rank}] {text}");
                let _ = o.flush();
            }
        }
    })
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => status.to_string(),
    }
}

/// Runs `nproc` copies of this executable with `args` (the command line without the launcher
/// flags) as ranks 0..nproc of one process group; returns when all succeeded, or fails as soon
/// as one failed (after killing the others).
pub fn launch(nproc: usize, master_port: Option<u16>, args: &[OsString]) -> Result<()> {
    if nproc == 0 {
        bail!("--nproc-per-node must be at least 1");
    }
    let exe = std::env::current_exe().context("locating the trm-train executable")?;
    let port = match master_port {
        Some(p) => p,
        None => free_port()?,
    };
    // Share the cores: each rank gets its part unless TRM_THREADS says otherwise.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = std::env::var("TRM_THREADS")
        .ok()
        .unwrap_or_else(|| (cores / nproc).max(1).to_string());
    eprintln!("launching {nproc} ranks (store at 127.0.0.1:{port}, {threads} CPU thread(s) each)");
    let mut children: Vec<(usize, Child)> = Vec::with_capacity(nproc);
    let mut pumps = Vec::new();
    for rank in 0..nproc {
        let mut cmd = Command::new(&exe);
        cmd.args(args)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", nproc.to_string())
            .env("LOCAL_WORLD_SIZE", nproc.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .env("TRM_THREADS", &threads)
            // Our own store, not a torchrun agent's.
            .env_remove("TORCHELASTIC_RESTART_COUNT")
            .env_remove("TORCHELASTIC_USE_AGENT_STORE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                kill_all(&mut children);
                return Err(e).context(format!("spawning rank {rank}"));
            }
        };
        eprintln!("rank {rank}: pid {}", child.id());
        if let Some(out) = child.stdout.take() {
            pumps.push(forward(rank, out, false));
        }
        if let Some(err) = child.stderr.take() {
            pumps.push(forward(rank, err, true));
        }
        children.push((rank, child));
    }

    let mut failure: Option<String> = None;
    let mut running: Vec<(usize, Child)> = children;
    while !running.is_empty() {
        let mut still = Vec::with_capacity(running.len());
        for (rank, mut child) in running {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => {}
                Ok(Some(status)) => {
                    failure.get_or_insert_with(|| {
                        format!("rank {rank} failed ({})", describe(status))
                    });
                }
                Ok(None) => still.push((rank, child)),
                Err(e) => {
                    failure.get_or_insert_with(|| format!("rank {rank}: cannot wait: {e}"));
                    still.push((rank, child));
                }
            }
        }
        running = still;
        if let Some(f) = &failure {
            if !running.is_empty() {
                let ranks: Vec<String> = running.iter().map(|(r, _)| r.to_string()).collect();
                eprintln!("{f}: stopping rank(s) {}", ranks.join(", "));
            }
            kill_all(&mut running);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for p in pumps {
        let _ = p.join();
    }
    match failure {
        Some(f) => bail!("{f}"),
        None => Ok(()),
    }
}

fn kill_all(children: &mut [(usize, Child)]) {
    for (_, c) in children.iter_mut() {
        let _ = c.kill();
    }
    for (_, c) in children.iter_mut() {
        let _ = c.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::child_args;
    use std::ffi::OsString;

    #[test]
    fn launcher_flags_are_dropped() {
        let args: Vec<OsString> = [
            "train",
            "--nproc-per-node",
            "3",
            "--config",
            "c.yaml",
            "--master-port=4000",
            "--nproc-per-node=2",
            "lr=1",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let out: Vec<String> = child_args(&args)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(out, ["train", "--config", "c.yaml", "lr=1"]);
    }
}
