//! The zip container of a `torch.save` file: its records share one top folder.

use std::io::{Cursor, Read};

use super::TorchLoadError;

/// The zip archive and the folder name its records share.
pub(super) struct Archive<'a> {
    zip: zip::ZipArchive<Cursor<&'a [u8]>>,
    prefix: String,
}

impl<'a> Archive<'a> {
    pub(super) fn open(bytes: &'a [u8]) -> Result<Self, TorchLoadError> {
        let zip = zip::ZipArchive::new(Cursor::new(bytes))
            .map_err(|e| TorchLoadError::Zip(e.to_string()))?;
        let mut prefix = None;
        for name in zip.file_names() {
            if let Some(p) = name.strip_suffix("/data.pkl")
                && !p.is_empty()
                && !p.contains('/')
            {
                if prefix.is_some() {
                    return Err(TorchLoadError::Zip(
                        "more than one <name>/data.pkl record".to_string(),
                    ));
                }
                prefix = Some(p.to_string());
            }
        }
        let prefix =
            prefix.ok_or_else(|| TorchLoadError::MissingRecord("<name>/data.pkl".into()))?;
        Ok(Archive { zip, prefix })
    }

    /// The bytes of `<prefix>/<record>`, or `None` if there is no such record.
    pub(super) fn read_optional(
        &mut self,
        record: &str,
    ) -> Result<Option<Vec<u8>>, TorchLoadError> {
        let name = format!("{}/{}", self.prefix, record);
        let mut file = match self.zip.by_name(&name) {
            Ok(f) => f,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(TorchLoadError::Zip(format!("{name}: {e}"))),
        };
        // Stored entries cannot yield more than the archive holds, so this read is bounded by
        // the input size even when the declared size is a lie.
        let mut out = Vec::new();
        file.read_to_end(&mut out)
            .map_err(|e| TorchLoadError::Zip(format!("{name}: {e}")))?;
        Ok(Some(out))
    }

    pub(super) fn read(&mut self, record: &str) -> Result<Vec<u8>, TorchLoadError> {
        self.read_optional(record)?
            .ok_or_else(|| TorchLoadError::MissingRecord(format!("{}/{}", self.prefix, record)))
    }

    /// Checks the `byteorder` record: little-endian, or absent (old files, little-endian).
    pub(super) fn check_byteorder(&mut self) -> Result<(), TorchLoadError> {
        let Some(order) = self.read_optional("byteorder")? else {
            return Ok(());
        };
        match order.as_slice() {
            b"little" => Ok(()),
            b"big" => Err(TorchLoadError::Unsupported(
                "big-endian torch.save file".to_string(),
            )),
            _ => Err(TorchLoadError::Unsupported(format!(
                "byteorder record {:?}",
                String::from_utf8_lossy(&order)
            ))),
        }
    }
}
