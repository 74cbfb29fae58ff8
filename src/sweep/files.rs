//! The sweeps' `.safetensors` files: written with sorted metadata and tensors in name order, so
//! that the same content always gives the same bytes (a merge of shards is compared byte for
//! byte with one run); read back with every tensor checked.

use crate::output::write_atomic;
use crate::stream_out::{safetensors_header_of, TensorHeader};
use anyhow::{anyhow, bail, Context, Result};
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::Path;

/// A tensor's values.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    I32(Vec<i32>),
    I64(Vec<i64>),
}

impl Data {
    fn dtype(&self) -> &'static str {
        match self {
            Data::F32(_) => "F32",
            Data::I32(_) => "I32",
            Data::I64(_) => "I64",
        }
    }

    fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::I32(v) => v.len(),
            Data::I64(v) => v.len(),
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Data::F32(v) => bytemuck::cast_slice(v),
            Data::I32(v) => bytemuck::cast_slice(v),
            Data::I64(v) => bytemuck::cast_slice(v),
        }
    }
}

/// A named tensor of a sweep file.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Data,
}

/// A sweep file: its tensors by name and its metadata.
#[derive(Clone, Debug, Default)]
pub struct SweepFile {
    pub tensors: HashMap<String, Tensor>,
    pub metadata: HashMap<String, String>,
}

impl SweepFile {
    pub fn insert(&mut self, name: &str, shape: Vec<usize>, data: Data) {
        assert_eq!(shape.iter().product::<usize>(), data.len(), "tensor {name}: shape and values differ");
        self.tensors.insert(name.to_string(), Tensor { shape, data });
    }

    /// The bytes of the file: little-endian data, tensors in name order, sorted metadata.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut names: Vec<&String> = self.tensors.keys().collect();
        names.sort();
        let headers: Vec<TensorHeader> = names
            .iter()
            .map(|name| {
                let t = &self.tensors[*name];
                TensorHeader {
                    name,
                    dtype: t.data.dtype(),
                    shape: t.shape.clone(),
                    bytes: t.data.bytes().len(),
                }
            })
            .collect();
        let mut out = safetensors_header_of(&headers, &self.metadata)?;
        for name in names {
            out.extend_from_slice(self.tensors[name].data.bytes());
        }
        Ok(out)
    }

    /// Writes the file atomically (a temporary name, then renamed).
    pub fn write(&self, path: &Path) -> Result<()> {
        let bytes = self.to_bytes()?;
        write_atomic(path, |w| Ok(w.write_all(&bytes)?))
    }

    /// Reads a sweep file written by [`SweepFile::write`] (F32, I32 and I64 tensors).
    pub fn read(path: &Path) -> Result<SweepFile> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let broken = |e: safetensors::SafeTensorError| {
            anyhow!("{} is not a valid safetensors file ({e}); run the sweep again", path.display())
        };
        let (_, header) = SafeTensors::read_metadata(&bytes).map_err(broken)?;
        let file = SafeTensors::deserialize(&bytes).map_err(broken)?;
        let mut out =
            SweepFile { tensors: HashMap::new(), metadata: header.metadata().clone().unwrap_or_default() };
        for (name, view) in file.tensors() {
            let raw = view.data();
            let data = match view.dtype() {
                Dtype::F32 => Data::F32(bytemuck::pod_collect_to_vec(raw)),
                Dtype::I32 => Data::I32(bytemuck::pod_collect_to_vec(raw)),
                Dtype::I64 => Data::I64(bytemuck::pod_collect_to_vec(raw)),
                other => bail!(
                    "tensor {name} of {} has dtype {other:?}; sweep files hold F32, I32 and I64",
                    path.display()
                ),
            };
            out.tensors.insert(name, Tensor { shape: view.shape().to_vec(), data });
        }
        Ok(out)
    }

    /// The metadata entry `key`, or an error naming the file.
    pub fn meta(&self, key: &str, path: &Path) -> Result<&str> {
        self.metadata.get(key).map(String::as_str).ok_or_else(|| {
            anyhow!("{} has no metadata entry {key:?}; was it written by a neoprobe sweep?", path.display())
        })
    }

    fn tensor(&self, name: &str, shape: &[usize], path: &Path) -> Result<&Data> {
        let t = self.tensors.get(name).ok_or_else(|| {
            anyhow!("{} has no tensor {name}; was it written by a neoprobe sweep?", path.display())
        })?;
        if t.shape != shape {
            bail!("tensor {name} of {} has shape {:?}, expected {shape:?}", path.display(), t.shape);
        }
        Ok(&t.data)
    }

    /// The F32 tensor `name`, which must have `shape`.
    pub fn f32s(&self, name: &str, shape: &[usize], path: &Path) -> Result<&[f32]> {
        match self.tensor(name, shape, path)? {
            Data::F32(v) => Ok(v),
            other => bail!("tensor {name} of {} is {}, expected F32", path.display(), other.dtype()),
        }
    }

    /// The I32 tensor `name`, which must have `shape`.
    pub fn i32s(&self, name: &str, shape: &[usize], path: &Path) -> Result<&[i32]> {
        match self.tensor(name, shape, path)? {
            Data::I32(v) => Ok(v),
            other => bail!("tensor {name} of {} is {}, expected I32", path.display(), other.dtype()),
        }
    }

    /// The I64 tensor `name`, which must have `shape`.
    pub fn i64s(&self, name: &str, shape: &[usize], path: &Path) -> Result<&[i64]> {
        match self.tensor(name, shape, path)? {
            Data::I64(v) => Ok(v),
            other => bail!("tensor {name} of {} is {}, expected I64", path.display(), other.dtype()),
        }
    }

    /// A metadata entry parsed as a number.
    pub fn meta_usize(&self, key: &str, path: &Path) -> Result<usize> {
        let text = self.meta(key, path)?;
        text.parse()
            .map_err(|_| anyhow!("metadata entry {key} of {} is {text:?}, not a count", path.display()))
    }
}

/// Per-neuron lists of token ids with values, as `vocab` and `logits` store them: `top_ids`,
/// `top_values` (descending), `bottom_ids`, `bottom_values` (ascending), each `[neurons, k]`.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLists {
    pub k: usize,
    pub top_ids: Vec<i32>,
    pub top_values: Vec<f32>,
    pub bottom_ids: Vec<i32>,
    pub bottom_values: Vec<f32>,
}

impl TokenLists {
    pub fn neurons(&self) -> usize {
        self.top_ids.len() / self.k.max(1)
    }

    /// The top list of `neuron`: (id, value), best first.
    pub fn top(&self, neuron: usize) -> impl Iterator<Item = (u32, f32)> + '_ {
        let r = neuron * self.k..(neuron + 1) * self.k;
        self.top_ids[r.clone()].iter().map(|&i| i as u32).zip(self.top_values[r].iter().copied())
    }

    /// The bottom list of `neuron`: (id, value), lowest first.
    pub fn bottom(&self, neuron: usize) -> impl Iterator<Item = (u32, f32)> + '_ {
        let r = neuron * self.k..(neuron + 1) * self.k;
        self.bottom_ids[r.clone()].iter().map(|&i| i as u32).zip(self.bottom_values[r].iter().copied())
    }

    pub fn insert_into(&self, file: &mut SweepFile) {
        let shape = vec![self.neurons(), self.k];
        file.insert("top_ids", shape.clone(), Data::I32(self.top_ids.clone()));
        file.insert("top_values", shape.clone(), Data::F32(self.top_values.clone()));
        file.insert("bottom_ids", shape.clone(), Data::I32(self.bottom_ids.clone()));
        file.insert("bottom_values", shape, Data::F32(self.bottom_values.clone()));
    }

    /// The lists of a `vocab` or `logits` file.
    pub fn read_from(file: &SweepFile, path: &Path) -> Result<TokenLists> {
        let shape = file.tensors.get("top_ids").map(|t| t.shape.clone()).ok_or_else(|| {
            anyhow!("{} has no tensor top_ids; was it written by a neoprobe sweep?", path.display())
        })?;
        if shape.len() != 2 || shape[1] == 0 {
            bail!("tensor top_ids of {} has shape {shape:?}, expected [neurons, k]", path.display());
        }
        Ok(TokenLists {
            k: shape[1],
            top_ids: file.i32s("top_ids", &shape, path)?.to_vec(),
            top_values: file.f32s("top_values", &shape, path)?.to_vec(),
            bottom_ids: file.i32s("bottom_ids", &shape, path)?.to_vec(),
            bottom_values: file.f32s("bottom_values", &shape, path)?.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_round_trip_and_equal_content_gives_equal_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.safetensors");
        let mut file = SweepFile::default();
        file.insert("values", vec![2, 2], Data::F32(vec![1.0, -2.5, f32::NEG_INFINITY, 0.0]));
        file.insert("sequence", vec![2, 2], Data::I64(vec![3, -1, 7, 9]));
        file.insert("ids", vec![3], Data::I32(vec![1, 2, 3]));
        for (k, v) in [("b", "2"), ("a", "1"), ("hook", "blocks.8.mlp.hook_pre")] {
            file.metadata.insert(k.into(), v.into());
        }
        file.write(&path).unwrap();
        let back = SweepFile::read(&path).unwrap();
        assert_eq!(back.tensors, file.tensors);
        assert_eq!(back.metadata, file.metadata);
        // Built again in another order: the same bytes.
        let mut again = SweepFile::default();
        for (k, v) in [("hook", "blocks.8.mlp.hook_pre"), ("a", "1"), ("b", "2")] {
            again.metadata.insert(k.into(), v.into());
        }
        again.insert("ids", vec![3], Data::I32(vec![1, 2, 3]));
        again.insert("sequence", vec![2, 2], Data::I64(vec![3, -1, 7, 9]));
        again.insert("values", vec![2, 2], Data::F32(vec![1.0, -2.5, f32::NEG_INFINITY, 0.0]));
        assert_eq!(again.to_bytes().unwrap(), std::fs::read(&path).unwrap());
        assert!(back.f32s("ids", &[3], &path).unwrap_err().to_string().contains("is I32, expected F32"));
        assert!(back.i64s("sequence", &[4], &path).unwrap_err().to_string().contains("shape [2, 2]"));
        assert_eq!(back.meta_usize("b", &path).unwrap(), 2);
        assert!(back.meta("nope", &path).is_err());
    }
}
