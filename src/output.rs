//! Writing result files: every file goes to a temporary name in its destination folder and is
//! renamed into place only once it is complete, so a failed run never leaves a partial file.

use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

/// Writes a file atomically: `fill` writes the whole content into a temporary file created next to
/// `path`, which is then renamed to `path`. On any error the temporary file is removed.
pub fn write_atomic(path: &Path, fill: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    let mut tmp = temp_file_beside(path)?;
    {
        let mut buffered = std::io::BufWriter::new(tmp.as_file_mut());
        fill(&mut buffered)?;
        buffered.flush().with_context(|| format!("cannot write {}", path.display()))?;
    }
    tmp.persist(path).map_err(|e| anyhow::anyhow!("cannot write {}: {}", path.display(), e.error))?;
    Ok(())
}

/// Checks, before any work is done, that `path` can be written: its extension is one of
/// `extensions` (any if empty) and its folder exists and accepts new files.
pub fn check_writable(path: &Path, extensions: &[&str]) -> Result<()> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if !extensions.is_empty() && !extensions.contains(&ext) {
        bail!("output path {} must end in .{}", path.display(), extensions.join(" or ."));
    }
    temp_file_beside(path).map(drop)
}

/// A temporary file in `path`'s folder (removed when dropped unless persisted).
pub(crate) fn temp_file_beside(path: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        bail!(
            "cannot write {}: folder {} does not exist; create it or choose another output path",
            path.display(),
            dir.display()
        );
    }
    let mut builder = tempfile::Builder::new();
    builder.prefix(".neoprobe-").suffix(".tmp");
    // Results are ordinary files (0644 before the umask), not private temporaries (0600).
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    builder.tempfile_in(dir).with_context(|| {
        format!(
            "cannot write {}: folder {} is not writable; choose another output path",
            path.display(),
            dir.display()
        )
    })
}

/// The bytes of a `.npy` file (format 1.0) holding a little-endian float32 C-order array.
pub fn npy_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
    assert_eq!(shape.iter().product::<usize>(), data.len(), "npy shape does not match data");
    let mut out = npy_header(shape);
    out.reserve(data.len() * 4);
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// The header of a `.npy` file (format 1.0) of a little-endian float32 C-order array of `shape`:
/// the data follow it directly.
pub fn npy_header(shape: &[usize]) -> Vec<u8> {
    let shape_text = match shape {
        [n] => format!("({n},)"),
        dims => format!("({})", dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of 64
    // and ended by a newline.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out
}

/// A float32 tensor to be stored in a `.safetensors` file.
pub struct NamedTensor<'a> {
    pub name: &'a str,
    pub shape: Vec<usize>,
    pub data: &'a [f32],
}

/// The bytes of a `.safetensors` file holding float32 tensors and string metadata.
pub fn safetensors_bytes(tensors: &[NamedTensor], metadata: &HashMap<String, String>) -> Result<Vec<u8>> {
    use safetensors::tensor::{Dtype, TensorView};
    let views = tensors
        .iter()
        .map(|t| {
            let bytes: &[u8] = bytemuck::cast_slice(t.data);
            TensorView::new(Dtype::F32, t.shape.clone(), bytes)
                .map(|v| (t.name.to_string(), v))
                .with_context(|| format!("tensor {} does not match its shape {:?}", t.name, t.shape))
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = if metadata.is_empty() { None } else { Some(metadata.clone()) };
    safetensors::serialize(views, metadata).context("cannot serialize safetensors")
}

/// Writes `data` with `shape` to `path`, as `.npy` or `.safetensors` (tensor `activations` with
/// `metadata`) according to the extension.
pub fn write_array(
    path: &Path,
    shape: &[usize],
    data: &[f32],
    metadata: &HashMap<String, String>,
) -> Result<()> {
    let bytes = match path.extension().and_then(|e| e.to_str()) {
        Some("npy") => npy_bytes(shape, data),
        Some("safetensors") => {
            safetensors_bytes(&[NamedTensor { name: "activations", shape: shape.to_vec(), data }], metadata)?
        }
        _ => bail!("output path {} must end in .npy or .safetensors", path.display()),
    };
    write_atomic(path, |w| Ok(w.write_all(&bytes)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned_and_describes_the_array() {
        let bytes = npy_bytes(&[2, 3], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
        assert!(header.contains("'shape': (2, 3)"), "{header}");
        assert!(header.ends_with('\n'));
        assert_eq!(bytes.len(), 10 + header_len + 24);
        assert_eq!(&bytes[10 + header_len + 4..10 + header_len + 8], &1.0f32.to_le_bytes());
    }

    #[test]
    fn npy_one_dimensional_shape_has_trailing_comma() {
        let bytes = npy_bytes(&[3], &[0.0; 3]);
        assert!(String::from_utf8_lossy(&bytes).contains("'shape': (3,)"));
    }

    #[test]
    fn atomic_write_leaves_nothing_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.npy");
        let result = write_atomic(&path, |_| anyhow::bail!("boom"));
        assert!(result.is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn unknown_extension_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_array(&dir.path().join("x.csv"), &[1], &[0.0], &HashMap::new()).unwrap_err();
        assert!(err.to_string().contains(".npy or .safetensors"));
    }
}
