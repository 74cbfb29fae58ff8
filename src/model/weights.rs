//! `model.safetensors` (or its shards) → GPT-Neo weights on the host, memory-mapped, checked
//! tensor by tensor against the configuration. F32 tensors stay in the map (no copy); F16/BF16
//! ones are widened.

use super::{GptNeoConfig, WeightFiles};
use anyhow::{anyhow, bail, Context, Result};
use memmap2::Mmap;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A float32 tensor on the host: a range of a memory-mapped file, or owned values.
#[derive(Clone)]
pub struct HostTensor {
    shape: Vec<usize>,
    data: TensorData,
}

#[derive(Clone)]
enum TensorData {
    /// Little-endian f32 bytes inside a mapped safetensors file (`file`, open for reads that
    /// bypass the map).
    Mapped {
        map: Arc<Mmap>,
        file: Arc<File>,
        bytes: Range<usize>,
    },
    Owned(Vec<f32>),
}

impl HostTensor {
    pub fn from_vec(shape: Vec<usize>, values: Vec<f32>) -> HostTensor {
        assert_eq!(shape.iter().product::<usize>(), values.len(), "tensor shape does not match its values");
        HostTensor { shape, data: TensorData::Owned(values) }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The values as little-endian f32 bytes, ready to upload.
    pub fn bytes(&self) -> &[u8] {
        match &self.data {
            TensorData::Mapped { map, bytes, .. } => &map[bytes.clone()],
            TensorData::Owned(values) => bytemuck::cast_slice(values),
        }
    }

    /// The values, copied out.
    pub fn to_vec(&self) -> Vec<f32> {
        bytemuck::pod_collect_to_vec(self.bytes())
    }

    /// The values, borrowed where they are aligned in memory, else copied.
    pub fn values(&self) -> std::borrow::Cow<'_, [f32]> {
        match bytemuck::try_cast_slice(self.bytes()) {
            Ok(values) => std::borrow::Cow::Borrowed(values),
            Err(_) => std::borrow::Cow::Owned(self.to_vec()),
        }
    }

    /// Lets the operating system drop this tensor's pages of the mapped file from the process's
    /// resident memory, once they are on the GPU; a later read brings them back from the file.
    /// Owned values are left alone.
    pub fn release_pages(&self) {
        #[cfg(unix)]
        if let TensorData::Mapped { map, bytes, .. } = &self.data {
            // SAFETY: the map is a read-only mapping of a file nothing here writes to: after
            // MADV_DONTNEED the kernel refills a page from the file when it is next read, so the
            // bytes any live borrow sees are unchanged. Failure only means the pages stay resident.
            let _ = unsafe {
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, bytes.start, bytes.len())
            };
        }
    }

    /// Row `i` of a 2-D tensor as f32 bytes.
    pub fn row_bytes(&self, i: usize) -> &[u8] {
        let width = self.shape[1] * 4;
        &self.bytes()[i * width..(i + 1) * width]
    }

    /// Rows `rows` of a 2-D tensor, concatenated as f32 bytes. A mapped tensor's rows are read
    /// from the file rather than through the map: touching a few hundred scattered rows of a
    /// mapped `wte` faults in whole page-cache folios around each, and faulting them in and
    /// dropping them again took most of a forward's host time (docs/kernels.md).
    pub fn gather_rows(&self, rows: &[usize]) -> Result<Vec<u8>> {
        let width = self.shape[1] * 4;
        let mut out = vec![0u8; rows.len() * width];
        match &self.data {
            #[cfg(unix)]
            TensorData::Mapped { file, bytes, .. } => {
                use std::os::unix::fs::FileExt;
                for (&row, dest) in rows.iter().zip(out.chunks_exact_mut(width)) {
                    file.read_exact_at(dest, (bytes.start + row * width) as u64).with_context(|| {
                        format!("cannot read row {row} of the token embedding table from the model file")
                    })?;
                }
            }
            _ => {
                for (&row, dest) in rows.iter().zip(out.chunks_exact_mut(width)) {
                    dest.copy_from_slice(self.row_bytes(row));
                }
            }
        }
        Ok(out)
    }
}

/// A `torch.nn.Linear`: `weight [out, in]` and `bias [out]`.
#[derive(Clone)]
pub struct LinearWeights {
    pub weight: HostTensor,
    pub bias: HostTensor,
}

/// A `torch.nn.LayerNorm`: `weight [width]` (gamma) and `bias [width]` (beta).
#[derive(Clone)]
pub struct LayerNormWeights {
    pub weight: HostTensor,
    pub bias: HostTensor,
}

/// One GPT-Neo block. q, k and v projections have no bias in GPT-Neo.
#[derive(Clone)]
pub struct BlockWeights {
    pub ln_1: LayerNormWeights,
    pub q_proj: HostTensor,
    pub k_proj: HostTensor,
    pub v_proj: HostTensor,
    pub out_proj: LinearWeights,
    pub ln_2: LayerNormWeights,
    pub c_fc: LinearWeights,
    pub c_proj: LinearWeights,
}

impl BlockWeights {
    /// [`HostTensor::release_pages`] for every tensor of the block.
    pub fn release_pages(&self) {
        for t in [
            &self.ln_1.weight,
            &self.ln_1.bias,
            &self.q_proj,
            &self.k_proj,
            &self.v_proj,
            &self.out_proj.weight,
            &self.out_proj.bias,
            &self.ln_2.weight,
            &self.ln_2.bias,
            &self.c_fc.weight,
            &self.c_fc.bias,
            &self.c_proj.weight,
            &self.c_proj.bias,
        ] {
            t.release_pages();
        }
    }
}

/// The weights of blocks `0..blocks.len()` (the forward never needs the ones after its deepest
/// hook) plus the embeddings, and `ln_f` when every block is loaded.
#[derive(Clone)]
pub struct GptNeoWeights {
    pub config: GptNeoConfig,
    /// Token embedding `[vocab, hidden]`; only the rows of a batch's tokens are ever uploaded.
    pub wte: HostTensor,
    /// Position embedding `[max_positions, hidden]`.
    pub wpe: HostTensor,
    pub blocks: Vec<BlockWeights>,
    pub ln_f: Option<LayerNormWeights>,
}

impl GptNeoWeights {
    /// Maps the weights `files` (the single file, or each shard) and checks every tensor a full
    /// forward needs (presence, dtype, shape), then keeps those of the first `n_blocks` blocks.
    /// F32 tensors stay in the map of the file that holds them; nothing is read whole.
    ///
    /// A sharded checkpoint must match its index exactly: every tensor the index lists is in the
    /// shard it names, and every tensor of a shard is listed for that shard (so no tensor is in
    /// two shards).
    pub fn load(files: &WeightFiles, config: &GptNeoConfig, n_blocks: usize) -> Result<GptNeoWeights> {
        let mapped: Vec<MappedFile> =
            files.paths().iter().map(|p| MappedFile::open(p)).collect::<Result<_>>()?;
        let parsed: Vec<SafeTensors> = mapped
            .iter()
            .map(|m| {
                SafeTensors::deserialize(&m.map).map_err(|e| {
                    anyhow!(
                        "{} is not a valid safetensors file ({e}); re-download or re-export it",
                        m.path.display()
                    )
                })
            })
            .collect::<Result<_>>()?;
        // Which file holds each tensor.
        let mut location: HashMap<String, usize> = HashMap::new();
        match files {
            WeightFiles::Single(_) => {
                location.extend(parsed[0].names().into_iter().map(|n| (n.to_string(), 0)))
            }
            WeightFiles::Sharded(index) => {
                let redo = "the shards do not match their index: re-download or re-export the model";
                for (i, (file, tensors)) in mapped.iter().zip(&parsed).enumerate() {
                    let shard = &index.shards[i];
                    for name in tensors.names() {
                        match index.weight_map.get(name) {
                            None => bail!(
                                "{} holds tensor {name}, which {} does not list; {redo}",
                                file.path.display(),
                                index.path.display()
                            ),
                            Some(listed) if listed != shard => bail!(
                                "{} holds tensor {name}, which {} puts in {listed}; {redo}",
                                file.path.display(),
                                index.path.display()
                            ),
                            Some(_) => location.insert(name.to_string(), i),
                        };
                    }
                }
                if let Some((name, shard)) = index.weight_map.iter().find(|(n, _)| !location.contains_key(*n))
                {
                    bail!(
                        "{} puts tensor {name} in {shard}, but {} has no such tensor; {redo}",
                        index.path.display(),
                        index.shard_path(shard).display()
                    );
                }
            }
        }
        let (described, listed) = match files {
            WeightFiles::Single(path) => (path.as_path(), "has no tensor"),
            WeightFiles::Sharded(index) => (index.path.as_path(), "lists no tensor"),
        };
        let prefix = if location.keys().any(|n| n.starts_with("transformer.")) { "transformer." } else { "" };
        let reader =
            TensorReader { mapped: &mapped, parsed: &parsed, location: &location, prefix, described, listed };
        let h = config.hidden_size;
        let expected_blocks: Vec<_> =
            (0..config.num_layers).map(|i| reader.block(i, config)).collect::<Result<_>>()?;
        let ln_f = reader.layernorm("ln_f", h)?;
        let mut blocks = expected_blocks;
        blocks.truncate(n_blocks);
        Ok(GptNeoWeights {
            config: config.clone(),
            wte: reader.tensor("wte.weight", &[config.vocab_size, h])?,
            wpe: reader.tensor("wpe.weight", &[config.max_position_embeddings, h])?,
            blocks,
            ln_f: (n_blocks == config.num_layers).then_some(ln_f),
        })
    }

    /// Seeded random weights of the given shape, for tests and benchmarks: linear weights and
    /// embeddings N(0, 0.02²), layernorm weights 1 + N(0, 0.1²), every bias N(0, 0.02²) — so that
    /// a bug in any of them shows.
    pub fn synthetic(config: &GptNeoConfig, seed: u64) -> GptNeoWeights {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (h, inter) = (config.hidden_size, config.intermediate_size);
        let mut normal = |shape: &[usize], mean: f32, std: f32| {
            let n = shape.iter().product();
            let values = (0..n).map(|_| mean + std * standard_normal(&mut rng)).collect();
            HostTensor::from_vec(shape.to_vec(), values)
        };
        let wte = normal(&[config.vocab_size, h], 0.0, 0.02);
        let wpe = normal(&[config.max_position_embeddings, h], 0.0, 0.02);
        let blocks = (0..config.num_layers)
            .map(|_| BlockWeights {
                ln_1: LayerNormWeights { weight: normal(&[h], 1.0, 0.1), bias: normal(&[h], 0.0, 0.02) },
                q_proj: normal(&[h, h], 0.0, 0.02),
                k_proj: normal(&[h, h], 0.0, 0.02),
                v_proj: normal(&[h, h], 0.0, 0.02),
                out_proj: LinearWeights { weight: normal(&[h, h], 0.0, 0.02), bias: normal(&[h], 0.0, 0.02) },
                ln_2: LayerNormWeights { weight: normal(&[h], 1.0, 0.1), bias: normal(&[h], 0.0, 0.02) },
                c_fc: LinearWeights {
                    weight: normal(&[inter, h], 0.0, 0.02),
                    bias: normal(&[inter], 0.0, 0.02),
                },
                c_proj: LinearWeights {
                    weight: normal(&[h, inter], 0.0, 0.02),
                    bias: normal(&[h], 0.0, 0.02),
                },
            })
            .collect();
        let ln_f = Some(LayerNormWeights { weight: normal(&[h], 1.0, 0.1), bias: normal(&[h], 0.0, 0.02) });
        GptNeoWeights { config: config.clone(), wte, wpe, blocks, ln_f }
    }
}

impl GptNeoWeights {
    /// Writes `config.json` and `model.safetensors` into `dir` the way transformers'
    /// `save_pretrained` names them (used to put synthetic models on disk for benchmarks).
    pub fn save(&self, dir: &Path) -> Result<()> {
        use crate::output::{safetensors_bytes, write_atomic, NamedTensor};
        let mut named: Vec<(String, &HostTensor)> =
            vec![("transformer.wte.weight".into(), &self.wte), ("transformer.wpe.weight".into(), &self.wpe)];
        for (i, b) in self.blocks.iter().enumerate() {
            let p = format!("transformer.h.{i}");
            let a = format!("{p}.attn.attention");
            named.extend([
                (format!("{p}.ln_1.weight"), &b.ln_1.weight),
                (format!("{p}.ln_1.bias"), &b.ln_1.bias),
                (format!("{a}.q_proj.weight"), &b.q_proj),
                (format!("{a}.k_proj.weight"), &b.k_proj),
                (format!("{a}.v_proj.weight"), &b.v_proj),
                (format!("{a}.out_proj.weight"), &b.out_proj.weight),
                (format!("{a}.out_proj.bias"), &b.out_proj.bias),
                (format!("{p}.ln_2.weight"), &b.ln_2.weight),
                (format!("{p}.ln_2.bias"), &b.ln_2.bias),
                (format!("{p}.mlp.c_fc.weight"), &b.c_fc.weight),
                (format!("{p}.mlp.c_fc.bias"), &b.c_fc.bias),
                (format!("{p}.mlp.c_proj.weight"), &b.c_proj.weight),
                (format!("{p}.mlp.c_proj.bias"), &b.c_proj.bias),
            ]);
        }
        if let Some(ln_f) = &self.ln_f {
            named.push(("transformer.ln_f.weight".into(), &ln_f.weight));
            named.push(("transformer.ln_f.bias".into(), &ln_f.bias));
        }
        let values: Vec<_> = named.iter().map(|(_, t)| t.values()).collect();
        let tensors: Vec<NamedTensor> = named
            .iter()
            .zip(&values)
            .map(|((name, t), v)| NamedTensor { name, shape: t.shape().to_vec(), data: v })
            .collect();
        let bytes = safetensors_bytes(&tensors, &Default::default())?;
        write_atomic(&dir.join("model.safetensors"), |w| Ok(w.write_all(&bytes)?))?;
        let config = serde_json::to_string_pretty(&self.config.to_hf_json())?;
        write_atomic(&dir.join("config.json"), |w| Ok(w.write_all(config.as_bytes())?))
    }
}

/// One N(0, 1) sample (Box–Muller).
fn standard_normal(rng: &mut impl rand::Rng) -> f32 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// One weights file, mapped.
struct MappedFile {
    path: PathBuf,
    /// Open for reads that bypass the map ([`HostTensor::gather_rows`]).
    file: Arc<File>,
    map: Arc<Mmap>,
}

impl MappedFile {
    fn open(path: &Path) -> Result<MappedFile> {
        let file = Arc::new(File::open(path).with_context(|| {
            if path.file_name().is_some_and(|n| n == super::WEIGHTS_FILE) {
                format!(
                    "cannot open {}: the model folder needs the model's model.safetensors",
                    path.display()
                )
            } else {
                format!("cannot open {}, a shard of the model's weights", path.display())
            }
        })?);
        // SAFETY: the map is read-only and neoprobe never writes to the file; as with any mapped
        // file, another process truncating it while it is in use is outside what we can guard.
        let map = Arc::new(
            unsafe { Mmap::map(file.as_ref()) }.with_context(|| format!("cannot map {}", path.display()))?,
        );
        Ok(MappedFile { path: path.to_path_buf(), file, map })
    }
}

struct TensorReader<'a> {
    mapped: &'a [MappedFile],
    parsed: &'a [SafeTensors<'a>],
    /// Tensor name → index into `mapped` and `parsed`.
    location: &'a HashMap<String, usize>,
    prefix: &'a str,
    /// The file named when a tensor is missing (the single file, or the index) ...
    described: &'a Path,
    /// ... and how it lacks it.
    listed: &'a str,
}

impl TensorReader<'_> {
    /// The tensor `name` (without the `transformer.` prefix), which must have `shape`.
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<HostTensor> {
        let full = format!("{}{name}", self.prefix);
        let missing = || {
            anyhow!(
                "{} {} {full} (expected shape {shape:?}); is it a GPT-Neo checkpoint?",
                self.described.display(),
                self.listed
            )
        };
        let &i = self.location.get(&full).ok_or_else(missing)?;
        let (mapped, path) = (&self.mapped[i], &self.mapped[i].path);
        let view = self.parsed[i].tensor(&full).map_err(|_| missing())?;
        if view.shape() != shape {
            bail!(
                "tensor {full} in {} has shape {:?}, expected {shape:?} from config.json",
                path.display(),
                view.shape()
            );
        }
        let bytes = view.data();
        let values = match view.dtype() {
            Dtype::F32 => {
                let start = bytes.as_ptr() as usize - mapped.map.as_ptr() as usize;
                return Ok(HostTensor {
                    shape: shape.to_vec(),
                    data: TensorData::Mapped {
                        map: Arc::clone(&mapped.map),
                        file: Arc::clone(&mapped.file),
                        bytes: start..start + bytes.len(),
                    },
                });
            }
            Dtype::F16 => {
                bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
            }
            Dtype::BF16 => {
                bytes.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
            }
            other => bail!(
                "tensor {full} in {} has dtype {other:?}; neoprobe reads F32, F16 and BF16",
                path.display()
            ),
        };
        Ok(HostTensor::from_vec(shape.to_vec(), values))
    }

    fn layernorm(&self, name: &str, width: usize) -> Result<LayerNormWeights> {
        Ok(LayerNormWeights {
            weight: self.tensor(&format!("{name}.weight"), &[width])?,
            bias: self.tensor(&format!("{name}.bias"), &[width])?,
        })
    }

    fn linear(&self, name: &str, n_out: usize, n_in: usize) -> Result<LinearWeights> {
        Ok(LinearWeights {
            weight: self.tensor(&format!("{name}.weight"), &[n_out, n_in])?,
            bias: self.tensor(&format!("{name}.bias"), &[n_out])?,
        })
    }

    fn block(&self, i: usize, config: &GptNeoConfig) -> Result<BlockWeights> {
        let (h, inter) = (config.hidden_size, config.intermediate_size);
        let attn = format!("h.{i}.attn.attention");
        Ok(BlockWeights {
            ln_1: self.layernorm(&format!("h.{i}.ln_1"), h)?,
            q_proj: self.tensor(&format!("{attn}.q_proj.weight"), &[h, h])?,
            k_proj: self.tensor(&format!("{attn}.k_proj.weight"), &[h, h])?,
            v_proj: self.tensor(&format!("{attn}.v_proj.weight"), &[h, h])?,
            out_proj: self.linear(&format!("{attn}.out_proj"), h, h)?,
            ln_2: self.layernorm(&format!("h.{i}.ln_2"), h)?,
            c_fc: self.linear(&format!("h.{i}.mlp.c_fc"), inter, h)?,
            c_proj: self.linear(&format!("h.{i}.mlp.c_proj"), h, inter)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Hook, HookPlan, ModelDir};

    /// Rows read from the file are the rows the map holds, in the order asked for, repeats too.
    #[test]
    fn gathered_rows_are_the_mapped_rows() {
        let dir = ModelDir::open(Path::new("fixtures/tiny-neo")).unwrap();
        let config = dir.config().unwrap();
        let plan = HookPlan::new(&[Hook::parse("blocks.0.hook_resid_pre", &config).unwrap()]).unwrap();
        let weights = dir.weights(&config, &plan).unwrap();
        assert!(matches!(weights.wte.data, TensorData::Mapped { .. }), "the fixture's wte is mapped");
        let last = config.vocab_size - 1;
        let rows = [last, 0, 7, 7, 1234];
        let gathered = weights.wte.gather_rows(&rows).unwrap();
        let expected: Vec<u8> = rows.iter().flat_map(|&r| weights.wte.row_bytes(r)).copied().collect();
        assert_eq!(gathered, expected);
    }
}
