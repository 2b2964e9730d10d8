//! Where a process learns its rank: the torchrun variables (or the same variables set by hand,
//! or by trm-train's own local launcher), or Slurm's task variables under `srun`.
//!
//! [`detect`] picks, in order:
//! 1. `WORLD_SIZE` set: torchrun / manual ([`DistConfig::from_vars`]);
//! 2. `SLURM_PROCID`, `SLURM_NTASKS` > 1 and `SLURM_STEP_ID` (or `SLURM_STEPID`) set (a task of an `srun` step; not
//!    the batch script itself): Slurm ([`DistConfig::from_slurm_vars`]);
//! 3. otherwise a single process (`None`).
//!
//! `TRM_DIST=off` forces a single process whatever the environment says; `TRM_DIST=on` keeps a
//! process group even for a world of size 1 (to check the NCCL or Gloo path on one device).

use std::time::Duration;

use super::{Backend, DistConfig, DistError, StoreMode};

/// The default rendezvous port under Slurm when `MASTER_PORT` is not set (torchrun's default).
pub const DEFAULT_SLURM_PORT: u16 = 29500;

/// Which launcher's variables [`detect`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LaunchEnv {
    /// `RANK`/`WORLD_SIZE`/`MASTER_ADDR`/`MASTER_PORT` (torchrun, the local launcher, by hand).
    Torchrun,
    /// Slurm's `SLURM_PROCID`/`SLURM_NTASKS`/`SLURM_LOCALID`.
    Slurm,
}

/// The process group this process should join, from variables looked up by `var` (see the
/// [module](self) docs); `None` for a single process. A world of size 1 is `None` too, unless
/// `TRM_DIST=on`.
pub fn detect(
    var: impl Fn(&str) -> Option<String>,
    backend: Backend,
    timeout: Duration,
) -> Result<Option<(LaunchEnv, DistConfig)>, DistError> {
    let set = |k: &str| var(k).filter(|v| !v.trim().is_empty());
    let mode = set("TRM_DIST").map(|v| v.trim().to_ascii_lowercase());
    match mode.as_deref() {
        Some("off") => return Ok(None),
        None | Some("on" | "auto") => {}
        Some(other) => {
            return Err(DistError::BadEnv {
                var: "TRM_DIST",
                value: other.to_owned(),
                reason: "expected on, off or auto".to_owned(),
            });
        }
    }
    let force = mode.as_deref() == Some("on");
    let found = if set("WORLD_SIZE").is_some() {
        Some((
            LaunchEnv::Torchrun,
            DistConfig::from_vars(&var, backend, timeout)?,
        ))
    } else if set("SLURM_PROCID").is_some()
        && (set("SLURM_STEP_ID").is_some() || set("SLURM_STEPID").is_some())
    {
        let ntasks = set("SLURM_NTASKS").or_else(|| set("SLURM_NPROCS"));
        match ntasks.map(|n| n.trim().parse::<usize>()) {
            Some(Ok(n)) if n > 1 => Some((
                LaunchEnv::Slurm,
                DistConfig::from_slurm_vars(&var, backend, timeout)?,
            )),
            _ => None,
        }
    } else {
        None
    };
    Ok(found.filter(|(_, c)| c.world_size > 1 || force))
}

impl DistConfig {
    /// Builds the configuration from Slurm's task variables: rank `SLURM_PROCID`, world size
    /// `SLURM_NTASKS` (or `SLURM_NPROCS`), local rank `SLURM_LOCALID` (default: the rank), the
    /// store at `MASTER_ADDR` (default: the first host of `SLURM_JOB_NODELIST`, else
    /// `SLURM_STEP_NODELIST`, else `SLURM_NODELIST`) and `MASTER_PORT` (default
    /// [`DEFAULT_SLURM_PORT`]), hosted by rank 0.
    pub fn from_slurm_vars(
        var: impl Fn(&str) -> Option<String>,
        backend: Backend,
        timeout: Duration,
    ) -> Result<Self, DistError> {
        let set = |k: &str| {
            var(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let number = |name: &'static str, value: String| -> Result<usize, DistError> {
            value.parse::<usize>().map_err(|e| DistError::BadEnv {
                var: name,
                value: value.clone(),
                reason: e.to_string(),
            })
        };
        let rank = number(
            "SLURM_PROCID",
            set("SLURM_PROCID").ok_or(DistError::MissingEnv {
                var: "SLURM_PROCID",
            })?,
        )?;
        let (ws_name, ws) = match set("SLURM_NTASKS") {
            Some(v) => ("SLURM_NTASKS", v),
            None => (
                "SLURM_NPROCS",
                set("SLURM_NPROCS").ok_or(DistError::MissingEnv {
                    var: "SLURM_NTASKS",
                })?,
            ),
        };
        let world_size = number(ws_name, ws)?;
        let local_rank = match set("SLURM_LOCALID") {
            Some(v) => number("SLURM_LOCALID", v)?,
            None => rank,
        };
        let master_addr = match set("MASTER_ADDR") {
            Some(a) => a,
            None => {
                let (name, list) = [
                    "SLURM_JOB_NODELIST",
                    "SLURM_STEP_NODELIST",
                    "SLURM_NODELIST",
                ]
                .iter()
                .find_map(|n| set(n).map(|v| (*n, v)))
                .ok_or(DistError::MissingEnv { var: "MASTER_ADDR" })?;
                first_host(&list).map_err(|reason| DistError::BadEnv {
                    var: name,
                    value: list.clone(),
                    reason,
                })?
            }
        };
        let master_port = match set("MASTER_PORT") {
            Some(p) => p.parse::<u16>().map_err(|e| DistError::BadEnv {
                var: "MASTER_PORT",
                value: p.clone(),
                reason: e.to_string(),
            })?,
            None => DEFAULT_SLURM_PORT,
        };
        let cfg = DistConfig {
            rank,
            world_size,
            local_rank,
            master_addr,
            master_port,
            store: StoreMode::RankZeroHosts,
            timeout,
            backend,
            gloo_interface: set("GLOO_SOCKET_IFNAME"),
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// The first host of a Slurm node list (`node07`, `gpu[03-05,9]`, `a1,b[2-3]`,
/// `rack[1-2]-n[01-04]`).
pub fn first_host(list: &str) -> Result<String, String> {
    expand_nodelist(list)?
        .into_iter()
        .next()
        .ok_or_else(|| "empty node list".to_owned())
}

/// Expands a Slurm node list in its common forms: comma-separated entries, each a host name
/// with any number of bracketed groups of comma-separated numbers or `lo-hi` ranges (zero
/// padding kept: `n[08-10]` is `n08 n09 n10`). Hosts are returned in list order.
pub fn expand_nodelist(list: &str) -> Result<Vec<String>, String> {
    let list = list.trim();
    if list.is_empty() {
        return Err("empty node list".to_owned());
    }
    let mut hosts = Vec::new();
    for entry in split_top_level(list)? {
        if entry.is_empty() {
            return Err(format!("empty entry in node list {list:?}"));
        }
        hosts.extend(expand_entry(entry)?);
    }
    Ok(hosts)
}

/// Splits at commas outside brackets; unbalanced brackets are an error.
fn split_top_level(list: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in list.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(list[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(format!("unbalanced or nested brackets in {list:?}"));
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced brackets in {list:?}"));
    }
    parts.push(list[start..].trim());
    Ok(parts)
}

/// Expands one entry (`prefix[set]middle[set]suffix`) into the cartesian product of its groups.
fn expand_entry(entry: &str) -> Result<Vec<String>, String> {
    let Some(open) = entry.find('[') else {
        return Ok(vec![entry.to_owned()]);
    };
    let close = entry[open..]
        .find(']')
        .map(|c| open + c)
        .ok_or_else(|| format!("unclosed bracket in {entry:?}"))?;
    let prefix = &entry[..open];
    let values = expand_group(&entry[open + 1..close])
        .map_err(|e| format!("bad range in {entry:?}: {e}"))?;
    let rests = expand_entry(&entry[close + 1..])?;
    let mut out = Vec::with_capacity(values.len() * rests.len());
    for v in &values {
        for r in &rests {
            out.push(format!("{prefix}{v}{r}"));
        }
    }
    Ok(out)
}

/// `1-3,07,10-11` -> `1 2 3 07 10 11` (each range padded to the width of its lower bound).
fn expand_group(group: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for item in group.split(',') {
        let item = item.trim();
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        match item.split_once('-') {
            None if digits(item) => out.push(item.to_owned()),
            Some((lo, hi)) if digits(lo) && digits(hi) => {
                let (a, b) = (
                    lo.parse::<u64>().map_err(|e| e.to_string())?,
                    hi.parse::<u64>().map_err(|e| e.to_string())?,
                );
                if a > b {
                    return Err(format!("range {item} runs backwards"));
                }
                if b - a > 100_000 {
                    return Err(format!("range {item} is too long"));
                }
                let width = lo.len();
                out.extend((a..=b).map(|n| format!("{n:0width$}")));
            }
            _ => return Err(format!("{item:?} is not a number or a lo-hi range")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn nodelists_expand() {
        assert_eq!(expand_nodelist("node07").unwrap(), ["node07"]);
        assert_eq!(
            expand_nodelist("gpu[03-05,9]").unwrap(),
            ["gpu03", "gpu04", "gpu05", "gpu9"]
        );
        assert_eq!(
            expand_nodelist("a1,b[2-3],c").unwrap(),
            ["a1", "b2", "b3", "c"]
        );
        assert_eq!(expand_nodelist("n[8-10]x").unwrap(), ["n8x", "n9x", "n10x"]);
        assert_eq!(
            expand_nodelist("n[098-100]").unwrap(),
            ["n098", "n099", "n100"]
        );
        assert_eq!(
            expand_nodelist("r[1-2]-n[01-02]").unwrap(),
            ["r1-n01", "r1-n02", "r2-n01", "r2-n02"]
        );
        assert_eq!(first_host("hpc-[17-20],login1").unwrap(), "hpc-17");
    }

    #[test]
    fn bad_nodelists_are_errors() {
        for bad in ["", "n[1-", "n1-2]", "n[a-b]", "n[5-3]", "a,,b", "n[[1]]"] {
            assert!(expand_nodelist(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn slurm_variables() {
        let v = vars(&[
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_STEP_ID", "0"),
            ("SLURM_JOB_NODELIST", "gpu[12-15]"),
        ]);
        let (env, c) = detect(&v, Backend::Nccl, Duration::from_secs(5))
            .unwrap()
            .unwrap();
        assert_eq!(env, LaunchEnv::Slurm);
        assert_eq!((c.rank, c.world_size, c.local_rank), (5, 8, 1));
        assert_eq!(c.master_addr, "gpu12");
        assert_eq!(c.master_port, DEFAULT_SLURM_PORT);
        assert_eq!(c.store, StoreMode::RankZeroHosts);

        // MASTER_ADDR / MASTER_PORT win over the node list.
        let v = vars(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_STEP_ID", "3"),
            ("SLURM_JOB_NODELIST", "gpu[12-15]"),
            ("MASTER_ADDR", "10.0.0.2"),
            ("MASTER_PORT", "4000"),
        ]);
        let (_, c) = detect(&v, Backend::Gloo, Duration::from_secs(5))
            .unwrap()
            .unwrap();
        assert_eq!((c.master_addr.as_str(), c.master_port), ("10.0.0.2", 4000));
        assert_eq!(c.local_rank, 0);
    }

    #[test]
    fn single_process_cases() {
        let t = Duration::from_secs(1);
        assert!(detect(vars(&[]), Backend::Gloo, t).unwrap().is_none());
        // The batch script of a multi-task job (no step) is not a rank.
        let v = vars(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "4"),
            ("SLURM_JOB_NODELIST", "n1"),
        ]);
        assert!(detect(v, Backend::Gloo, t).unwrap().is_none());
        // One task.
        let v = vars(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "1"),
            ("SLURM_STEP_ID", "0"),
        ]);
        assert!(detect(v, Backend::Gloo, t).unwrap().is_none());
        // torchrun with one process.
        let v = vars(&[
            ("RANK", "0"),
            ("WORLD_SIZE", "1"),
            ("MASTER_ADDR", "127.0.0.1"),
            ("MASTER_PORT", "29500"),
        ]);
        assert!(detect(v, Backend::Gloo, t).unwrap().is_none());
        // Forced off.
        let v = vars(&[("TRM_DIST", "off"), ("WORLD_SIZE", "4")]);
        assert!(detect(v, Backend::Gloo, t).unwrap().is_none());
        // Forced on: a group of one.
        let v = vars(&[
            ("TRM_DIST", "on"),
            ("RANK", "0"),
            ("WORLD_SIZE", "1"),
            ("MASTER_ADDR", "127.0.0.1"),
            ("MASTER_PORT", "29500"),
        ]);
        let (_, c) = detect(v, Backend::Nccl, t).unwrap().unwrap();
        assert_eq!(c.world_size, 1);
        let v = vars(&[("TRM_DIST", "maybe")]);
        assert!(detect(v, Backend::Gloo, t).is_err());
    }

    #[test]
    fn torchrun_variables_win_and_errors_are_specific() {
        let t = Duration::from_secs(1);
        let v = vars(&[
            ("RANK", "1"),
            ("WORLD_SIZE", "2"),
            ("MASTER_ADDR", "h"),
            ("MASTER_PORT", "1234"),
            ("TORCHELASTIC_RESTART_COUNT", "3"),
            ("SLURM_PROCID", "7"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_STEP_ID", "0"),
        ]);
        let (env, c) = detect(v, Backend::Gloo, t).unwrap().unwrap();
        assert_eq!(env, LaunchEnv::Torchrun);
        assert_eq!(c.rank, 1);
        assert_eq!(
            c.store,
            StoreMode::External {
                prefix: "/worker/attempt_3".into()
            }
        );
        let v = vars(&[("RANK", "0"), ("WORLD_SIZE", "2")]);
        assert_eq!(
            detect(v, Backend::Gloo, t).unwrap_err(),
            DistError::MissingEnv { var: "MASTER_ADDR" }
        );
        let v = vars(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_STEP_ID", "0"),
            ("SLURM_JOB_NODELIST", "n[1-"),
        ]);
        assert!(matches!(
            detect(v, Backend::Gloo, t).unwrap_err(),
            DistError::BadEnv {
                var: "SLURM_JOB_NODELIST",
                ..
            }
        ));
    }
}
