//! A float32 array written to disk as it is computed, batch by batch: the header (`.npy`, or
//! `.safetensors` with tensor `activations` and its metadata) goes first, since the shape is known
//! before the forward, then the rows as they arrive. The file is a temporary one beside the
//! destination until every value is there, then it is renamed into place; a run that fails
//! leaves nothing.

use crate::output::{npy_header, temp_file_beside};
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// An array file being written: `.npy` or `.safetensors`, chosen by the path's extension.
pub struct ArrayWriter {
    path: PathBuf,
    file: BufWriter<File>,
    temp: tempfile::TempPath,
    expected: usize,
    written: usize,
}

impl ArrayWriter {
    /// Starts `path` for an array of `shape` (the `.safetensors` header carries `metadata`).
    pub fn create(path: &Path, shape: &[usize], metadata: &HashMap<String, String>) -> Result<ArrayWriter> {
        let header = match path.extension().and_then(|e| e.to_str()) {
            Some("npy") => npy_header(shape),
            Some("safetensors") => safetensors_header("activations", shape, metadata)?,
            _ => bail!("output path {} must end in .npy or .safetensors", path.display()),
        };
        let (file, temp) = temp_file_beside(path)?.into_parts();
        let mut file = BufWriter::with_capacity(1 << 20, file);
        file.write_all(&header).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(ArrayWriter { path: path.to_path_buf(), file, temp, expected: shape.iter().product(), written: 0 })
    }

    /// Appends `values` (the next rows, C order).
    pub fn write(&mut self, values: &[f32]) -> Result<()> {
        if self.written + values.len() > self.expected {
            bail!(
                "{} holds {} values; {} more do not fit",
                self.path.display(),
                self.expected,
                self.written + values.len() - self.expected
            );
        }
        self.file
            .write_all(bytemuck::cast_slice(values))
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        self.written += values.len();
        Ok(())
    }

    /// Checks that every value was written, then renames the file into place.
    pub fn finish(self) -> Result<()> {
        let ArrayWriter { path, file, temp, expected, written } = self;
        if written != expected {
            bail!("{} should hold {expected} values but {written} were computed", path.display());
        }
        file.into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("cannot write {}", path.display()))?;
        temp.persist(&path).map_err(|e| anyhow::anyhow!("cannot write {}: {}", path.display(), e.error))?;
        Ok(())
    }
}

/// A `.safetensors` file of several float32 tensors written as they are computed: each tensor's
/// region of the file is filled in order, batch by batch, whichever tensor the batch's rows belong
/// to. A temporary file until every value of every tensor is there.
pub struct TensorsWriter {
    path: PathBuf,
    file: File,
    temp: tempfile::TempPath,
    /// Per tensor: where its next values go, and where its region ends (file offsets).
    cursors: Vec<(u64, u64)>,
}

impl TensorsWriter {
    /// Starts `path` for tensors `(name, shape)`, in that order, with `metadata`.
    pub fn create(
        path: &Path,
        tensors: &[(String, Vec<usize>)],
        metadata: &HashMap<String, String>,
    ) -> Result<Self> {
        let headers: Vec<TensorHeader> = tensors
            .iter()
            .map(|(name, shape)| TensorHeader {
                name,
                dtype: "F32",
                shape: shape.clone(),
                bytes: shape.iter().product::<usize>() * 4,
            })
            .collect();
        let header = safetensors_header_of(&headers, metadata)?;
        let (mut file, temp) = temp_file_beside(path)?.into_parts();
        file.write_all(&header).with_context(|| format!("cannot write {}", path.display()))?;
        let mut at = header.len() as u64;
        let cursors = headers
            .iter()
            .map(|t| {
                let region = (at, at + t.bytes as u64);
                at += t.bytes as u64;
                region
            })
            .collect();
        Ok(TensorsWriter { path: path.to_path_buf(), file, temp, cursors })
    }

    /// Appends `values` (the next values, C order) to tensor `index`.
    pub fn write(&mut self, index: usize, values: &[f32]) -> Result<()> {
        use std::io::{Seek, SeekFrom};
        let (next, end) = self.cursors[index];
        let bytes: &[u8] = bytemuck::cast_slice(values);
        if next + bytes.len() as u64 > end {
            bail!("{}: tensor {index} holds fewer values than were computed for it", self.path.display());
        }
        let write = |file: &mut File| -> std::io::Result<()> {
            file.seek(SeekFrom::Start(next))?;
            file.write_all(bytes)
        };
        write(&mut self.file).with_context(|| format!("cannot write {}", self.path.display()))?;
        self.cursors[index].0 += bytes.len() as u64;
        Ok(())
    }

    /// Checks that every tensor is complete, then renames the file into place.
    pub fn finish(self) -> Result<()> {
        let TensorsWriter { path, file, temp, cursors } = self;
        if let Some(i) = cursors.iter().position(|(next, end)| next != end) {
            bail!("{}: tensor {i} is short of values", path.display());
        }
        file.sync_all().ok();
        drop(file);
        temp.persist(&path).map_err(|e| anyhow::anyhow!("cannot write {}: {}", path.display(), e.error))?;
        Ok(())
    }
}

/// The header of a `.safetensors` file holding one float32 tensor `name` of `shape` and
/// `metadata` (see [`safetensors_header_of`]).
pub fn safetensors_header(
    name: &str,
    shape: &[usize],
    metadata: &HashMap<String, String>,
) -> Result<Vec<u8>> {
    let bytes = shape.iter().product::<usize>() * 4;
    safetensors_header_of(&[TensorHeader { name, dtype: "F32", shape: shape.to_vec(), bytes }], metadata)
}

/// One tensor of a `.safetensors` header: its name, dtype (`F32`, `I32`, `I64`), shape and size.
pub struct TensorHeader<'a> {
    pub name: &'a str,
    pub dtype: &'static str,
    pub shape: Vec<usize>,
    pub bytes: usize,
}

/// The header of a `.safetensors` file whose data are `tensors`' bytes one after the other, in
/// the order given: its length (8 bytes, little endian) and its JSON, metadata keys sorted (so
/// that equal content gives equal bytes), padded with spaces so that the data start 8-byte aligned.
pub fn safetensors_header_of(
    tensors: &[TensorHeader],
    metadata: &HashMap<String, String>,
) -> Result<Vec<u8>> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        let sorted: BTreeMap<&String, &String> = metadata.iter().collect();
        header.insert("__metadata__".into(), serde_json::to_value(sorted)?);
    }
    let mut offset = 0;
    for t in tensors {
        if t.name == "__metadata__" || header.contains_key(t.name) {
            bail!("a safetensors file cannot hold a tensor named {:?} here", t.name);
        }
        header.insert(
            t.name.into(),
            serde_json::json!({ "dtype": t.dtype, "shape": t.shape, "data_offsets": [offset, offset + t.bytes] }),
        );
        offset += t.bytes;
    }
    let mut json = serde_json::to_string(&header)?.into_bytes();
    json.resize(json.len().div_ceil(8) * 8, b' ');
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_npy_equals_the_whole_array_written_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.npy");
        let values: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 2.0).collect();
        let mut w = ArrayWriter::create(&path, &[4, 3], &HashMap::new()).unwrap();
        assert!(!path.exists(), "nothing at the destination before finish");
        w.write(&values[..3]).unwrap();
        w.write(&values[3..]).unwrap();
        w.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), crate::output::npy_bytes(&[4, 3], &values));
    }

    #[test]
    fn streamed_safetensors_reads_back_with_its_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.safetensors");
        let metadata = HashMap::from([("hook".to_string(), "blocks.0.mlp.hook_pre".to_string())]);
        let values: Vec<f32> = (0..10).map(|i| i as f32).collect();
        let mut w = ArrayWriter::create(&path, &[5, 2], &metadata).unwrap();
        w.write(&values).unwrap();
        w.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let (header_len, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!((8 + header_len) % 8, 0);
        assert_eq!(meta.metadata().as_ref().unwrap()["hook"], "blocks.0.mlp.hook_pre");
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let tensor = file.tensor("activations").unwrap();
        assert_eq!(tensor.shape(), &[5, 2]);
        assert_eq!(bytemuck::pod_collect_to_vec::<u8, f32>(tensor.data()), values);
    }

    #[test]
    fn tensors_written_batch_by_batch_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let tensors = [("a".to_string(), vec![2, 3]), ("b".to_string(), vec![4])];
        let mut w = TensorsWriter::create(&path, &tensors, &HashMap::new()).unwrap();
        // Interleaved, as the batches of a forward deliver them.
        w.write(0, &[1.0, 2.0, 3.0]).unwrap();
        w.write(1, &[10.0, 20.0]).unwrap();
        w.write(0, &[4.0, 5.0, 6.0]).unwrap();
        assert!(w.write(1, &[0.0; 3]).is_err(), "more values than tensor b holds");
        w.write(1, &[30.0, 40.0]).unwrap();
        w.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let values = |name: &str| bytemuck::pod_collect_to_vec::<u8, f32>(file.tensor(name).unwrap().data());
        assert_eq!(values("a"), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(values("b"), [10.0, 20.0, 30.0, 40.0]);
        let short = dir.path().join("short.safetensors");
        let mut w = TensorsWriter::create(&short, &tensors, &HashMap::new()).unwrap();
        w.write(0, &[1.0; 6]).unwrap();
        assert!(w.finish().is_err());
        assert!(!short.exists());
    }

    #[test]
    fn a_short_or_abandoned_array_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.npy");
        let mut w = ArrayWriter::create(&path, &[2, 2], &HashMap::new()).unwrap();
        w.write(&[1.0, 2.0]).unwrap();
        assert!(w.write(&[0.0; 3]).is_err(), "more values than the shape holds");
        let err = w.finish().unwrap_err().to_string();
        assert!(err.contains("should hold 4 values but 2"), "{err}");
        let w = ArrayWriter::create(&path, &[2, 2], &HashMap::new()).unwrap();
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
