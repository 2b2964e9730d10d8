//! `.npy` files (NumPy format 1.0, C order, little endian), byte-identical to `numpy.save`.
//!
//! Reading goes through the `npyz` crate (header parsing, dtype checks). Writing builds the
//! header itself because `npyz` formats it differently from NumPy (`'shape': (1000, 900, )`,
//! no spare space after the dict), and the datasets must match the reference builders byte for
//! byte. NumPy's header (numpy/lib/_format_impl.py, `_write_array_header` and `_wrap_header`):
//! the dict `{'descr': .., 'fortran_order': False, 'shape': (..), }` (keys sorted, values as
//! Python `repr`), then `21 - len(repr(shape[0]))` spaces of room to grow the first axis, then
//! spaces and a final `\n` so that the data starts on a multiple of 64 bytes. When the prefix is
//! already aligned NumPy still adds a full 64 spaces; we do the same.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Alignment of the data start (NumPy's `ARRAY_ALIGN`).
const ARRAY_ALIGN: usize = 64;
/// Room NumPy leaves in the header to grow the first axis in place (`GROWTH_AXIS_MAX_DIGITS`).
const GROWTH_AXIS_MAX_DIGITS: usize = 21;
/// `\x93NUMPY` + major + minor.
const MAGIC_LEN: usize = 8;

/// An error reading or writing a `.npy` file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NpyError {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a `.npy` file this crate can read.
    #[error("{path}: {msg}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
}

/// An element type that can be stored in a `.npy` file (little endian).
pub trait NpyElement: Copy + npyz::Deserialize + 'static {
    /// NumPy's `descr` string for the type, e.g. `|u1` or `<i4`.
    const DESCR: &'static str;
    /// Appends the little-endian bytes of `values` to `out`.
    fn extend_le(values: &[Self], out: &mut Vec<u8>);
}

macro_rules! npy_element {
    ($t:ty, $descr:literal) => {
        impl NpyElement for $t {
            const DESCR: &'static str = $descr;
            fn extend_le(values: &[Self], out: &mut Vec<u8>) {
                out.reserve(values.len() * size_of::<$t>());
                for v in values {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
    };
}
npy_element!(u8, "|u1");
npy_element!(i8, "|i1");
npy_element!(u16, "<u2");
npy_element!(i16, "<i2");
npy_element!(u32, "<u4");
npy_element!(i32, "<i4");
npy_element!(u64, "<u8");
npy_element!(i64, "<i8");
npy_element!(f32, "<f4");
npy_element!(f64, "<f8");

/// Python's `repr` of a shape tuple: `()`, `(5,)`, `(5, 81)`.
fn python_tuple(shape: &[usize]) -> String {
    match shape {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        _ => {
            let parts: Vec<String> = shape.iter().map(usize::to_string).collect();
            format!("({})", parts.join(", "))
        }
    }
}

/// The full header (magic, version, length, dict, padding) that `numpy.save` writes for a
/// C-order array of dtype `descr` and the given shape.
pub fn numpy_header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let mut dict = format!(
        "{{'descr': '{descr}', 'fortran_order': False, 'shape': {}, }}",
        python_tuple(shape)
    );
    if let Some(first) = shape.first() {
        let digits = first.to_string().len();
        dict.push_str(&" ".repeat(GROWTH_AXIS_MAX_DIGITS.saturating_sub(digits)));
    }
    // Version 1.0 has a u16 header length; our dicts are always far below 64 KiB.
    let hlen = dict.len() + 1;
    let padlen = ARRAY_ALIGN - ((MAGIC_LEN + 2 + hlen) % ARRAY_ALIGN);
    let total_hlen = hlen + padlen;
    let mut out = Vec::with_capacity(MAGIC_LEN + 2 + total_hlen);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    // `total_hlen` is < 200 for any shape of up to a few axes.
    out.extend_from_slice(&(total_hlen as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', padlen));
    out.push(b'\n');
    out
}

/// Writes `data` with the given C-order `shape` to `writer`, exactly as `numpy.save` would.
///
/// Fails with [`std::io::ErrorKind::InvalidInput`] when the shape does not match `data.len()`.
pub fn write_npy<T: NpyElement, W: Write>(
    mut writer: W,
    shape: &[usize],
    data: &[T],
) -> std::io::Result<()> {
    let count: usize = shape.iter().product();
    if count != data.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "npy shape {} holds {count} elements but {} were given",
                python_tuple(shape),
                data.len()
            ),
        ));
    }
    writer.write_all(&numpy_header(T::DESCR, shape))?;
    // Write in bounded chunks so that large arrays need no second full copy.
    const CHUNK: usize = 1 << 16;
    let mut buf = Vec::with_capacity(CHUNK * size_of::<T>());
    for chunk in data.chunks(CHUNK) {
        buf.clear();
        T::extend_le(chunk, &mut buf);
        writer.write_all(&buf)?;
    }
    writer.flush()
}

/// Writes a `.npy` file (see [`write_npy`]).
pub fn write_npy_file<T: NpyElement>(
    path: &Path,
    shape: &[usize],
    data: &[T],
) -> Result<(), NpyError> {
    let io = |source| NpyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::create(path).map_err(io)?;
    let mut w = BufWriter::new(file);
    write_npy(&mut w, shape, data).map_err(io)?;
    w.into_inner()
        .map_err(|e| io(e.into_error()))?
        .sync_all()
        .map_err(io)
}

/// An array read from a `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray<T> {
    /// The shape (C order).
    pub shape: Vec<usize>,
    /// The elements in C order.
    pub data: Vec<T>,
}

/// The dtype `descr` and shape of a `.npy` file, without reading its data.
pub fn read_npy_header(path: &Path) -> Result<(String, Vec<usize>), NpyError> {
    let npy = open(path)?;
    header_of(path, &npy)
}

fn open(path: &Path) -> Result<npyz::NpyFile<BufReader<File>>, NpyError> {
    let file = File::open(path).map_err(|source| NpyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    npyz::NpyFile::new(BufReader::new(file)).map_err(|e| NpyError::Format {
        path: path.to_path_buf(),
        msg: format!("not a readable .npy file: {e}"),
    })
}

fn header_of<R: Read>(
    path: &Path,
    npy: &npyz::NpyFile<R>,
) -> Result<(String, Vec<usize>), NpyError> {
    if npy.order() != npyz::Order::C {
        return Err(NpyError::Format {
            path: path.to_path_buf(),
            msg: "Fortran-order arrays are not supported".into(),
        });
    }
    let descr = npy.dtype().descr();
    let shape = npy
        .shape()
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| NpyError::Format {
            path: path.to_path_buf(),
            msg: "shape does not fit in memory".into(),
        })?;
    // npyz gives `descr` with its quotes, e.g. "'|u1'".
    Ok((descr.trim_matches('\'').to_string(), shape))
}

/// Reads a C-order `.npy` file whose dtype is exactly `T` (no conversion).
pub fn read_npy<T: NpyElement>(path: &Path) -> Result<NpyArray<T>, NpyError> {
    let npy = open(path)?;
    let (descr, shape) = header_of(path, &npy)?;
    if descr != T::DESCR {
        return Err(NpyError::Format {
            path: path.to_path_buf(),
            msg: format!("dtype is {descr}, expected {}", T::DESCR),
        });
    }
    let data = npy.into_vec::<T>().map_err(|e| NpyError::Format {
        path: path.to_path_buf(),
        msg: format!("cannot read the data: {e}"),
    })?;
    if data.len() != shape.iter().product::<usize>() {
        return Err(NpyError::Format {
            path: path.to_path_buf(),
            msg: format!("shape {} but {} elements", python_tuple(&shape), data.len()),
        });
    }
    Ok(NpyArray { shape, data })
}

/// Reads an integer `.npy` file of any of the dtypes u1/i1/u2/i2/u4/i4/u8/i8 and converts each
/// element to `T` while streaming (no full-size intermediate copy), failing on a value that
/// does not fit.
pub fn read_npy_int<T>(path: &Path) -> Result<NpyArray<T>, NpyError>
where
    T: TryFrom<i64> + TryFrom<u64>,
{
    fn conv<S, T, R: Read>(
        path: &Path,
        npy: npyz::NpyFile<R>,
        shape: Vec<usize>,
        f: impl Fn(S) -> Option<T>,
    ) -> Result<NpyArray<T>, NpyError>
    where
        S: NpyElement + std::fmt::Display,
    {
        let fmt_err = |msg: String| NpyError::Format {
            path: path.to_path_buf(),
            msg,
        };
        let count: usize = shape.iter().product();
        let reader = npy
            .data::<S>()
            .map_err(|e| fmt_err(format!("cannot read the data: {e}")))?;
        let mut data = Vec::with_capacity(count);
        for v in reader {
            let v = v.map_err(|e| fmt_err(format!("cannot read the data: {e}")))?;
            data.push(
                f(v).ok_or_else(|| fmt_err(format!("value {v} out of range for the target type")))?,
            );
        }
        if data.len() != count {
            return Err(fmt_err(format!(
                "shape {} but {} elements",
                python_tuple(&shape),
                data.len()
            )));
        }
        Ok(NpyArray { shape, data })
    }
    let npy = open(path)?;
    let (descr, shape) = header_of(path, &npy)?;
    let s = |v: i64| T::try_from(v).ok();
    let u = |v: u64| T::try_from(v).ok();
    match descr.as_str() {
        "|u1" => conv(path, npy, shape, |v: u8| u(v.into())),
        "|i1" => conv(path, npy, shape, |v: i8| s(v.into())),
        "<u2" => conv(path, npy, shape, |v: u16| u(v.into())),
        "<i2" => conv(path, npy, shape, |v: i16| s(v.into())),
        "<u4" => conv(path, npy, shape, |v: u32| u(v.into())),
        "<i4" => conv(path, npy, shape, |v: i32| s(v.into())),
        "<u8" => conv(path, npy, shape, u),
        "<i8" => conv(path, npy, shape, s),
        other => Err(NpyError::Format {
            path: path.to_path_buf(),
            msg: format!("dtype {other} is not an integer type"),
        }),
    }
}

/// Writes `data` converted element-wise by `f` to a `.npy` file of dtype `T`, streaming
/// (no full-size converted copy). Same bytes as [`write_npy_file`] on the converted data.
pub fn write_npy_file_map<S: Copy, T: NpyElement>(
    path: &Path,
    shape: &[usize],
    data: &[S],
    f: impl Fn(S) -> T,
) -> Result<(), NpyError> {
    let io = |source| NpyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let count: usize = shape.iter().product();
    if count != data.len() {
        return Err(NpyError::Format {
            path: path.to_path_buf(),
            msg: format!(
                "npy shape {} holds {count} elements but {} were given",
                python_tuple(shape),
                data.len()
            ),
        });
    }
    let file = File::create(path).map_err(io)?;
    let mut w = BufWriter::new(file);
    w.write_all(&numpy_header(T::DESCR, shape)).map_err(io)?;
    const CHUNK: usize = 1 << 16;
    let mut converted = Vec::with_capacity(CHUNK);
    let mut buf = Vec::with_capacity(CHUNK * size_of::<T>());
    for chunk in data.chunks(CHUNK) {
        converted.clear();
        converted.extend(chunk.iter().map(|&v| f(v)));
        buf.clear();
        T::extend_le(&converted, &mut buf);
        w.write_all(&buf).map_err(io)?;
    }
    w.into_inner()
        .map_err(|e| io(e.into_error()))?
        .sync_all()
        .map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_64_aligned_and_ends_in_newline() {
        for shape in [vec![], vec![0], vec![1001], vec![1000, 900], vec![7, 3, 2]] {
            let h = numpy_header("<i4", &shape);
            assert_eq!(h.len() % 64, 0, "{shape:?}");
            assert_eq!(h.last(), Some(&b'\n'));
            let hlen = u16::from_le_bytes([h[8], h[9]]) as usize;
            assert_eq!(hlen + 10, h.len());
        }
    }

    #[test]
    fn tuple_repr() {
        assert_eq!(python_tuple(&[]), "()");
        assert_eq!(python_tuple(&[3]), "(3,)");
        assert_eq!(python_tuple(&[3, 4]), "(3, 4)");
    }
}
