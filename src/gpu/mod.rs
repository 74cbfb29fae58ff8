//! The wgpu side of neoprobe, knowing nothing of GPT-Neo: choosing an adapter, buffers, one
//! generic "run this kernel on these buffers" helper, and reading buffers back to the host.

use anyhow::{bail, Result};
use std::sync::mpsc;
use wgpu::util::DeviceExt;

mod kernel;
mod recorder;
pub use kernel::{grid_1d, Bind, Kernel};
pub use recorder::{timestamps_usable, PassTime, Recorder, Trace, TraceEntry, Work};

/// How to get a GPU where there is none: the software Vulkan driver.
pub const NO_ADAPTER_HINT: &str = "install a Vulkan, Metal or DX12 driver; on a machine without a GPU, \
    the software Vulkan driver lavapipe: `apt-get install mesa-vulkan-drivers libvulkan1`";

/// A wgpu device and queue with the adapter they came from.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    /// Whether the device can write GPU timestamps between passes.
    pub has_timestamps: bool,
    /// Whether kernels may use WGSL subgroup operations.
    pub has_subgroups: bool,
}

impl Gpu {
    /// Opens the adapter named by `WGPU_ADAPTER_NAME` (a case-insensitive substring of the adapter
    /// name) if set, otherwise the default one, on the backends allowed by `WGPU_BACKEND`.
    pub fn new() -> Result<Gpu> {
        pollster::block_on(Self::new_async())
    }

    async fn new_async() -> Result<Gpu> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = match std::env::var("WGPU_ADAPTER_NAME") {
            Ok(wanted) => {
                let adapters = instance.enumerate_adapters(wgpu::Backends::all()).await;
                let names: Vec<String> = adapters.iter().map(|a| describe(&a.get_info())).collect();
                adapters
                    .into_iter()
                    .find(|a| a.get_info().name.to_lowercase().contains(&wanted.to_lowercase()))
                    .ok_or_else(|| {
                        crate::error::gpu(format!(
                            "no GPU adapter matches WGPU_ADAPTER_NAME={wanted:?}; available: {}",
                            if names.is_empty() { "none".to_string() } else { names.join(", ") }
                        ))
                    })?
            }
            Err(_) => instance
                .request_adapter(&wgpu::RequestAdapterOptions {
                    power_preference: wgpu::PowerPreference::from_env()
                        .unwrap_or(wgpu::PowerPreference::HighPerformance),
                    ..Default::default()
                })
                .await
                .map_err(|e| crate::error::gpu(format!("no GPU adapter found ({e}): {NO_ADAPTER_HINT}")))?,
        };
        let info = adapter.get_info();
        // The whole model never needs a binding over the default 128 MiB (the 154 MB token
        // embedding table is gathered per batch on the host), but long batches of wide models can:
        // ask for what the adapter offers.
        let limits = adapter.limits();
        let optional = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SUBGROUP;
        let required_features = adapter.features() & optional;
        let has_timestamps = required_features.contains(wgpu::Features::TIMESTAMP_QUERY);
        let has_subgroups = required_features.contains(wgpu::Features::SUBGROUP);
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("neoprobe"),
                required_features,
                required_limits: limits,
                ..Default::default()
            })
            .await
            .map_err(|e| crate::error::gpu(format!("cannot open GPU device on {}: {e}", describe(&info))))?;
        Ok(Gpu { device, queue, info, has_timestamps, has_subgroups })
    }

    /// The adapter in words, e.g. `llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu)`.
    pub fn adapter_name(&self) -> String {
        describe(&self.info)
    }

    /// The largest storage-buffer binding this device accepts, in bytes.
    pub fn max_binding_bytes(&self) -> u64 {
        self.device.limits().max_storage_buffer_binding_size
    }

    /// A storage buffer holding `data`.
    pub fn upload(&self, label: &str, data: &[u8]) -> Result<wgpu::Buffer> {
        self.check_binding_size(label, data.len() as u64)?;
        Ok(self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: data,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        }))
    }

    /// An uninitialised storage buffer of `n_floats` f32 values that can be copied from.
    pub fn storage(&self, label: &str, n_floats: usize) -> Result<wgpu::Buffer> {
        let size = (n_floats.max(1) * 4) as u64;
        self.check_binding_size(label, size)?;
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    /// An rgba32float texture `texels_wide` × `texels_high`, written by kernels and read by
    /// kernels (a texel matrix: see `TexelLayout` in src/kernels/texels.rs).
    pub fn texel_texture(
        &self,
        label: &str,
        texels_wide: usize,
        texels_high: usize,
    ) -> Result<wgpu::Texture> {
        let max = self.device.limits().max_texture_dimension_2d as usize;
        if texels_wide > max || texels_high > max {
            bail!(
                "{label} needs a {texels_wide}×{texels_high} texture but {} allows at most {max} per side; use fewer tokens",
                self.adapter_name()
            );
        }
        Ok(self.device.create_texture(&wgpu::TextureDescriptor {
            label: Some(label),
            size: wgpu::Extent3d {
                width: texels_wide.max(1) as u32,
                height: texels_high.max(1) as u32,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba32Float,
            usage: wgpu::TextureUsages::TEXTURE_BINDING
                | wgpu::TextureUsages::STORAGE_BINDING
                | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        }))
    }

    /// A host-readable buffer of `bytes` bytes to copy results into.
    pub fn staging(&self, label: &str, bytes: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    fn check_binding_size(&self, label: &str, bytes: u64) -> Result<()> {
        if bytes > self.max_binding_bytes() {
            bail!(
                "{label} needs a {bytes}-byte GPU buffer but {} binds at most {} bytes; use fewer tokens",
                self.adapter_name(),
                self.max_binding_bytes()
            );
        }
        Ok(())
    }

    /// Submits the buffer writes queued so far and waits for them (and all other work) to finish,
    /// so their host-side staging memory is released.
    pub fn flush(&self) -> Result<()> {
        self.queue.submit(std::iter::empty());
        self.wait()
    }

    /// Blocks until all submitted work is done.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| crate::error::gpu(format!("GPU stopped answering: {e}")))
    }

    /// Maps the staging buffers (already filled by submitted copies) and returns their contents as f32.
    pub fn read_staging(&self, buffers: &[&wgpu::Buffer]) -> Result<Vec<Vec<f32>>> {
        Ok(self
            .read_staging_bytes(buffers)?
            .iter()
            .map(|bytes| bytemuck::pod_collect_to_vec::<u8, f32>(bytes))
            .collect())
    }

    /// Maps the staging buffers (already filled by submitted copies) and returns their bytes.
    pub fn read_staging_bytes(&self, buffers: &[&wgpu::Buffer]) -> Result<Vec<Vec<u8>>> {
        let (sender, receiver) = mpsc::channel();
        for (i, buffer) in buffers.iter().enumerate() {
            let sender = sender.clone();
            buffer.map_async(wgpu::MapMode::Read, .., move |result| {
                let _ = sender.send((i, result));
            });
        }
        drop(sender);
        self.wait()?;
        for (i, result) in receiver.iter() {
            result.map_err(|e| crate::error::gpu(format!("cannot read back GPU buffer {i}: {e}")))?;
        }
        buffers
            .iter()
            .map(|buffer| {
                let values = {
                    let view = buffer
                        .get_mapped_range(..)
                        .map_err(|e| crate::error::gpu(format!("cannot read back GPU buffer: {e}")))?;
                    view.to_vec()
                };
                buffer.unmap();
                Ok(values)
            })
            .collect()
    }

    /// Copies a storage buffer to the host (a convenience for tests and small reads).
    pub fn read(&self, buffer: &wgpu::Buffer, n_floats: usize) -> Result<Vec<f32>> {
        let bytes = (n_floats * 4) as u64;
        let staging = self.staging("readback", bytes);
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, bytes);
        self.queue.submit([encoder.finish()]);
        let mut values = self.read_staging(&[&staging])?.pop().unwrap_or_default();
        values.truncate(n_floats);
        Ok(values)
    }
}

fn describe(info: &wgpu::AdapterInfo) -> String {
    format!("{} ({:?}, {:?})", info.name, info.backend, info.device_type)
}
