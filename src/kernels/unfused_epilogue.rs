use super::variants::groups_for;
use super::{compile_source, Fused, Kernels, Source};
use crate::gpu::{grid_1d, Recorder, Work};
use anyhow::Result;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    _pad: [u32; 3],
}

const SOURCE: Source = Source {
    file: "unfused_epilogue.wgsl",
    text: concat!(
        include_str!("../../shaders/unfused_epilogue.wgsl"),
        include_str!("../../shaders/epilogue.wgsl")
    ),
    workgroup_size: 256,
};

impl Kernels {
    /// A linear layer's epilogue on its own (shaders/unfused_epilogue.wgsl): `y = gelu_new(v)`,
    /// or `y = resid + v` (`resid` given), over `n` values; for a `v` an intervention changed
    /// after the linear kernel stored it.
    pub fn unfused_epilogue(
        &self,
        rec: &mut Recorder,
        fused: Fused,
        v: &wgpu::Buffer,
        resid: Option<&wgpu::Buffer>,
        y: &wgpu::Buffer,
        n: usize,
    ) -> Result<()> {
        let kernel = self
            .unfused_epilogue_pipelines
            .get(fused as u32, || compile_source(rec.gpu(), &SOURCE, &[("EPILOGUE", fused as u32 as f64)]))?;
        let reads = if resid.is_some() { 2 } else { 1 };
        rec.work(|| Work {
            flops: if resid.is_some() { n as f64 } else { 8.0 * n as f64 },
            bytes_read: 4.0 * (reads * n) as f64,
            bytes_written: 4.0 * n as f64,
            shapes: format!("{n} values, {}", if resid.is_some() { "resid + v" } else { "gelu_new(v)" }),
            ..Work::default()
        });
        let params = Params { n: n as u32, _pad: [0; 3] };
        let resid = resid.unwrap_or(&self.placeholder);
        rec.dispatch(&kernel, &params, &[v, resid, y], grid_1d(groups_for(n, 256)));
        Ok(())
    }
}
