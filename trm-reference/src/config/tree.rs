//! The untyped config tree: merging documents, hydra-style `key=value` overrides, OmegaConf-style
//! `${...}` interpolation, and writing YAML the way PyYAML's `yaml.dump` does.

use super::ConfigError;
use yaml_rust2::Yaml;
use yaml_rust2::yaml::Hash;

/// The one place YAML text is parsed (config files and override values alike), within the
/// bounds of [`super::yaml`] (size, nesting, alias expansion).
fn load_yaml(text: &str) -> Result<Vec<Yaml>, String> {
    super::yaml::load(text)
}

/// Parses one YAML document (an empty text is an empty mapping).
pub(crate) fn parse_document(text: &str, origin: &str) -> Result<Yaml, ConfigError> {
    let docs = load_yaml(text).map_err(|message| ConfigError::Yaml {
        origin: origin.to_string(),
        message,
    })?;
    match docs.len() {
        0 => Ok(Yaml::Hash(Hash::new())),
        1 => match docs.into_iter().next() {
            Some(doc @ Yaml::Hash(_)) => Ok(doc),
            Some(Yaml::Null) | None => Ok(Yaml::Hash(Hash::new())),
            Some(other) => Err(ConfigError::Yaml {
                origin: origin.to_string(),
                message: format!("the document must be a mapping, found {}", describe(&other)),
            }),
        },
        n => Err(ConfigError::Yaml {
            origin: origin.to_string(),
            message: format!("expected one YAML document, found {n}"),
        }),
    }
}

/// Merges `top` into `base`: mappings merge key by key, anything else replaces.
pub(crate) fn merge(base: &mut Yaml, top: Yaml) {
    match (base, top) {
        (Yaml::Hash(b), Yaml::Hash(t)) => {
            for (k, v) in t {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, t) => *b = t,
    }
}

/// A short description of a YAML value for error messages.
pub(crate) fn describe(v: &Yaml) -> String {
    match v {
        Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::String(s) => format!("{s:?}"),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Array(_) => "a list".to_string(),
        Yaml::Hash(_) => "a mapping".to_string(),
        Yaml::Alias(_) => "an alias".to_string(),
        Yaml::Null => "null".to_string(),
        Yaml::BadValue => "an invalid value".to_string(),
    }
}

/// One parsed `key=value` override.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Override {
    /// Dotted path, prefixes (`+`, `++`) removed.
    pub path: Vec<String>,
    /// The value, parsed with YAML rules (`[a,b]` is a list, `1e-4` a number, `True` a bool).
    pub value: Yaml,
}

/// Parses `key=value`, `+key=value` or `++key=value` (hydra's command-line syntax).
pub(crate) fn parse_override(text: &str) -> Result<Override, ConfigError> {
    let bad = |reason: &str| ConfigError::BadOverride {
        text: text.to_string(),
        reason: reason.to_string(),
    };
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| bad("expected key=value"))?;
    let key = key.trim();
    if key.starts_with('~') {
        return Err(bad("deleting keys (~key) is not supported"));
    }
    let key = key.trim_start_matches('+');
    if key.is_empty() {
        return Err(bad("the key is empty"));
    }
    let path: Vec<String> = key.split('.').map(str::to_string).collect();
    if path.iter().any(|p| {
        p.is_empty()
            || !p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }) {
        return Err(bad("keys are dotted names of letters, digits and _"));
    }
    let value = value.trim();
    // One pair of outer quotes is removed, as the shell does for `data_paths="[a,b]"`: the
    // same override text then means the same thing typed in a shell or passed from code.
    let value = ['"', '\'']
        .iter()
        .find_map(|q| {
            value
                .strip_prefix(*q)
                .and_then(|v| v.strip_suffix(*q))
                .filter(|_| value.len() >= 2)
        })
        .unwrap_or(value);
    let value = if value.is_empty() {
        // hydra: `key=` sets an empty string.
        Yaml::String(String::new())
    } else {
        let docs = load_yaml(value).map_err(|e| bad(&format!("the value is not valid: {e}")))?;
        match docs.into_iter().next() {
            Some(Yaml::Hash(_)) => {
                // `a: b` inside a value is almost certainly a plain string with a colon.
                Yaml::String(value.to_string())
            }
            Some(v) => v,
            None => Yaml::String(value.to_string()),
        }
    };
    Ok(Override { path, value })
}

/// Sets `path` in `root` to `value`, creating mappings on the way.
pub(crate) fn set_path(root: &mut Yaml, path: &[String], value: Yaml) -> Result<(), ConfigError> {
    let mut node = root;
    for (i, part) in path.iter().enumerate() {
        if !matches!(node, Yaml::Hash(_)) {
            if matches!(node, Yaml::Null | Yaml::BadValue) {
                *node = Yaml::Hash(Hash::new());
            } else {
                return Err(ConfigError::BadValue {
                    key: path[..i].join("."),
                    expected: "a mapping",
                    found: describe(node),
                });
            }
        }
        let Yaml::Hash(h) = node else {
            unreachable!("made a mapping above")
        };
        let key = Yaml::String(part.clone());
        if i + 1 == path.len() {
            h.insert(key, value);
            return Ok(());
        }
        node = h.entry(key).or_insert(Yaml::Hash(Hash::new()));
    }
    Ok(())
}

/// The node at `path`, if any.
fn get_path<'y>(root: &'y Yaml, path: &[String]) -> Option<&'y Yaml> {
    let mut node = root;
    for p in path {
        match node {
            Yaml::Hash(h) => node = h.get(&Yaml::String(p.clone()))?,
            _ => return None,
        }
    }
    Some(node)
}

/// Resolves string values that are exactly one interpolation, `${a.b}` (absolute) or `${.b}`
/// (relative to the mapping holding the value), as OmegaConf does for the reference's
/// `puzzle_emb_ndim: ${.hidden_size}`. Chains are followed; cycles are errors.
pub(crate) fn resolve_interpolations(root: &mut Yaml) -> Result<(), ConfigError> {
    // Collect every interpolated leaf first, then resolve against the (unchanged) tree.
    let mut leaves = Vec::new();
    collect_interpolations(root, &mut Vec::new(), &mut leaves);
    let snapshot = root.clone();
    for path in &leaves {
        let v = resolve_one(&snapshot, path, 0)?;
        set_path(root, path, v)?;
    }
    Ok(())
}

fn interpolation(v: &Yaml) -> Option<&str> {
    match v {
        Yaml::String(s) => s.strip_prefix("${").and_then(|s| s.strip_suffix('}')),
        _ => None,
    }
}

fn collect_interpolations(node: &Yaml, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match node {
        Yaml::Hash(h) => {
            for (k, v) in h {
                if let Some(k) = k.as_str() {
                    path.push(k.to_string());
                    collect_interpolations(v, path, out);
                    path.pop();
                }
            }
        }
        v if interpolation(v).is_some() => out.push(path.clone()),
        _ => {}
    }
}

fn resolve_one(root: &Yaml, path: &[String], depth: usize) -> Result<Yaml, ConfigError> {
    let key = path.join(".");
    let node = get_path(root, path).ok_or_else(|| ConfigError::Missing { key: key.clone() })?;
    let Some(reference) = interpolation(node) else {
        return Ok(node.clone());
    };
    if depth > 16 {
        return Err(ConfigError::Invalid {
            key,
            reason: "interpolation cycle".to_string(),
        });
    }
    let target: Vec<String> = if let Some(rel) = reference.strip_prefix('.') {
        let mut t = path[..path.len().saturating_sub(1)].to_vec();
        t.extend(rel.split('.').map(str::to_string));
        t
    } else {
        reference.split('.').map(str::to_string).collect()
    };
    if get_path(root, &target).is_none() {
        return Err(ConfigError::Invalid {
            key,
            reason: format!("interpolation ${{{reference}}} names no key"),
        });
    }
    resolve_one(root, &target, depth + 1)
}

/// Keys that YAML 1.1 (PyYAML) reads as something other than a string.
const YAML11_WORDS: &[&str] = &[
    "y", "yes", "n", "no", "true", "false", "on", "off", "null", "~",
];

/// Writes a scalar string so that both yaml-rust2 (YAML 1.2) and PyYAML (1.1) read it back as
/// the same string.
fn emit_str(s: &str, out: &mut String) {
    let plain_ok = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '@' | '+'))
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '/')
        && !YAML11_WORDS.contains(&s.to_ascii_lowercase().as_str())
        && matches!(Yaml::from_str(s), Yaml::String(_));
    if plain_ok {
        out.push_str(s);
    } else {
        // A JSON string is a valid YAML double-quoted scalar.
        out.push_str(&serde_json::Value::String(s.to_string()).to_string());
    }
}

/// PyYAML's float representation: Python's `repr` with `.0` added to an exponent form without a
/// point (`1e-05` becomes `1.0e-05`, which YAML 1.1 reads as a float too).
pub(crate) fn py_yaml_float(x: f64) -> String {
    if x.is_nan() {
        return ".nan".to_string();
    }
    if x.is_infinite() {
        return if x > 0.0 { ".inf" } else { "-.inf" }.to_string();
    }
    let r = trm_data::layout::python_float_repr(x);
    match r.split_once('e') {
        Some((m, e)) if !m.contains('.') => format!("{m}.0e{e}"),
        _ => r,
    }
}

fn emit_scalar(v: &Yaml, out: &mut String) {
    match v {
        Yaml::Real(s) => match v.as_f64() {
            Some(x) => out.push_str(&py_yaml_float(x)),
            None => emit_str(s, out),
        },
        Yaml::Integer(i) => out.push_str(&i.to_string()),
        Yaml::String(s) => emit_str(s, out),
        Yaml::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Yaml::Array(a) if a.is_empty() => out.push_str("[]"),
        Yaml::Hash(h) if h.is_empty() => out.push_str("{}"),
        _ => out.push_str("null"),
    }
}

fn is_block(v: &Yaml) -> bool {
    match v {
        Yaml::Array(a) => !a.is_empty(),
        Yaml::Hash(h) => !h.is_empty(),
        _ => false,
    }
}

/// Writes `node` as block YAML in PyYAML's default style: keys sorted, two-space indentation,
/// list items at the indentation of their key.
pub(crate) fn emit(node: &Yaml) -> String {
    let mut out = String::new();
    emit_node(node, 0, &mut out);
    out
}

fn emit_node(node: &Yaml, indent: usize, out: &mut String) {
    match node {
        Yaml::Hash(h) => {
            let mut entries: Vec<(String, &Yaml)> = h
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        other => describe(other),
                    };
                    (key, v)
                })
                .collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (k, v) in entries {
                out.push_str(&" ".repeat(indent));
                emit_str(&k, out);
                out.push(':');
                if is_block(v) {
                    out.push('\n');
                    let child = if matches!(v, Yaml::Array(_)) {
                        indent
                    } else {
                        indent + 2
                    };
                    emit_node(v, child, out);
                } else {
                    out.push(' ');
                    emit_scalar(v, out);
                    out.push('\n');
                }
            }
        }
        Yaml::Array(a) => {
            for item in a {
                out.push_str(&" ".repeat(indent));
                out.push_str("- ");
                match item {
                    Yaml::Hash(h) if !h.is_empty() => {
                        // First key on the dash line, the rest aligned under it.
                        let mut inner = String::new();
                        emit_node(item, indent + 2, &mut inner);
                        out.push_str(inner.trim_start());
                    }
                    Yaml::Array(a) if !a.is_empty() => {
                        let mut inner = String::new();
                        emit_node(item, indent + 2, &mut inner);
                        out.push_str(inner.trim_start());
                    }
                    _ => {
                        emit_scalar(item, out);
                        out.push('\n');
                    }
                }
            }
        }
        other => {
            emit_scalar(other, out);
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_parse_hydra_values() {
        let list = Some(Yaml::Array(vec![
            Yaml::String("data/a".into()),
            Yaml::String("data/b".into()),
        ]));
        // With or without the quotes a shell would remove.
        let o = parse_override("data_paths=\"[data/a,data/b]\"").map(|o| o.value);
        assert_eq!(o.ok(), list);
        let o = parse_override("data_paths=[data/a,data/b]").map(|o| o.value);
        assert_eq!(o.ok(), list);
        let o = parse_override("+run_name=x").map(|o| (o.path, o.value));
        assert_eq!(
            o.ok(),
            Some((vec!["run_name".to_string()], Yaml::String("x".into())))
        );
        assert_eq!(
            parse_override("ema=True").map(|o| o.value).ok(),
            Some(Yaml::Boolean(true))
        );
        assert!(parse_override("noequals").is_err());
        assert!(parse_override("=3").is_err());
    }

    #[test]
    fn floats_like_pyyaml() {
        assert_eq!(py_yaml_float(1e-5), "1.0e-05");
        assert_eq!(py_yaml_float(1e-4), "0.0001");
        assert_eq!(py_yaml_float(0.999), "0.999");
        assert_eq!(py_yaml_float(1.0), "1.0");
    }
}
