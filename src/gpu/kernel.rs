//! One compiled WGSL kernel and the one way neoprobe dispatches kernels.
//!
//! Binding convention shared by every shader in `shaders/`: `@binding(0)` is a uniform struct of
//! parameters, `@binding(1)`, `@binding(2)`, … are the buffers and textures in the order the
//! kernel's Rust wrapper passes them. That convention is what lets a single `dispatch` serve
//! every kernel.

use super::Gpu;
use anyhow::Result;

/// Something a kernel can be given at a binding: a buffer or a texture view.
pub trait Bind {
    fn resource(&self) -> wgpu::BindingResource<'_>;
}

impl Bind for wgpu::Buffer {
    fn resource(&self) -> wgpu::BindingResource<'_> {
        self.as_entire_binding()
    }
}

impl Bind for wgpu::TextureView {
    fn resource(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::TextureView(self)
    }
}

/// Workgroups per grid dimension allowed by WebGPU's default limits.
const MAX_GROUPS_PER_DIM: u32 = 65_535;

/// A compute pipeline built from one WGSL source with its single entry point.
pub struct Kernel {
    pub name: &'static str,
    /// Invocations per workgroup, as its source declares them (0: not stated).
    pub workgroup_size: u32,
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

impl Kernel {
    /// Compiles `source`; a shader the device rejects is an error naming the kernel.
    pub fn new(gpu: &Gpu, name: &'static str, source: &str) -> Result<Kernel> {
        Kernel::specialized(gpu, name, source, &[])
    }

    /// Compiles `source` with its WGSL `override` constants set to `constants` (name, value).
    pub fn specialized(
        gpu: &Gpu,
        name: &'static str,
        source: &str,
        constants: &[(&str, f64)],
    ) -> Result<Kernel> {
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = gpu.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(name),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let pipeline = gpu.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(name),
            layout: None,
            module: &module,
            entry_point: None,
            compilation_options: wgpu::PipelineCompilationOptions { constants, ..Default::default() },
            cache: None,
        });
        if let Some(error) = pollster::block_on(scope.pop()) {
            return Err(crate::error::gpu(format!(
                "kernel {name} does not compile on {}: {error}",
                gpu.adapter_name()
            )));
        }
        let layout = pipeline.get_bind_group_layout(0);
        Ok(Kernel { name, workgroup_size: 0, pipeline, layout })
    }

    /// Records one dispatch of this kernel into `pass` over `grid` workgroups, with `params` (a
    /// uniform buffer range) at binding 0 and `resources` at bindings 1, 2, ….
    pub(super) fn dispatch(
        &self,
        gpu: &Gpu,
        pass: &mut wgpu::ComputePass,
        params: wgpu::BufferBinding,
        resources: &[&dyn Bind],
        grid: [u32; 3],
    ) {
        let mut entries =
            vec![wgpu::BindGroupEntry { binding: 0, resource: wgpu::BindingResource::Buffer(params) }];
        entries.extend(
            resources
                .iter()
                .enumerate()
                .map(|(i, r)| wgpu::BindGroupEntry { binding: i as u32 + 1, resource: r.resource() }),
        );
        let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(self.name),
            layout: &self.layout,
            entries: &entries,
        });
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(grid[0], grid[1], grid[2]);
    }
}

/// A grid of `n_groups` workgroups laid out as x × y so that neither passes the per-dimension
/// limit. Kernels recover the flat workgroup index as `wid.y * num_workgroups.x + wid.x` and
/// ignore indices ≥ their item count (the last row of the grid may overhang).
pub fn grid_1d(n_groups: u32) -> [u32; 3] {
    if n_groups <= MAX_GROUPS_PER_DIM {
        [n_groups.max(1), 1, 1]
    } else {
        [MAX_GROUPS_PER_DIM, n_groups.div_ceil(MAX_GROUPS_PER_DIM), 1]
    }
}
