//! The machinery behind the key tables of [`super::keys`]: the [`section!`] macro that turns one
//! table into a struct, its reader, its checks and its YAML writer; the [`Value`] trait that
//! types one key (reading, writing); and the [`Section`] reader that takes keys out of a mapping,
//! naming the dotted key in every error.

use yaml_rust2::Yaml;
use yaml_rust2::yaml::Hash;

use super::ConfigError;
use super::tree;

/// How strictly a config is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A training config: every key known, every required key present, every value checked.
    Train,
    /// The parts of a reference `all_config.yaml` that a checkpoint import reads: unknown keys
    /// are ignored (the reference may have keys this schema does not), keys required only for
    /// training take the reference defaults when absent, and only checks that matter to an
    /// import run.
    Import,
}

/// What happens when a key is absent (or null).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Need<T> {
    /// An error naming the key.
    Required,
    /// An error naming the key for a training config; an import takes the value of the
    /// reference defaults (`defaults.yaml`), as it does not use the key.
    ForTraining,
    /// This value.
    Default(T),
}

/// Where a value sits: its dotted key (for errors), how strictly it is read, and the reference
/// defaults at the same place (for [`Need::ForTraining`] in [`Mode::Import`]).
pub(crate) struct Cx<'d> {
    /// The dotted key, `arch.hidden_size`; empty for the root.
    pub key: String,
    /// How strictly to read.
    pub mode: Mode,
    /// The node of the reference defaults at `key` ([`Yaml::BadValue`] when there is none).
    pub defaults: &'d Yaml,
}

/// A type one config key can have: read from YAML (with the reference's and pydantic's
/// leniency, e.g. `1e-4` as a string), written back as PyYAML would.
pub(crate) trait Value: Sized {
    /// Reads a present, non-null value.
    fn from_yaml(v: Yaml, cx: &Cx<'_>) -> Result<Self, ConfigError>;

    /// The value as YAML.
    fn to_yaml(&self) -> Yaml;

    /// Checks of the keys inside this value (for sections); nothing for plain values.
    fn check_nested(&self, _key: &str, _mode: Mode) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// `prefix.key`, or `key` at the root.
pub(crate) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The error for a value of the wrong type.
pub(crate) fn bad(key: &str, expected: &'static str, v: &Yaml) -> ConfigError {
    ConfigError::BadValue {
        key: key.to_string(),
        expected,
        found: tree::describe(v),
    }
}

/// An integer that fits in `u32`, else [`ConfigError::Invalid`].
fn narrow_u32(key: &str, n: u64) -> Result<u32, ConfigError> {
    u32::try_from(n).map_err(|_| ConfigError::Invalid {
        key: key.to_string(),
        reason: format!("{n} is too large"),
    })
}

impl Value for u64 {
    fn from_yaml(v: Yaml, cx: &Cx<'_>) -> Result<Self, ConfigError> {
        const WHAT: &str = "a non-negative integer";
        match &v {
            Yaml::Integer(i) => u64::try_from(*i).map_err(|_| bad(&cx.key, WHAT, &v)),
            Yaml::Real(_) | Yaml::String(_) => {
                let x = match &v {
                    Yaml::String(s) => s.trim().parse::<f64>().ok(),
                    _ => v.as_f64(),
                };
                match x {
                    Some(x) if x >= 0.0 && x.fract() == 0.0 && x < 9.0e15 => Ok(x as u64),
                    _ => Err(bad(&cx.key, WHAT, &v)),
                }
            }
            _ => Err(bad(&cx.key, WHAT, &v)),
        }
    }

    fn to_yaml(&self) -> Yaml {
        i64::try_from(*self).map_or_else(|_| Yaml::Real(self.to_string()), Yaml::Integer)
    }
}

impl Value for u32 {
    fn from_yaml(v: Yaml, cx: &Cx<'_>) -> Result<Self, ConfigError> {
        narrow_u32(&cx.key, u64::from_yaml(v, cx)?)
    }

    fn to_yaml(&self) -> Yaml {
        u64::from(*self).to_yaml()
    }
}

impl Value for f64 {
    fn from_yaml(v: Yaml, cx: &Cx<'_>) -> Result<Self, ConfigError> {
        let x = match &v {
            Yaml::Integer(i) => Some(*i as f64),
            Yaml::Real(_) => v.as_f64(),
            // PyYAML (YAML 1.1) reads `1e-4` as a string; pydantic then parses it.
            Yaml::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match x {
            Some(x) if x.is_finite() => Ok(x),
            _ => Err(bad(&cx.key, "a finite number", &v)),
        }
    }

    fn to_yaml(&self) -> Yaml {
        Yaml::Real(tree::py_yaml_float(*self))
    }
}

impl Value for bool {
    fn from_yaml(v: Yaml, cx: &Cx<'_>) -> Result<Self, ConfigError> {
        match v {
            Yaml::Boolean(b) => Ok(b),
            v @ Yaml::String(_) => match v.as_str().map(str::to_ascii_lowercase).as_deref() {
                Some("true" | "yes" | "on") => Ok(true),
                Some("false" | "no" | "off") => Ok(false),
                _ => Err(bad(&cx.key, "true or false", &v)),
            },
            v => Err(bad(&cx.key, "true or false", &v)),
        }
    }

    fn to_yaml(&self) -> Yaml {
        Yaml::Boolean(*self)
    }
}

impl Value for String {
    fn from_yaml(v: Yaml, cx: &Cx<'_>) -> Result<Self, ConfigError> {
        match v {
            Yaml::String(s) | Yaml::Real(s) => Ok(s),
            Yaml::Integer(i) => Ok(i.to_string()),
            Yaml::Boolean(b) => Ok(b.to_string()),
            v => Err(bad(&cx.key, "a string", &v)),
        }
    }

    fn to_yaml(&self) -> Yaml {
        Yaml::String(self.clone())
    }
}

impl Value for Vec<String> {
    fn from_yaml(v: Yaml, cx: &Cx<'_>) -> Result<Self, ConfigError> {
        match v {
            Yaml::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    let item_cx = Cx {
                        key: format!("{}[{i}]", cx.key),
                        mode: cx.mode,
                        defaults: &Yaml::BadValue,
                    };
                    String::from_yaml(item, &item_cx)
                })
                .collect(),
            other => Err(bad(&cx.key, "a list of strings", &other)),
        }
    }

    fn to_yaml(&self) -> Yaml {
        Yaml::Array(self.iter().map(|s| Yaml::String(s.clone())).collect())
    }
}

/// An optional key: null when absent ([`Need::Default`]`(None)`).
impl<T: Value> Value for Option<T> {
    fn from_yaml(v: Yaml, cx: &Cx<'_>) -> Result<Self, ConfigError> {
        T::from_yaml(v, cx).map(Some)
    }

    fn to_yaml(&self) -> Yaml {
        self.as_ref().map_or(Yaml::Null, Value::to_yaml)
    }

    fn check_nested(&self, key: &str, mode: Mode) -> Result<(), ConfigError> {
        self.as_ref().map_or(Ok(()), |v| v.check_nested(key, mode))
    }
}

/// Takes typed values out of one mapping, remembering the dotted path for errors.
pub(crate) struct Section<'d> {
    prefix: String,
    map: Hash,
    mode: Mode,
    defaults: &'d Yaml,
}

impl<'d> Section<'d> {
    /// The mapping `node` at `cx`'s key.
    pub(crate) fn new(node: Yaml, cx: &Cx<'d>) -> Result<Self, ConfigError> {
        match node {
            Yaml::Hash(map) => Ok(Section {
                prefix: cx.key.clone(),
                map,
                mode: cx.mode,
                defaults: cx.defaults,
            }),
            other => Err(ConfigError::BadValue {
                key: if cx.key.is_empty() {
                    "<root>".into()
                } else {
                    cx.key.clone()
                },
                expected: "a mapping",
                found: tree::describe(&other),
            }),
        }
    }

    /// The value of `k`, `None` if absent or null.
    pub(crate) fn take(&mut self, k: &str) -> Option<Yaml> {
        match self.map.remove(&Yaml::String(k.to_string())) {
            None | Some(Yaml::Null) => None,
            Some(v) => Some(v),
        }
    }

    /// The value of `k` as a `T`, or what `need` says when it is absent.
    pub(crate) fn read<T: Value>(&mut self, k: &str, need: Need<T>) -> Result<T, ConfigError> {
        let defaults: &'d Yaml = self.defaults;
        let cx = Cx {
            key: join(&self.prefix, k),
            mode: self.mode,
            defaults: &defaults[k],
        };
        match (self.take(k), need) {
            (Some(v), _) => T::from_yaml(v, &cx),
            (None, Need::Default(d)) => Ok(d),
            (None, Need::ForTraining)
                if self.mode == Mode::Import && !matches!(cx.defaults, Yaml::BadValue) =>
            {
                T::from_yaml(cx.defaults.clone(), &cx)
            }
            (None, Need::Required | Need::ForTraining) => Err(ConfigError::Missing { key: cx.key }),
        }
    }

    /// The keys left (not taken), in their order.
    pub(crate) fn into_rest(self) -> Hash {
        self.map
    }

    /// Errors on the first key left over (a training config); an import ignores them.
    pub(crate) fn finish(self, known: &[&str]) -> Result<(), ConfigError> {
        if self.mode == Mode::Import {
            return Ok(());
        }
        let Some((k, _)) = self.map.into_iter().next() else {
            return Ok(());
        };
        let name = match &k {
            Yaml::String(s) => s.clone(),
            other => tree::describe(other),
        };
        let suggestion = closest(&name, known).map(|s| join(&self.prefix, s));
        Err(ConfigError::UnknownKey {
            key: join(&self.prefix, &name),
            suggestion,
        })
    }
}

/// The known key nearest to `name` (edit distance at most a third of its length, at least 2).
pub(crate) fn closest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    let limit = (name.len() / 3).max(2);
    known
        .iter()
        .map(|k| {
            (
                edit_distance(&name.to_ascii_lowercase(), &k.to_ascii_lowercase()),
                *k,
            )
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Declares one section of the config, each key once: its doc, Rust field, type, reference
/// name, what happens when it is absent ([`Need`]), and optionally
///
/// - `check = f`: `f(&value) -> Result<(), String>`, the reason it is invalid; run for training
///   configs ([`Mode::Train`]);
/// - `check(mode) = f`: `f(&value, mode)`, run in every mode;
/// - `emit = f`: `f(&value) -> Option<Yaml>` writes the key (`None`: leave it out) instead of
///   [`Value::to_yaml`].
///
/// From that one table come the struct, its key list (unknown-key suggestions), its reader (a
/// [`Value`] impl: type checks, defaults, missing keys), its checks and its YAML form.
macro_rules! section {
    (@emit $v:expr) => {
        Some($crate::config::schema::Value::to_yaml(&$v))
    };
    (@emit $v:expr, $emit:expr) => {
        ($emit)(&$v)
    };
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                $field:ident: $ty:ty = $key:literal, $need:expr
                    $(, check = $check:expr)?
                    $(, check(mode) = $mcheck:expr)?
                    $(, emit = $emit:expr)?;
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            $(
                $(#[$fmeta])*
                pub $field: $ty,
            )*
        }

        impl $name {
            /// The reference's key names, in its field order.
            pub(crate) const KEYS: &'static [&'static str] = &[$($key),*];

            /// Runs every key's check, `prefix` being this section's dotted key.
            pub(crate) fn check_keys(
                &self,
                prefix: &str,
                mode: $crate::config::schema::Mode,
            ) -> Result<(), $crate::config::ConfigError> {
                $(
                    let key = $crate::config::schema::join(prefix, $key);
                    $crate::config::schema::Value::check_nested(&self.$field, &key, mode)?;
                    $(
                        if mode == $crate::config::schema::Mode::Train {
                            ($check)(&self.$field).map_err(|reason| {
                                $crate::config::ConfigError::Invalid { key: key.clone(), reason }
                            })?;
                        }
                    )?
                    $(
                        ($mcheck)(&self.$field, mode).map_err(|reason| {
                            $crate::config::ConfigError::Invalid { key: key.clone(), reason }
                        })?;
                    )?
                )*
                Ok(())
            }
        }

        impl $crate::config::schema::Value for $name {
            fn from_yaml(
                v: yaml_rust2::Yaml,
                cx: &$crate::config::schema::Cx<'_>,
            ) -> Result<Self, $crate::config::ConfigError> {
                let mut s = $crate::config::schema::Section::new(v, cx)?;
                let out = $name {
                    $( $field: s.read::<$ty>($key, $need)?, )*
                };
                s.finish(Self::KEYS)?;
                Ok(out)
            }

            fn to_yaml(&self) -> yaml_rust2::Yaml {
                let mut h = yaml_rust2::yaml::Hash::new();
                $(
                    if let Some(v) = section!(@emit self.$field $(, $emit)?) {
                        h.insert(yaml_rust2::Yaml::String($key.to_string()), v);
                    }
                )*
                yaml_rust2::Yaml::Hash(h)
            }

            fn check_nested(
                &self,
                key: &str,
                mode: $crate::config::schema::Mode,
            ) -> Result<(), $crate::config::ConfigError> {
                self.check_keys(key, mode)
            }
        }
    };
}

pub(crate) use section;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("L_layers", "L_layers"), 0);
        let keys = super::super::ArchConfig::KEYS;
        assert_eq!(closest("L_layer", keys), Some("L_layers"));
        assert_eq!(closest("zzzzzz", keys), None);
    }
}
