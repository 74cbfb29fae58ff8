//! Float32 arrays given as input (steering vectors, means, patches): a `.npy` file (little-endian
//! `<f4`, C order), or one tensor of a `.safetensors` file with the sequence lengths its
//! `token_ids` metadata gives (as `extract` writes them).

use anyhow::{bail, Context, Result};
use std::path::Path;

/// An array read from a file.
#[derive(Clone, Debug, PartialEq)]
pub struct ArrayFile {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
    /// Tokens per sequence of the run that wrote it, where its metadata says (safetensors only).
    pub lengths: Option<Vec<usize>>,
}

/// Reads `path`: a `.npy`, or from a `.safetensors` file the tensor `name` (when given and there)
/// or its only tensor.
pub fn read_array(path: &Path, name: Option<&str>) -> Result<ArrayFile> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => crate::error::not_found(format!(
            "{} does not exist; give a .npy or .safetensors file",
            path.display()
        )),
        _ => anyhow::anyhow!("cannot read {}: {e}", path.display()),
    })?;
    match path.extension().and_then(|e| e.to_str()) {
        Some("npy") => {
            read_npy(&bytes).with_context(|| format!("{} is not a float32 .npy file", path.display()))
        }
        Some("safetensors") => read_safetensors(&bytes, name, path),
        _ => bail!("{} must end in .npy or .safetensors", path.display()),
    }
}

fn read_npy(bytes: &[u8]) -> Result<ArrayFile> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        bail!("it does not start with the .npy magic");
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => {
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => bail!("format version {v} is not known"),
    };
    let header = bytes.get(start..start + header_len).context("the header is cut short")?;
    let header = std::str::from_utf8(header).context("the header is not text")?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}':"))? + key.len() + 3;
        Some(header[at..].trim_start())
    };
    let descr = field("descr").context("the header has no descr")?;
    if !descr.starts_with("'<f4'") {
        bail!("its dtype is {} (float32, '<f4', is needed)", descr.split(',').next().unwrap_or(descr));
    }
    if field("fortran_order").is_some_and(|v| v.starts_with("True")) {
        bail!("it is in Fortran order; save it in C order (np.ascontiguousarray)");
    }
    let shape = field("shape").context("the header has no shape")?;
    let shape = &shape[1..shape.find(')').context("the shape is not closed")?];
    let shape: Vec<usize> = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().context("a dimension is not a number"))
        .collect::<Result<_>>()?;
    let data = &bytes[start + header_len..];
    let n: usize = shape.iter().product();
    if data.len() != 4 * n {
        bail!("its shape {shape:?} needs {} bytes of data but it has {}", 4 * n, data.len());
    }
    let values = data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Ok(ArrayFile { shape, values, lengths: None })
}

fn read_safetensors(bytes: &[u8], name: Option<&str>, path: &Path) -> Result<ArrayFile> {
    let file = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| anyhow::anyhow!("{} is not a safetensors file: {e}", path.display()))?;
    let names = file.names();
    let chosen = match name {
        Some(n) if names.contains(&n) => n.to_string(),
        _ if names.len() == 1 => names[0].to_string(),
        _ => bail!(
            "{} holds {} tensors and none named {}; give a file with that tensor or with one tensor",
            path.display(),
            names.len(),
            name.unwrap_or("(no name given)")
        ),
    };
    let tensor = file.tensor(&chosen).expect("a listed tensor is there");
    if tensor.dtype() != safetensors::Dtype::F32 {
        bail!("tensor {chosen} of {} is {:?}; float32 is needed", path.display(), tensor.dtype());
    }
    let values =
        tensor.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let (_, metadata) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| anyhow::anyhow!("{} is not a safetensors file: {e}", path.display()))?;
    let lengths = metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get("token_ids"))
        .and_then(|ids| serde_json::from_str::<Vec<Vec<u32>>>(ids).ok())
        .map(|ids| ids.iter().map(Vec::len).collect());
    Ok(ArrayFile { shape: tensor.shape().to_vec(), values, lengths })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn npy_and_safetensors_read_back_what_neoprobe_writes() {
        let dir = tempfile::tempdir().unwrap();
        let values: Vec<f32> = (0..6).map(|i| i as f32 * 0.5 - 1.0).collect();
        let npy = dir.path().join("a.npy");
        std::fs::write(&npy, crate::output::npy_bytes(&[2, 3], &values)).unwrap();
        let read = read_array(&npy, None).unwrap();
        assert_eq!((read.shape, read.values.clone(), read.lengths), (vec![2, 3], values.clone(), None));

        let st = dir.path().join("a.safetensors");
        let mut metadata = HashMap::new();
        metadata.insert("token_ids".to_string(), "[[1],[2]]".to_string());
        crate::output::write_array(&st, &[2, 3], &values, &metadata).unwrap();
        let read = read_array(&st, Some("blocks.0.hook_resid_pre")).unwrap();
        assert_eq!((read.shape, read.values, read.lengths), (vec![2, 3], values, Some(vec![1, 1])));
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = format!("{:#}", read_array(&dir.path().join("none.npy"), None).unwrap_err());
        assert!(e.contains("none.npy does not exist"), "{e}");
        assert_eq!(
            crate::error::kind_of(&read_array(&dir.path().join("none.npy"), None).unwrap_err()),
            crate::error::Kind::NotFound
        );
        let junk = dir.path().join("junk.npy");
        std::fs::write(&junk, b"not an array").unwrap();
        let e = format!("{:#}", read_array(&junk, None).unwrap_err());
        assert!(e.contains("junk.npy is not a float32 .npy file"), "{e}");
        let txt = dir.path().join("v.txt");
        std::fs::write(&txt, b"1").unwrap();
        assert!(read_array(&txt, None).unwrap_err().to_string().contains("must end in .npy or .safetensors"));
    }
}
