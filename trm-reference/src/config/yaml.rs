//! The one entry point for YAML in the project (config files, a checkpoint's `all_config.yaml`,
//! override values), with bounds on what a document may ask of the parser.
//!
//! yaml-rust2 expands an alias by copying the anchored tree, so a few hundred bytes of nested
//! anchors (`a1: &a1 [*a0, *a0, ...]`, ...) describe billions of nodes; its loader also recurses
//! once per nesting level. Before any tree is built, [`load`] walks the parser's events
//! iteratively and counts what the loader would allocate: every node, every alias expansion
//! (the anchored tree's size, known from when the anchor was defined) and the copy the loader
//! keeps of every anchored tree. A document over [`MAX_NODES`] nodes or [`MAX_SCALAR_BYTES`] of
//! scalar text after expansion, nested deeper than [`MAX_DEPTH`], or longer than
//! [`MAX_INPUT_BYTES`] is refused there, with memory bounded by the input's size; only a
//! document within the bounds is then loaded.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::Path;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::Marker;
use yaml_rust2::{Yaml, YamlLoader};

use super::ConfigError;

/// Longest YAML text read (a run's `all_config.yaml` is about 2 KiB).
pub const MAX_INPUT_BYTES: usize = 1 << 20;
/// Most nodes a document may have once its aliases are expanded (a config has a few hundred).
pub const MAX_NODES: u64 = 100_000;
/// Most bytes of scalar text a document may have once its aliases are expanded.
pub const MAX_SCALAR_BYTES: u64 = 4 << 20;
/// Deepest nesting of sequences and mappings (a config nests three levels).
pub const MAX_DEPTH: usize = 64;

/// Reads a YAML file of at most [`MAX_INPUT_BYTES`] (a longer one is an error; nothing past the
/// limit is read).
pub fn read_file(path: &Path) -> Result<String, ConfigError> {
    let io = |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(MAX_INPUT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(ConfigError::Yaml {
            origin: path.display().to_string(),
            message: format!(
                "the file is larger than {MAX_INPUT_BYTES} bytes, the most a config may be"
            ),
        });
    }
    String::from_utf8(bytes).map_err(|e| ConfigError::Yaml {
        origin: path.display().to_string(),
        message: format!("not UTF-8 text ({e})"),
    })
}

/// Parses YAML text into its documents, within the bounds of the module docs. The error is a
/// message (with the line and column where a bound was crossed).
pub(crate) fn load(text: &str) -> Result<Vec<Yaml>, String> {
    if text.len() > MAX_INPUT_BYTES {
        return Err(format!(
            "the text is {} bytes, more than the {MAX_INPUT_BYTES} a config may have",
            text.len()
        ));
    }
    check_expansion(text)?;
    YamlLoader::load_from_str(text).map_err(|e| e.to_string())
}

/// A sequence or mapping being read: its anchor and the size of what it holds so far.
struct Open {
    anchor: usize,
    size: Size,
}

/// Nodes and scalar bytes of a tree.
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    nodes: u64,
    bytes: u64,
}

impl Size {
    fn add(&mut self, other: Size) {
        self.nodes = self.nodes.saturating_add(other.nodes);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }
}

/// What the loader would allocate for the events read so far.
struct Budget {
    spent: Size,
    /// The size of every anchored tree, by anchor id.
    anchors: HashMap<usize, Size>,
    open: Vec<Open>,
}

impl Budget {
    /// Counts an allocation of `size`; over a bound, the error.
    fn charge(&mut self, size: Size, mark: Marker) -> Result<(), String> {
        self.spent.add(size);
        let at = || format!("line {} column {}", mark.line(), mark.col() + 1);
        if self.spent.nodes > MAX_NODES {
            return Err(format!(
                "the document expands to more than {MAX_NODES} nodes (at {}; aliases of \
                 anchors repeat whole trees): refused",
                at()
            ));
        }
        if self.spent.bytes > MAX_SCALAR_BYTES {
            return Err(format!(
                "the document expands to more than {MAX_SCALAR_BYTES} bytes of text (at {}; \
                 aliases of anchors repeat whole trees): refused",
                at()
            ));
        }
        Ok(())
    }

    /// A finished node of `size` with anchor `anchor` (0: none): the loader keeps a copy of an
    /// anchored node, and the node joins its parent.
    fn finish(&mut self, anchor: usize, size: Size, mark: Marker) -> Result<(), String> {
        if anchor > 0 {
            self.charge(size, mark)?;
            self.anchors.insert(anchor, size);
        }
        if let Some(parent) = self.open.last_mut() {
            parent.size.add(size);
        }
        Ok(())
    }
}

/// Walks the parser's events (iteratively: no recursion per nesting level) and refuses a
/// document whose loading would cross a bound.
fn check_expansion(text: &str) -> Result<(), String> {
    let mut parser = Parser::new_from_str(text);
    let mut budget = Budget {
        spent: Size::default(),
        anchors: HashMap::new(),
        open: Vec::new(),
    };
    loop {
        let (event, mark) = parser.next_token().map_err(|e| e.to_string())?;
        match event {
            Event::StreamEnd => return Ok(()),
            Event::Nothing | Event::StreamStart | Event::DocumentStart | Event::DocumentEnd => {}
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if budget.open.len() >= MAX_DEPTH {
                    return Err(format!(
                        "the document nests deeper than {MAX_DEPTH} levels (at line {} column \
                         {}): refused",
                        mark.line(),
                        mark.col() + 1
                    ));
                }
                let node = Size { nodes: 1, bytes: 0 };
                budget.charge(node, mark)?;
                budget.open.push(Open { anchor, size: node });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let open = budget
                    .open
                    .pop()
                    .ok_or_else(|| "unbalanced YAML events".to_string())?;
                budget.finish(open.anchor, open.size, mark)?;
            }
            Event::Scalar(value, _, anchor, _) => {
                let node = Size {
                    nodes: 1,
                    bytes: value.len() as u64,
                };
                budget.charge(node, mark)?;
                budget.finish(anchor, node, mark)?;
            }
            Event::Alias(id) => {
                // The loader copies the anchored tree (an unknown anchor becomes one bad value).
                let copy = budget
                    .anchors
                    .get(&id)
                    .copied()
                    .unwrap_or(Size { nodes: 1, bytes: 0 });
                budget.charge(copy, mark)?;
                budget.finish(0, copy, mark)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_within_the_budget_load_as_before() {
        let text = "base: &b {lr: 0.1, names: [x, y]}\ncopy: *b\nother: *b\n";
        let docs = load(text).expect("small aliases");
        assert_eq!(docs, YamlLoader::load_from_str(text).expect("yaml-rust2"));
        assert_eq!(docs[0]["copy"]["names"][1].as_str(), Some("y"));
    }

    #[test]
    fn the_budget_counts_alias_expansion_exactly() {
        let one = "a: &a [x, y, z]\n";
        check_expansion(one).expect("small");
        // Nodes: the root mapping 1, key 1, list 4, anchor copy 4 = 10; each `*a` value adds
        // a key (1) and a copy (4). So n aliases cost 10 + 5 n nodes.
        let n = (MAX_NODES - 10) / 5;
        let at_limit = format!(
            "{one}{}",
            (0..n).map(|i| format!("k{i}: *a\n")).collect::<String>()
        );
        check_expansion(&at_limit).expect("exactly at the limit");
        let over = format!("{at_limit}last: *a\n");
        let e = check_expansion(&over).expect_err("one alias more");
        assert!(e.contains("nodes"), "{e}");
    }
}
