//! Recording a sequence of kernel dispatches and buffer copies into one submission, optionally
//! with a GPU timestamp before and after every dispatch.
//!
//! Dispatches share one compute pass until a copy needs the encoder (wgpu orders the dispatches
//! inside it), and every dispatch's parameters go into a slot of a few shared uniform buffers,
//! written just before the submission that runs it: a pass and a buffer per dispatch made most
//! of the host time of a forward on a discrete GPU. A recording may be submitted in parts
//! ([`Recorder::submit_so_far`]) so that the GPU starts before the recording ends. A timed
//! recording gives each dispatch its own pass, with a timestamp at its start and end. A traced
//! recording ([`Recorder::traced`], for `neoprobe trace`) also keeps what each dispatch is: the
//! module that asked for it, its kernel and grid, the work it does, and its time — from
//! timestamps where they measure kernels, else from the wall clock around a submission of that
//! dispatch alone.

use super::{Bind, Gpu, Kernel};
use anyhow::Result;

/// The most timestamps one recording may write (wgpu's query-set ceiling).
const MAX_TIMESTAMPS: u32 = 4096;

/// Parameter slots per uniform buffer of a recording.
const SLOTS_PER_BUFFER: u64 = 256;

/// How long one dispatch took on the GPU, from timestamp queries.
#[derive(Clone, Debug)]
pub struct PassTime {
    pub kernel: &'static str,
    pub seconds: f64,
}

pub struct Recorder<'g> {
    gpu: &'g Gpu,
    encoder: wgpu::CommandEncoder,
    /// The compute pass untimed dispatches go into, while no copy has interrupted it.
    pass: Option<wgpu::ComputePass<'static>>,
    timer: Option<Timer>,
    params: ParamSlots,
    tracer: Option<Tracer>,
}

/// What one dispatch computes, as a kernel's wrapper describes it for a trace.
#[derive(Clone, Debug, Default)]
pub struct Work {
    /// Invocations per workgroup (filled in from the kernel).
    pub workgroup_size: u32,
    /// Multiplies and adds of the math the kernel computes (a linear layer: 2·t·k·n).
    pub flops: f64,
    /// The bytes of its operands read and of its outputs written, each once.
    pub bytes_read: f64,
    pub bytes_written: f64,
    /// Its operands' shapes, in words.
    pub shapes: String,
}

/// One dispatch of a traced recording.
#[derive(Clone, Debug)]
pub struct TraceEntry {
    /// The part of the model that asked for it (`h.8.mlp.c_fc`).
    pub module: String,
    pub kernel: &'static str,
    pub grid: [u32; 3],
    pub work: Work,
    pub seconds: f64,
}

/// Every dispatch of a traced recording, in order.
#[derive(Clone, Debug)]
pub struct Trace {
    pub entries: Vec<TraceEntry>,
    /// Whether the times are wall clock around each dispatch submitted alone (else GPU
    /// timestamps).
    pub wall_clock: bool,
    /// Wall time of the copies between dispatches (texel operands, hook read-backs), when the
    /// times are wall clock.
    pub copy_seconds: f64,
}

struct Tracer {
    module: String,
    work: Option<Work>,
    trace: Trace,
}

/// Uniform buffers holding every dispatch's parameters, one aligned slot per dispatch; the bytes
/// are kept on the host until the dispatches using them are submitted.
struct ParamSlots {
    slot_bytes: u64,
    buffers: Vec<ParamBuffer>,
}

struct ParamBuffer {
    buffer: wgpu::Buffer,
    /// The slots filled so far.
    staged: Vec<u8>,
    /// How many bytes of `staged` have been written to `buffer` (slots of earlier submissions).
    written: usize,
}

impl ParamSlots {
    /// Writes the slots filled since the last write; queued before the next submission.
    fn write_new(&mut self, queue: &wgpu::Queue) {
        for p in &mut self.buffers {
            if p.staged.len() > p.written {
                queue.write_buffer(&p.buffer, p.written as u64, &p.staged[p.written..]);
                p.written = p.staged.len();
            }
        }
    }
}

struct Timer {
    queries: wgpu::QuerySet,
    labels: Vec<&'static str>,
}

impl<'g> Recorder<'g> {
    /// Starts a recording; with `timed` and an adapter that has timestamp queries, every dispatch
    /// is timed on the GPU (see [`Recorder::finish`]).
    pub fn new(gpu: &'g Gpu, timed: bool) -> Self {
        let timer = (timed && gpu.has_timestamps).then(|| Timer {
            queries: gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("dispatch timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: MAX_TIMESTAMPS,
            }),
            labels: Vec::new(),
        });
        let encoder = gpu.device.create_command_encoder(&Default::default());
        // A slot holds any kernel's parameters (at most 32 bytes) at the device's uniform alignment.
        let slot_bytes = (gpu.device.limits().min_uniform_buffer_offset_alignment as u64).max(32);
        Recorder {
            gpu,
            encoder,
            pass: None,
            timer,
            params: ParamSlots { slot_bytes, buffers: Vec::new() },
            tracer: None,
        }
    }

    /// Starts a traced recording: every dispatch timed (GPU timestamps where `timestamps_usable`,
    /// else the wall clock around each dispatch submitted alone) and kept with its description.
    pub fn traced(gpu: &'g Gpu) -> Self {
        let wall_clock = !timestamps_usable(gpu);
        let mut rec = Recorder::new(gpu, !wall_clock);
        let trace = Trace { entries: Vec::new(), wall_clock, copy_seconds: 0.0 };
        rec.tracer = Some(Tracer { module: String::new(), work: None, trace });
        rec
    }

    /// Names the part of the model the next dispatches belong to (traced recordings only).
    pub fn module(&mut self, name: impl FnOnce() -> String) {
        if let Some(tracer) = &mut self.tracer {
            tracer.module = name();
        }
    }

    /// Describes the next dispatch (traced recordings only).
    pub fn work(&mut self, work: impl FnOnce() -> Work) {
        if let Some(tracer) = &mut self.tracer {
            tracer.work = Some(work());
        }
    }

    pub fn gpu(&self) -> &'g Gpu {
        self.gpu
    }

    /// Records `kernel` over `grid` workgroups with `params` at binding 0 and `resources`
    /// (buffers, texture views) at bindings 1, 2, … (the convention of every shader in `shaders/`).
    pub fn dispatch<P: bytemuck::Pod>(
        &mut self,
        kernel: &Kernel,
        params: &P,
        resources: &[&dyn Bind],
        grid: [u32; 3],
    ) {
        let wall_clock = self.tracer.as_ref().is_some_and(|t| t.trace.wall_clock);
        if wall_clock {
            // What is recorded so far (copies) runs first, timed on its own.
            let started = std::time::Instant::now();
            self.submit_so_far();
            let _ = self.gpu.wait();
            if let Some(tracer) = &mut self.tracer {
                tracer.trace.copy_seconds += started.elapsed().as_secs_f64();
            }
        }
        if let Some(tracer) = &mut self.tracer {
            let work =
                Work { workgroup_size: kernel.workgroup_size, ..tracer.work.take().unwrap_or_default() };
            let module = tracer.module.clone();
            tracer.trace.entries.push(TraceEntry { module, kernel: kernel.name, grid, work, seconds: 0.0 });
        }
        let timestamp_writes = match &mut self.timer {
            Some(timer) if (timer.labels.len() as u32) * 2 + 2 <= MAX_TIMESTAMPS => {
                let first = timer.labels.len() as u32 * 2;
                timer.labels.push(kernel.name);
                Some(wgpu::ComputePassTimestampWrites {
                    query_set: &timer.queries,
                    beginning_of_pass_write_index: Some(first),
                    end_of_pass_write_index: Some(first + 1),
                })
            }
            _ => None,
        };
        let bytes = bytemuck::bytes_of(params);
        assert!(bytes.len() as u64 <= self.params.slot_bytes, "kernel parameters larger than a slot");
        let slots = &mut self.params;
        if slots.buffers.last().is_none_or(|p| p.staged.len() as u64 == SLOTS_PER_BUFFER * slots.slot_bytes) {
            let buffer = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("kernel parameters"),
                size: SLOTS_PER_BUFFER * slots.slot_bytes,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            slots.buffers.push(ParamBuffer { buffer, staged: Vec::new(), written: 0 });
        }
        let ParamBuffer { buffer, staged, .. } = slots.buffers.last_mut().expect("a parameter buffer");
        let offset = staged.len() as u64;
        staged.extend_from_slice(bytes);
        staged.resize((offset + slots.slot_bytes) as usize, 0);
        let binding = wgpu::BufferBinding { buffer, offset, size: wgpu::BufferSize::new(bytes.len() as u64) };
        match timestamp_writes {
            Some(writes) => {
                let descriptor =
                    wgpu::ComputePassDescriptor { label: Some(kernel.name), timestamp_writes: Some(writes) };
                let mut pass = self.encoder.begin_compute_pass(&descriptor);
                kernel.dispatch(self.gpu, &mut pass, binding, resources, grid);
            }
            None => {
                let encoder = &mut self.encoder;
                let pass = self.pass.get_or_insert_with(|| {
                    encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default()).forget_lifetime()
                });
                kernel.dispatch(self.gpu, pass, binding, resources, grid);
            }
        }
        if wall_clock {
            let started = std::time::Instant::now();
            self.submit_so_far();
            let _ = self.gpu.wait();
            if let Some(entry) = self.tracer.as_mut().and_then(|t| t.trace.entries.last_mut()) {
                entry.seconds = started.elapsed().as_secs_f64();
            }
        }
    }

    /// Records a copy of the first `bytes` bytes of `source` into `destination`.
    pub fn copy(&mut self, source: &wgpu::Buffer, destination: &wgpu::Buffer, bytes: u64) {
        self.pass = None; // ends the shared pass: copies are recorded outside passes
        self.encoder.copy_buffer_to_buffer(source, 0, destination, 0, bytes);
    }

    /// Records a copy of `bytes` bytes from `source` at `from` into `destination` at `to`.
    pub fn copy_range(
        &mut self,
        source: &wgpu::Buffer,
        from: u64,
        destination: &wgpu::Buffer,
        to: u64,
        bytes: u64,
    ) {
        self.pass = None; // ends the shared pass: copies are recorded outside passes
        self.encoder.copy_buffer_to_buffer(source, from, destination, to, bytes);
    }

    /// Records a copy of `rows` rows of `texels_wide` rgba32float texels from the start of
    /// `source`, where they lie row after row with nothing between, into the top left of
    /// `destination`. The rows' bytes must be a multiple of `wgpu::COPY_BYTES_PER_ROW_ALIGNMENT`.
    pub fn copy_to_texture(
        &mut self,
        source: &wgpu::Buffer,
        destination: &wgpu::Texture,
        texels_wide: usize,
        rows: usize,
    ) {
        self.pass = None; // ends the shared pass: copies are recorded outside passes
        self.encoder.copy_buffer_to_texture(
            wgpu::TexelCopyBufferInfo {
                buffer: source,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(16 * texels_wide as u32),
                    rows_per_image: Some(rows as u32),
                },
            },
            destination.as_image_copy(),
            wgpu::Extent3d { width: texels_wide as u32, height: rows as u32, depth_or_array_layers: 1 },
        );
    }

    /// Submits what has been recorded so far, so that the GPU works on it while the rest is
    /// recorded (a forward on a GPU submits every few blocks; docs/kernels.md).
    pub fn submit_so_far(&mut self) {
        self.pass = None;
        self.params.write_new(&self.gpu.queue);
        let next = self.gpu.device.create_command_encoder(&Default::default());
        let recorded = std::mem::replace(&mut self.encoder, next);
        self.gpu.queue.submit([recorded.finish()]);
    }

    /// Submits everything recorded and waits for the GPU to finish it. Returns the GPU time of
    /// each dispatch when the recording was timed (empty otherwise).
    pub fn finish(self) -> Result<Vec<PassTime>> {
        Ok(self.finish_with_trace()?.0)
    }

    /// `finish` for a traced recording: its dispatches with their times.
    pub fn finish_traced(self) -> Result<Trace> {
        let (passes, tracer) = self.finish_with_trace()?;
        let mut trace = tracer.expect("a traced recording").trace;
        if !trace.wall_clock {
            for (entry, pass) in trace.entries.iter_mut().zip(&passes) {
                entry.seconds = pass.seconds;
            }
        }
        Ok(trace)
    }

    fn finish_with_trace(mut self) -> Result<(Vec<PassTime>, Option<Tracer>)> {
        self.pass = None;
        let resolved = self.timer.as_ref().filter(|t| !t.labels.is_empty()).map(|timer| {
            let count = timer.labels.len() as u32 * 2;
            let bytes = count as u64 * 8;
            let resolve = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let staging = self.gpu.staging("timestamps readback", bytes);
            self.encoder.resolve_query_set(&timer.queries, 0..count, &resolve, 0);
            self.encoder.copy_buffer_to_buffer(&resolve, 0, &staging, 0, bytes);
            staging
        });
        self.params.write_new(&self.gpu.queue);
        self.gpu.queue.submit([self.encoder.finish()]);
        self.gpu.wait()?;
        let tracer = self.tracer.take();
        let (Some(staging), Some(timer)) = (resolved, self.timer) else {
            return Ok((Vec::new(), tracer));
        };
        let bytes = self.gpu.read_staging_bytes(&[&staging])?.pop().unwrap_or_default();
        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&bytes);
        let ns_per_tick = self.gpu.queue.get_timestamp_period() as f64;
        let passes = timer
            .labels
            .iter()
            .enumerate()
            .map(|(i, &kernel)| PassTime {
                kernel,
                seconds: ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * ns_per_tick * 1e-9,
            })
            .collect();
        Ok((passes, tracer))
    }
}

/// Whether GPU timestamps measure kernels on `gpu`. On CPU drivers they do not: lavapipe writes
/// them when it records a dispatch, not around its execution, and there the host wall clock
/// around a submission is exact anyway.
pub fn timestamps_usable(gpu: &Gpu) -> bool {
    gpu.has_timestamps && gpu.info.device_type != wgpu::DeviceType::Cpu
}
