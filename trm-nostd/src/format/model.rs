//! Reading a `.trm` file in place: [`Model::parse`] validates, the accessors borrow.

use super::dir::{DirEntry, ENTRY_LEN, MAX_TENSOR_SLOTS, id_slot};
use super::{
    ALIGN, FLAG_SOURCE, FLAG_SOURCE_WEIGHTS, FORMAT_VERSION, FormatError, Header, MAGIC,
    MIN_FORMAT_VERSION, NumericScheme, PREAMBLE_LEN, QUANT_TABLE_LE, RecordWire, SourceRecord,
    WeightsKind, align_up, crc32,
};
use crate::config::Config;
use crate::tensor::{TensorId, TensorSource, TensorView};
use core::fmt;
use core::slice::ChunksExact;

/// A validated `.trm` model borrowed from its bytes (in flash, or in memory on a host).
///
/// Built only by [`Model::parse`], which checks the whole file; every accessor then borrows from
/// the bytes without copying, allocating, or failing.
#[derive(Clone, Copy)]
pub struct Model<'a> {
    bytes: &'a [u8],
    header: Header,
    version: u16,
    /// The source record, when the file has one.
    source: Option<SourceRecord<'a>>,
    /// The directory: `tensor_count * ENTRY_LEN` bytes.
    dir: &'a [u8],
    payload_offset: usize,
}

/// Shows the header and sizes, not the (megabytes of) bytes.
impl fmt::Debug for Model<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("version", &self.version)
            .field("header", &self.header)
            .field("source", &self.source)
            .field("file_bytes", &self.bytes.len())
            .field("payload_offset", &self.payload_offset)
            .field("tensor_count", &self.tensor_count())
            .finish()
    }
}

/// What a model file holds, for `inspect`-style listings and flash budgets.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ModelSummary {
    /// Format version of the file.
    pub version: u16,
    /// The architecture.
    pub config: Config,
    /// How the tensors are stored.
    pub scheme: NumericScheme,
    /// Size of the whole file: the flash it takes.
    pub file_bytes: usize,
    /// Preamble, header, directory and padding (the payload offset).
    pub metadata_bytes: usize,
    /// Bytes of the payload (tensor data and alignment padding).
    pub payload_bytes: usize,
    /// Bytes of tensor data (the payload without padding).
    pub tensor_bytes: u64,
    /// Number of tensors.
    pub tensor_count: usize,
    /// Trained scalars, counted from the directory (H_init and L_init are buffers, not counted);
    /// equals [`Config::parameter_count`] for a valid file.
    pub parameter_count: u64,
    /// Every stored scalar, buffers included.
    pub stored_elements: u64,
}

impl fmt::Display for ModelSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(
            f,
            ".trm v{}: {:?}, {} tensors, {} parameters ({} stored values)",
            self.version,
            self.scheme,
            self.tensor_count,
            self.parameter_count,
            self.stored_elements
        )?;
        writeln!(
            f,
            "flash: {} bytes (metadata {}, payload {}, of which tensor data {})",
            self.file_bytes, self.metadata_bytes, self.payload_bytes, self.tensor_bytes
        )?;
        write!(
            f,
            "config: D={} heads={} {} {:?} layers={} H_cycles={} L_cycles={} vocab={} \
             seq_len={}+{} puzzle_ids={} halt_max_steps={}",
            c.hidden_size,
            c.num_heads,
            if c.mlp_t { "mlp_t" } else { "attention" },
            c.pos_encodings,
            c.l_layers,
            c.h_cycles,
            c.l_cycles,
            c.vocab_size,
            c.seq_len,
            c.puzzle_emb_len,
            c.num_puzzle_identifiers,
            c.halt_max_steps
        )
    }
}

/// The preamble fields after the magic.
struct Preamble {
    version: u16,
    flags: u16,
    header_len: u32,
    payload_offset: u32,
    meta_crc: u32,
}

fn read_preamble(bytes: &[u8]) -> Result<Preamble, FormatError> {
    let n = bytes.len().min(MAGIC.len());
    if bytes.get(..n) != MAGIC.get(..n) {
        return Err(FormatError::BadMagic);
    }
    let Some(p) = bytes.first_chunk::<PREAMBLE_LEN>() else {
        return Err(FormatError::Truncated {
            needed: PREAMBLE_LEN as u64,
            available: bytes.len() as u64,
        });
    };
    Ok(Preamble {
        version: u16::from_le_bytes([p[8], p[9]]),
        flags: u16::from_le_bytes([p[10], p[11]]),
        header_len: u32::from_le_bytes([p[12], p[13], p[14], p[15]]),
        payload_offset: u32::from_le_bytes([p[16], p[17], p[18], p[19]]),
        meta_crc: u32::from_le_bytes([p[20], p[21], p[22], p[23]]),
    })
}

/// `bytes[start..end]` for u64 bounds; `None` when out of range.
fn range(bytes: &[u8], start: u64, end: u64) -> Option<&[u8]> {
    let s = usize::try_from(start).ok()?;
    let e = usize::try_from(end).ok()?;
    bytes.get(s..e)
}

/// The preamble and header, checked up to the header's own consistency (no directory yet).
struct Front<'a> {
    version: u16,
    header: Header,
    source: Option<SourceRecord<'a>>,
    header_end: u64,
    payload_offset: u64,
}

fn read_front(bytes: &[u8]) -> Result<Front<'_>, FormatError> {
    let p = read_preamble(bytes)?;
    if !(MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&p.version) {
        return Err(FormatError::UnsupportedVersion {
            found: p.version,
            supported: FORMAT_VERSION,
        });
    }
    // Bit 1 qualifies the source record: without bit 0 it is as reserved as the others.
    let known = if p.flags & FLAG_SOURCE != 0 {
        FLAG_SOURCE | FLAG_SOURCE_WEIGHTS
    } else {
        0
    };
    if p.flags & !known != 0 {
        return Err(FormatError::ReservedNonZero { what: "flags" });
    }
    let available = bytes.len() as u64;
    let header_end = PREAMBLE_LEN as u64 + p.header_len as u64;
    let payload_offset = p.payload_offset as u64;
    if header_end > payload_offset {
        return Err(FormatError::PayloadOffset {
            expected: align_up(header_end),
            found: p.payload_offset,
        });
    }
    let Some(meta) = range(bytes, PREAMBLE_LEN as u64, payload_offset) else {
        return Err(FormatError::Truncated {
            needed: payload_offset,
            available,
        });
    };
    let computed = crc32(meta);
    if computed != p.meta_crc {
        return Err(FormatError::MetadataChecksum {
            stored: p.meta_crc,
            computed,
        });
    }
    let header_bytes = range(bytes, PREAMBLE_LEN as u64, header_end).ok_or(FormatError::Header)?;
    let Ok((header, rest)) = postcard::take_from_bytes::<Header>(header_bytes) else {
        return Err(FormatError::Header);
    };
    // The source record (and its weights kind) is there exactly when its flags say so, and
    // fills the rest.
    let source = match (p.flags & FLAG_SOURCE != 0, rest) {
        (false, []) => None,
        (true, rest) => match read_record(rest, p.flags & FLAG_SOURCE_WEIGHTS != 0) {
            Some(r) if r.is_valid() => Some(r),
            _ => return Err(FormatError::Header),
        },
        (false, _) => return Err(FormatError::Header),
    };
    Ok(Front {
        version: p.version,
        header,
        source,
        header_end,
        payload_offset,
    })
}

/// Decodes a source record that fills `bytes` exactly: the record, then, when `with_kind`,
/// its [`WeightsKind`]. `None` when anything does not decode or bytes are left over.
fn read_record(bytes: &[u8], with_kind: bool) -> Option<SourceRecord<'_>> {
    let (w, rest) = postcard::take_from_bytes::<RecordWire<'_>>(bytes).ok()?;
    let (kind, rest) = if with_kind {
        let (k, rest) = postcard::take_from_bytes::<WeightsKind>(rest).ok()?;
        (Some(k), rest)
    } else {
        (None, rest)
    };
    rest.is_empty().then_some(SourceRecord {
        weights: w.weights,
        bytes: w.bytes,
        crc32c: w.crc32c,
        kind,
    })
}

/// The byte range of an entry's quantization table: `Some` when the words describe one (encoding
/// [`QUANT_TABLE_LE`], a positive length that is a multiple of 4), `None` otherwise (all-zero
/// words, or invalid ones, which `parse` rejects).
fn quant_range(e: &DirEntry) -> Option<(u64, u64)> {
    let [offset, len, encoding] = e.quant;
    if encoding != QUANT_TABLE_LE || len == 0 || len % 4 != 0 {
        return None;
    }
    Some((offset as u64, offset as u64 + len as u64))
}

/// A bitset over tensor slots, to find duplicates without allocating (56 bytes).
struct Seen([u64; MAX_TENSOR_SLOTS.div_ceil(64)]);

impl Seen {
    /// Marks `id`; `Some(true)` if it was already marked, `None` if its slot is out of range.
    fn insert(&mut self, id: TensorId) -> Option<bool> {
        let slot = id_slot(id);
        let word = self.0.get_mut(slot / 64)?;
        let bit = 1u64 << (slot % 64);
        let was = *word & bit != 0;
        *word |= bit;
        Some(was)
    }

    fn contains(&self, id: TensorId) -> bool {
        let slot = id_slot(id);
        self.0
            .get(slot / 64)
            .is_some_and(|w| w & (1u64 << (slot % 64)) != 0)
    }
}

impl<'a> Model<'a> {
    /// Validates a whole `.trm` file and borrows it.
    ///
    /// Checks magic, version, lengths, both checksums, the config, the scheme, and every tensor
    /// against the config (see the [module documentation](super) for the order). Never panics and
    /// never allocates; the cost is one CRC pass over the file.
    pub fn parse(bytes: &'a [u8]) -> Result<Model<'a>, FormatError> {
        // Magic and version come first so that a foreign or newer file says so, whatever its size.
        read_preamble(bytes)?;
        if u32::try_from(bytes.len()).is_err() {
            return Err(FormatError::TooLarge);
        }
        let file_len = bytes.len() as u64;
        let Front {
            version,
            header,
            source,
            header_end,
            payload_offset,
        } = read_front(bytes)?;
        let config = &header.config;
        config.validate()?;
        if !header.scheme.is_supported() || version < header.scheme.min_version() {
            return Err(FormatError::UnsupportedScheme(header.scheme));
        }

        // Directory and padding up to the payload.
        let dir_end = header_end + header.tensor_count as u64 * ENTRY_LEN as u64;
        let expected_payload = align_up(dir_end);
        if expected_payload != payload_offset {
            return Err(FormatError::PayloadOffset {
                expected: expected_payload,
                found: payload_offset as u32,
            });
        }
        // Both ranges lie inside the metadata region that read_front found in bounds.
        let dir = range(bytes, header_end, dir_end).ok_or(FormatError::Truncated {
            needed: dir_end,
            available: file_len,
        })?;
        let padding = range(bytes, dir_end, payload_offset).ok_or(FormatError::Truncated {
            needed: payload_offset,
            available: file_len,
        })?;
        if padding.iter().any(|&b| b != 0) {
            return Err(FormatError::ReservedNonZero {
                what: "directory padding",
            });
        }
        let expected_len = payload_offset + header.payload_len as u64;
        if expected_len != file_len {
            return Err(FormatError::FileLength {
                expected: expected_len,
                found: file_len,
            });
        }

        // Every entry, in one walk.
        let mut seen = Seen([0; MAX_TENSOR_SLOTS.div_ceil(64)]);
        let mut prev_end = payload_offset;
        for (index, chunk) in dir.chunks_exact(ENTRY_LEN).enumerate() {
            let index = index as u32;
            let Some(raw) = chunk.first_chunk::<ENTRY_LEN>() else {
                return Err(FormatError::UnknownTensor { index });
            };
            let e = DirEntry::decode(raw);
            let tensor = e.id().ok_or(FormatError::UnknownTensor { index })?;
            let dtype = e.dtype().ok_or(FormatError::UnknownDType {
                index,
                code: e.dtype,
            })?;
            if e.quant != [0; 3] && !header.scheme.is_fixed() {
                return Err(FormatError::ReservedNonZero {
                    what: "quantization words",
                });
            }
            if !tensor.present(config) {
                return Err(FormatError::UnexpectedTensor(tensor));
            }
            match seen.insert(tensor) {
                Some(false) => {}
                Some(true) => return Err(FormatError::DuplicateTensor(tensor)),
                None => return Err(FormatError::UnexpectedTensor(tensor)),
            }
            let expected = tensor.shape(config);
            if e.shape() != expected {
                return Err(FormatError::ShapeMismatch {
                    tensor,
                    expected,
                    found: e.shape(),
                });
            }
            if !header.scheme.allows(dtype) {
                return Err(FormatError::DTypeNotAllowed { tensor, dtype });
            }
            let expected_bytes = (e.rows as u64)
                .saturating_mul(e.cols as u64)
                .saturating_mul(dtype.size() as u64);
            if expected_bytes != e.byte_len as u64 {
                return Err(FormatError::ByteLength {
                    tensor,
                    expected: expected_bytes,
                    found: e.byte_len,
                });
            }
            if !(e.offset as usize).is_multiple_of(ALIGN) {
                return Err(FormatError::Misaligned {
                    tensor,
                    offset: e.offset,
                });
            }
            let start = e.offset as u64;
            let end = start + e.byte_len as u64;
            if start < payload_offset || end > file_len {
                return Err(FormatError::OutOfBounds {
                    tensor,
                    offset: e.offset,
                    len: e.byte_len,
                });
            }
            if start < prev_end {
                return Err(FormatError::Overlap { tensor });
            }
            prev_end = end;
            if let Some((q_start, q_end)) = quant_range(&e) {
                // After the data, inside the file, 4-aligned; the next tensor starts after it.
                if q_start < end || q_end > file_len || q_start % 4 != 0 {
                    return Err(FormatError::QuantTable { tensor });
                }
                prev_end = q_end;
            } else if e.quant != [0; 3] {
                return Err(FormatError::QuantTable { tensor });
            }
        }
        if let Some(missing) = TensorId::all(config).find(|t| !seen.contains(*t)) {
            return Err(FormatError::MissingTensor(missing));
        }

        // Last, the one pass over the weights.
        let payload = range(bytes, payload_offset, file_len).ok_or(FormatError::Truncated {
            needed: file_len,
            available: file_len,
        })?;
        let computed = crc32(payload);
        if computed != header.payload_crc {
            return Err(FormatError::PayloadChecksum {
                stored: header.payload_crc,
                computed,
            });
        }
        Ok(Model {
            bytes,
            header,
            version,
            source,
            dir,
            payload_offset: payload_offset as usize,
        })
    }

    /// The total length of the `.trm` file that starts `prefix`, from its preamble and header
    /// only (magic, version and metadata checksum are checked; the payload is not).
    ///
    /// For a model stored in a flash partition larger than the file: read the length, then
    /// [`parse`](Self::parse) exactly that many bytes.
    pub fn file_len(prefix: &[u8]) -> Result<usize, FormatError> {
        let front = read_front(prefix)?;
        let len = front.payload_offset + front.header.payload_len as u64;
        usize::try_from(len).map_err(|_| FormatError::TooLarge)
    }

    /// The architecture.
    pub fn config(&self) -> &Config {
        &self.header.config
    }

    /// How the tensors are stored.
    pub fn scheme(&self) -> NumericScheme {
        self.header.scheme
    }

    /// The decoded header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Format version of the file.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// Which checkpoint file the weights were exported from, when the file records it (see
    /// the [module documentation](super)).
    pub fn source(&self) -> Option<SourceRecord<'a>> {
        self.source
    }

    /// The whole file.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Size of the file: the flash it takes.
    pub fn flash_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Number of tensors.
    pub fn tensor_count(&self) -> usize {
        self.dir.len() / ENTRY_LEN
    }

    /// Every tensor with its id, in directory (offset) order.
    pub fn tensors(&self) -> Tensors<'a> {
        Tensors {
            bytes: self.bytes,
            entries: self.dir.chunks_exact(ENTRY_LEN),
        }
    }

    /// The quantization table of a tensor (format version 2, `Fixed` models), borrowed from the
    /// payload; `None` if the tensor has none or is absent.
    pub fn quant_table(&self, id: TensorId) -> Option<&'a [u8]> {
        let bytes = self.bytes;
        self.dir
            .chunks_exact(ENTRY_LEN)
            .filter_map(|c| c.first_chunk::<ENTRY_LEN>().map(DirEntry::decode))
            .find(|e| e.id() == Some(id))
            .and_then(|e| quant_range(&e))
            .and_then(|(s, e)| range(bytes, s, e))
    }

    /// Sizes and counts, for listings and flash budgets.
    pub fn summary(&self) -> ModelSummary {
        let mut parameter_count = 0u64;
        let mut stored_elements = 0u64;
        let mut tensor_bytes = 0u64;
        for (id, view) in self.tensors() {
            let n = view.shape.rows as u64 * view.shape.cols as u64;
            stored_elements += n;
            tensor_bytes += view.data.len() as u64;
            if id.is_trained() {
                parameter_count += n;
            }
        }
        ModelSummary {
            version: self.version,
            config: self.header.config,
            scheme: self.header.scheme,
            file_bytes: self.bytes.len(),
            metadata_bytes: self.payload_offset,
            payload_bytes: self.bytes.len().saturating_sub(self.payload_offset),
            tensor_bytes,
            tensor_count: self.tensor_count(),
            parameter_count,
            stored_elements,
        }
    }
}

/// Iterator over a model's tensors, from [`Model::tensors`].
#[derive(Debug, Clone)]
pub struct Tensors<'a> {
    bytes: &'a [u8],
    entries: ChunksExact<'a, u8>,
}

/// The view of a validated entry (`None` only if the entry is invalid, which `parse` excludes).
fn view<'a>(bytes: &'a [u8], e: &DirEntry) -> Option<(TensorId, TensorView<'a>)> {
    let start = e.offset as u64;
    Some((
        e.id()?,
        TensorView {
            dtype: e.dtype()?,
            shape: e.shape(),
            data: range(bytes, start, start + e.byte_len as u64)?,
        },
    ))
}

impl<'a> Iterator for Tensors<'a> {
    type Item = (TensorId, TensorView<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        for chunk in self.entries.by_ref() {
            if let Some(item) = chunk
                .first_chunk::<ENTRY_LEN>()
                .and_then(|raw| view(self.bytes, &DirEntry::decode(raw)))
            {
                return Some(item);
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.entries.len()))
    }
}

/// Looks a tensor up by walking the directory (at most a few hundred 32-byte entries).
impl<'a> TensorSource<'a> for Model<'a> {
    fn tensor(&self, id: TensorId) -> Option<TensorView<'a>> {
        self.tensors().find(|(t, _)| *t == id).map(|(_, v)| v)
    }
}
