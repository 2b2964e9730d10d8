//! Embedding a model file in flash at a 64-byte-aligned address.

/// Bytes (or anything) placed at a 64-byte-aligned address, so that the tensors of an embedded
/// `.trm` file, 64-byte aligned from the start of the file, are aligned in memory too.
///
/// `include_bytes!` alone gives no alignment guarantee; [`include_model!`](crate::include_model)
/// wraps it in this type. By hand:
///
/// ```
/// use trm_nostd::format::Aligned;
///
/// static BUF: Aligned<[u8; 256]> = Aligned { bytes: [0; 256] };
/// // An `Aligned<[u8; N]>` coerces to the unsized `Aligned<[u8]>`, so one type fits any size.
/// let any: &Aligned<[u8]> = &BUF;
/// assert_eq!(any.bytes.as_ptr() as usize % 64, 0);
/// assert_eq!(any.bytes.len(), 256);
/// ```
#[repr(C, align(64))]
#[derive(Debug)]
pub struct Aligned<B: ?Sized> {
    /// The aligned value.
    pub bytes: B,
}

/// Embeds a `.trm` file in the program, 64-byte aligned, as a `&'static [u8]`.
///
/// The path is resolved like `include_bytes!`'s (relative to the file that invokes the macro;
/// `concat!(env!("CARGO_MANIFEST_DIR"), "/...")` works too). The bytes stay in flash on a
/// microcontroller; [`Model::parse`](crate::format::Model::parse) reads them in place.
///
/// ```
/// use trm_nostd::format::Model;
/// use trm_nostd::{TensorId, TensorSource};
///
/// static MODEL: &[u8] = trm_nostd::include_model!(concat!(
///     env!("CARGO_MANIFEST_DIR"),
///     "/tests/format_data/tiny_f16.trm"
/// ));
///
/// assert_eq!(MODEL.as_ptr() as usize % 64, 0);
/// let model = Model::parse(MODEL).expect("a valid model");
/// let h_init = model.tensor(TensorId::HInit).expect("every model has H_init");
/// assert_eq!(h_init.shape.numel(), model.config().hidden_size as usize);
/// // Tensors are aligned in memory, not only in the file.
/// assert_eq!(h_init.data.as_ptr() as usize % 64, 0);
/// ```
#[macro_export]
macro_rules! include_model {
    ($path:expr) => {{
        static ALIGNED: &$crate::format::Aligned<[u8]> = &$crate::format::Aligned {
            bytes: *::core::include_bytes!($path),
        };
        &ALIGNED.bytes
    }};
}
