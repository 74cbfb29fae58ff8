mod common;

fn tex(gpu: &neoprobe::gpu::Gpu, w: u32, h: u32) -> wgpu::Texture {
    let t = gpu.device.create_texture(&wgpu::TextureDescriptor {
        label: None,
        size: wgpu::Extent3d { width: w, height: h, depth_or_array_layers: 1 },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba32Float,
        usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    });
    let data: Vec<f32> = (0..w * h * 4).map(|i| ((i % 13) as f32) * 0.01).collect();
    gpu.queue.write_texture(
        t.as_image_copy(),
        bytemuck::cast_slice(&data),
        wgpu::TexelCopyBufferLayout { offset: 0, bytes_per_row: Some(w * 16), rows_per_image: None },
        wgpu::Extent3d { width: w, height: h, depth_or_array_layers: 1 },
    );
    t
}

fn kernel_sg(r: usize, c: usize, n: usize, k4: usize) -> String {
    let mut s = String::new();
    s += "@group(0) @binding(0) var xt: texture_2d<f32>;\n@group(0) @binding(1) var wt: texture_2d<f32>;\n@group(0) @binding(2) var<storage, read_write> y: array<f32>;\n";
    s += &format!("@compute @workgroup_size(64)\nfn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(subgroup_invocation_id) sl: u32) {{\n let per_row = {}u; let idx = gid.x; let nb = (idx % per_row) * {c}u; let tb = (idx / per_row) * {r}u;\n", n / c);
    for i in 0..r {
        for j in 0..c {
            s += &format!(" var a{i}_{j} = 0.0;\n");
        }
    }
    s += &format!(" for (var kb = 0u; kb < {k4}u; kb += 8u) {{\n");
    for i in 0..r {
        s += &format!("  let xl{i} = textureLoad(xt, vec2<u32>(kb + sl, tb + {i}u), 0);\n");
    }
    s += "  for (var kk = 0u; kk < 8u; kk++) {\n";
    for j in 0..c {
        s += &format!("  let w{j} = textureLoad(wt, vec2<u32>(kb + kk, nb + {j}u), 0);\n");
    }
    for i in 0..r {
        s += &format!("  let x{i} = subgroupShuffle(xl{i}, kk);\n");
    }
    for i in 0..r {
        for j in 0..c {
            s += &format!("  a{i}_{j} += dot(x{i}, w{j});\n");
        }
    }
    s += " }}\n";
    for i in 0..r {
        for j in 0..c {
            s += &format!(" y[(tb + {i}u) * {n}u + nb + {j}u] = a{i}_{j};\n");
        }
    }
    s += "}\n";
    s
}

fn kernel(r: usize, c: usize, n: usize, k4: usize) -> String {
    let mut s = String::new();
    s += "@group(0) @binding(0) var xt: texture_2d<f32>;\n@group(0) @binding(1) var wt: texture_2d<f32>;\n@group(0) @binding(2) var<storage, read_write> y: array<f32>;\n";
    s += &format!("@compute @workgroup_size(64)\nfn main(@builtin(global_invocation_id) gid: vec3<u32>) {{\n let per_row = {}u; let idx = gid.x; let nb = (idx % per_row) * {c}u; let tb = (idx / per_row) * {r}u;\n", n / c);
    for i in 0..r {
        for j in 0..c {
            s += &format!(" var a{i}_{j} = 0.0;\n");
        }
    }
    s += &format!(" for (var k = 0u; k < {k4}u; k++) {{\n");
    for i in 0..r {
        s += &format!("  let x{i} = textureLoad(xt, vec2<u32>(k, tb + {i}u), 0);\n");
    }
    for j in 0..c {
        s += &format!("  let w{j} = textureLoad(wt, vec2<u32>(k, nb + {j}u), 0);\n");
    }
    for i in 0..r {
        for j in 0..c {
            s += &format!("  a{i}_{j} += dot(x{i}, w{j});\n");
        }
    }
    s += " }\n";
    for i in 0..r {
        for j in 0..c {
            s += &format!(" y[(tb + {i}u) * {n}u + nb + {j}u] = a{i}_{j};\n");
        }
    }
    s += "}\n";
    s
}

#[test]
fn gemm() {
    let gpu = common::gpu();
    let dev = &gpu.device;
    let (t, k, n) = (256usize, 768usize, 3072usize);
    let xt = tex(gpu, (k / 4) as u32, t as u32);
    let wt = tex(gpu, (k / 4) as u32, n as u32);
    let y = gpu.storage("y", t * n).unwrap();
    for (sg, r, c, chk) in [
        (true, 8, 2, false),
        (true, 8, 2, true),
        (true, 8, 3, false),
        (true, 12, 2, false),
        (true, 4, 4, false),
    ] {
        let src = if sg { kernel_sg(r, c, n, k / 4) } else { kernel(r, c, n, k / 4) };
        let module = unsafe {
            dev.create_shader_module_trusted(
                wgpu::ShaderModuleDescriptor { label: None, source: wgpu::ShaderSource::Wgsl(src.into()) },
                wgpu::ShaderRuntimeChecks::unchecked(),
            )
        };
        let pipe = dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: None,
            layout: None,
            module: &module,
            entry_point: None,
            compilation_options: Default::default(),
            cache: None,
        });
        let bg = dev.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipe.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::TextureView(&xt.create_view(&Default::default())),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: wgpu::BindingResource::TextureView(&wt.create_view(&Default::default())),
                },
                wgpu::BindGroupEntry { binding: 2, resource: y.as_entire_binding() },
            ],
        });
        let mut best = f64::MAX;
        for _ in 0..3 {
            let mut enc = dev.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                pass.set_pipeline(&pipe);
                pass.set_bind_group(0, &bg, &[]);
                pass.dispatch_workgroups(((t / r) * (n / c) / 64) as u32, 1, 1);
            }
            let s = std::time::Instant::now();
            gpu.queue.submit([enc.finish()]);
            gpu.wait().unwrap();
            best = best.min(s.elapsed().as_secs_f64());
        }
        println!(
            "sg={sg} R={r} C={c}: {:.1} ms, {:.2} GFLOP/s",
            best * 1e3,
            2.0 * (t * n * k) as f64 / best / 1e9
        );
    }
}
