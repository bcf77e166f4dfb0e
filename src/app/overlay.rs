//! The mask overlay: `shaders/mask_overlay.wgsl` through an egui_wgpu paint callback on the
//! app's wgpu device, or — without a wgpu render state (e.g. headless tests) — the same
//! picture composed on the CPU into an egui texture.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::Arc;

use eframe::egui_wgpu;
use egui::{Color32, Rect, TextureHandle};

pub const SHADER: &str = include_str!("../../shaders/mask_overlay.wgsl");

/// What the overlay shows for one image: a label map of the visible objects, their colours and
/// the draft mask. Versions change whenever the content does, so uploads happen only then.
#[derive(Clone)]
pub struct OverlayData {
    pub width: u32,
    pub height: u32,
    pub labels: Arc<Vec<u16>>,
    pub labels_version: u64,
    /// RGBA per label; index 0 unused.
    pub palette: Arc<Vec<[u8; 4]>>,
    pub draft: Option<Arc<Vec<bool>>>,
    pub draft_version: u64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OverlayParams {
    pub opacity: f32,
    pub outline_px: f32,
    /// Label index of the selected object (0 = none).
    pub selected: u32,
    pub show_objects: bool,
    pub show_draft: bool,
    pub draft_color: [u8; 3],
}

/// Builds the label map: later objects are drawn over earlier ones.
pub fn build_labels(width: usize, height: usize, masks: &[(u16, &[bool])]) -> Vec<u16> {
    let mut l = vec![0u16; width * height];
    for (k, m) in masks {
        if m.len() != l.len() {
            continue;
        }
        for (dst, &v) in l.iter_mut().zip(m.iter()) {
            if v {
                *dst = *k;
            }
        }
    }
    l
}

// ---------------------------------------------------------------------------------------------
// wgpu path

const UNIFORM_SIZE: u64 = 64;

struct ViewTextures {
    labels_version: u64,
    draft_version: u64,
    palette_ptr: usize,
    size: (u32, u32),
    tex_scale: f32,
    labels: wgpu::Texture,
    draft: wgpu::Texture,
    palette: wgpu::Texture,
    bind_group: wgpu::BindGroup,
}

/// Shared GPU state, stored in egui_wgpu's callback resources.
pub struct OverlayRenderer {
    pipeline: wgpu::RenderPipeline,
    layout: wgpu::BindGroupLayout,
    srgb_target: bool,
    max_dim: u32,
    uniforms: HashMap<u64, wgpu::Buffer>,
    views: HashMap<u64, ViewTextures>,
}

/// Creates the pipeline on eframe's device and registers it. Returns false on failure (the
/// CPU overlay is then used).
pub fn init_wgpu(rs: &egui_wgpu::RenderState) -> bool {
    let device = &rs.device;
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("segadapt mask overlay"),
            source: wgpu::ShaderSource::Wgsl(SHADER.into()),
        });
        let tex_entry =
            |binding: u32, sample_type: wgpu::TextureSampleType| wgpu::BindGroupLayoutEntry {
                binding,
                visibility: wgpu::ShaderStages::FRAGMENT,
                ty: wgpu::BindingType::Texture {
                    multisampled: false,
                    sample_type,
                    view_dimension: wgpu::TextureViewDimension::D2,
                },
                count: None,
            };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("segadapt overlay layout"),
            entries: &[
                wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: NonZeroU64::new(UNIFORM_SIZE),
                    },
                    count: None,
                },
                tex_entry(1, wgpu::TextureSampleType::Uint),
                tex_entry(2, wgpu::TextureSampleType::Uint),
                tex_entry(3, wgpu::TextureSampleType::Float { filterable: false }),
            ],
        });
        let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("segadapt overlay pipeline layout"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("segadapt overlay pipeline"),
            layout: Some(&pl),
            vertex: wgpu::VertexState {
                module: &module,
                entry_point: Some("vs_main"),
                compilation_options: Default::default(),
                buffers: &[],
            },
            primitive: wgpu::PrimitiveState::default(),
            depth_stencil: None,
            multisample: wgpu::MultisampleState::default(),
            fragment: Some(wgpu::FragmentState {
                module: &module,
                entry_point: Some("fs_main"),
                compilation_options: Default::default(),
                targets: &[Some(wgpu::ColorTargetState {
                    format: rs.target_format,
                    blend: Some(wgpu::BlendState::PREMULTIPLIED_ALPHA_BLENDING),
                    write_mask: wgpu::ColorWrites::ALL,
                })],
            }),
            multiview_mask: None,
            cache: None,
        });
        OverlayRenderer {
            pipeline,
            layout,
            srgb_target: rs.target_format.is_srgb(),
            max_dim: device.limits().max_texture_dimension_2d,
            uniforms: HashMap::new(),
            views: HashMap::new(),
        }
    }));
    match res {
        Ok(r) => {
            rs.renderer.write().callback_resources.insert(r);
            true
        }
        Err(_) => false,
    }
}

struct OverlayCallback {
    view: u64,
    data: OverlayData,
    params: OverlayParams,
    /// Image rect in physical pixels: origin and scale.
    origin: [f32; 2],
    scale: [f32; 2],
}

fn tex(
    device: &wgpu::Device,
    label: &str,
    w: u32,
    h: u32,
    format: wgpu::TextureFormat,
) -> wgpu::Texture {
    device.create_texture(&wgpu::TextureDescriptor {
        label: Some(label),
        size: wgpu::Extent3d {
            width: w.max(1),
            height: h.max(1),
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format,
        usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    })
}

fn write(queue: &wgpu::Queue, t: &wgpu::Texture, bytes: &[u8], bpp: u32, w: u32, h: u32) {
    queue.write_texture(
        wgpu::TexelCopyTextureInfo {
            texture: t,
            mip_level: 0,
            origin: wgpu::Origin3d::ZERO,
            aspect: wgpu::TextureAspect::All,
        },
        bytes,
        wgpu::TexelCopyBufferLayout {
            offset: 0,
            bytes_per_row: Some(w * bpp),
            rows_per_image: Some(h),
        },
        wgpu::Extent3d {
            width: w,
            height: h,
            depth_or_array_layers: 1,
        },
    );
}

/// Nearest-neighbour downsample of a row-major map by an integer factor.
fn downsample<T: Copy>(src: &[T], w: usize, h: usize, f: usize) -> (Vec<T>, usize, usize) {
    if f <= 1 {
        return (src.to_vec(), w, h);
    }
    let (nw, nh) = (w.div_ceil(f), h.div_ceil(f));
    let mut out = Vec::with_capacity(nw * nh);
    for y in 0..nh {
        for x in 0..nw {
            out.push(src[(y * f).min(h - 1) * w + (x * f).min(w - 1)]);
        }
    }
    (out, nw, nh)
}

impl egui_wgpu::CallbackTrait for OverlayCallback {
    fn prepare(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        _sd: &egui_wgpu::ScreenDescriptor,
        _enc: &mut wgpu::CommandEncoder,
        resources: &mut egui_wgpu::CallbackResources,
    ) -> Vec<wgpu::CommandBuffer> {
        let Some(r) = resources.get_mut::<OverlayRenderer>() else {
            return Vec::new();
        };
        let d = &self.data;
        let (w, h) = (d.width as usize, d.height as usize);
        if w == 0 || h == 0 || d.labels.len() != w * h {
            return Vec::new();
        }
        let f = (d.width.max(d.height) as usize)
            .div_ceil(r.max_dim as usize)
            .max(1);
        let (tw, th) = (w.div_ceil(f) as u32, h.div_ceil(f) as u32);
        let palette_ptr = Arc::as_ptr(&d.palette) as usize;
        let uniform = r
            .uniforms
            .entry(self.view)
            .or_insert_with(|| {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("segadapt overlay uniforms"),
                    size: UNIFORM_SIZE,
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            })
            .clone();
        let needs_new = match r.views.get(&self.view) {
            Some(v) => v.size != (tw, th) || v.palette_ptr != palette_ptr,
            None => true,
        };
        if needs_new {
            let n_pal = d.palette.len().max(1) as u32;
            let labels = tex(
                device,
                "overlay labels",
                tw,
                th,
                wgpu::TextureFormat::R16Uint,
            );
            let draft = tex(device, "overlay draft", tw, th, wgpu::TextureFormat::R8Uint);
            let palette = tex(
                device,
                "overlay palette",
                n_pal,
                1,
                wgpu::TextureFormat::Rgba8Unorm,
            );
            let pal_bytes: Vec<u8> = if d.palette.is_empty() {
                vec![0; 4]
            } else {
                d.palette.iter().flatten().copied().collect()
            };
            write(queue, &palette, &pal_bytes, 4, n_pal, 1);
            let view = |t: &wgpu::Texture| t.create_view(&wgpu::TextureViewDescriptor::default());
            let (lv, dv, pv) = (view(&labels), view(&draft), view(&palette));
            let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("segadapt overlay bind group"),
                layout: &r.layout,
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: uniform.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: wgpu::BindingResource::TextureView(&lv),
                    },
                    wgpu::BindGroupEntry {
                        binding: 2,
                        resource: wgpu::BindingResource::TextureView(&dv),
                    },
                    wgpu::BindGroupEntry {
                        binding: 3,
                        resource: wgpu::BindingResource::TextureView(&pv),
                    },
                ],
            });
            r.views.insert(
                self.view,
                ViewTextures {
                    labels_version: u64::MAX,
                    draft_version: u64::MAX,
                    palette_ptr,
                    size: (tw, th),
                    tex_scale: 1.0 / f as f32,
                    labels,
                    draft,
                    palette,
                    bind_group,
                },
            );
        }
        let v = r.views.get_mut(&self.view).expect("inserted");
        if v.labels_version != d.labels_version {
            let (l, _, _) = downsample(&d.labels, w, h, f);
            let bytes: Vec<u8> = l.iter().flat_map(|x| x.to_le_bytes()).collect();
            write(queue, &v.labels, &bytes, 2, tw, th);
            v.labels_version = d.labels_version;
        }
        if v.draft_version != d.draft_version {
            let bytes: Vec<u8> = match &d.draft {
                Some(m) if m.len() == w * h => {
                    let (m, _, _) = downsample(m, w, h, f);
                    m.iter().map(|&b| b as u8).collect()
                }
                _ => vec![0; (tw * th) as usize],
            };
            write(queue, &v.draft, &bytes, 1, tw, th);
            v.draft_version = d.draft_version;
        }
        let _ = &v.palette;
        let p = &self.params;
        let flags = (p.show_objects as u32)
            | ((p.show_draft && d.draft.is_some()) as u32) << 1
            | (r.srgb_target as u32) << 2;
        let mut u = Vec::with_capacity(UNIFORM_SIZE as usize);
        for f in [
            self.origin[0],
            self.origin[1],
            self.scale[0],
            self.scale[1],
            d.width as f32,
            d.height as f32,
            v.tex_scale,
            p.opacity,
            p.outline_px,
        ] {
            u.extend_from_slice(&f.to_le_bytes());
        }
        for x in [p.selected, flags, 0u32] {
            u.extend_from_slice(&x.to_le_bytes());
        }
        let dc = p.draft_color;
        for c in [
            dc[0] as f32 / 255.0,
            dc[1] as f32 / 255.0,
            dc[2] as f32 / 255.0,
            1.0,
        ] {
            u.extend_from_slice(&c.to_le_bytes());
        }
        queue.write_buffer(&uniform, 0, &u);
        Vec::new()
    }

    fn paint(
        &self,
        _info: egui::PaintCallbackInfo,
        pass: &mut wgpu::RenderPass<'static>,
        resources: &egui_wgpu::CallbackResources,
    ) {
        let Some(r) = resources.get::<OverlayRenderer>() else {
            return;
        };
        let Some(v) = r.views.get(&self.view) else {
            return;
        };
        pass.set_pipeline(&r.pipeline);
        pass.set_bind_group(0, &v.bind_group, &[]);
        pass.draw(0..3, 0..1);
    }
}

/// Adds the GPU overlay for `image_rect` (screen points) clipped to `clip`.
pub fn paint_wgpu(
    painter: &egui::Painter,
    clip: Rect,
    image_rect: Rect,
    view: u64,
    data: &OverlayData,
    params: OverlayParams,
) {
    let ppp = painter.ctx().pixels_per_point();
    let origin = [image_rect.min.x * ppp, image_rect.min.y * ppp];
    let scale = [
        image_rect.width() * ppp / data.width.max(1) as f32,
        image_rect.height() * ppp / data.height.max(1) as f32,
    ];
    let cb = OverlayCallback {
        view,
        data: data.clone(),
        params,
        origin,
        scale,
    };
    let rect = clip.intersect(image_rect);
    if rect.is_positive() {
        painter.add(egui_wgpu::Callback::new_paint_callback(rect, cb));
    }
}

// ---------------------------------------------------------------------------------------------
// CPU fallback

/// What a CPU overlay texture was composed from (versions, size, parameters).
type CpuOverlayKey = (u64, u64, usize, [u32; 4], u32, bool, bool);

/// The overlay as an egui texture, recomposed only when its inputs change.
#[derive(Default)]
pub struct CpuOverlay {
    texture: Option<TextureHandle>,
    key: Option<CpuOverlayKey>,
}

const CPU_MAX: usize = 2048;

impl CpuOverlay {
    pub fn paint(
        &mut self,
        ctx: &egui::Context,
        painter: &egui::Painter,
        image_rect: Rect,
        data: &OverlayData,
        p: OverlayParams,
    ) {
        let (w, h) = (data.width as usize, data.height as usize);
        if w == 0 || h == 0 || data.labels.len() != w * h {
            return;
        }
        let key = (
            data.labels_version,
            data.draft_version,
            Arc::as_ptr(&data.palette) as usize,
            [
                p.opacity.to_bits(),
                p.outline_px.to_bits(),
                p.draft_color[0] as u32,
                p.draft_color[1] as u32,
            ],
            p.selected,
            p.show_objects,
            p.show_draft,
        );
        if self.key != Some(key) || self.texture.is_none() {
            let img = compose(data, &p);
            match &mut self.texture {
                Some(t) => t.set(img, egui::TextureOptions::NEAREST),
                None => {
                    self.texture =
                        Some(ctx.load_texture("mask-overlay", img, egui::TextureOptions::NEAREST))
                }
            }
            self.key = Some(key);
        }
        if let Some(t) = &self.texture {
            painter.image(
                t.id(),
                image_rect,
                Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0)),
                Color32::WHITE,
            );
        }
    }
}

/// Composes the overlay (premultiplied RGBA) like the shader does, at most CPU_MAX per side.
pub fn compose(d: &OverlayData, p: &OverlayParams) -> egui::ColorImage {
    let (w, h) = (d.width as usize, d.height as usize);
    let f = w.max(h).div_ceil(CPU_MAX).max(1);
    let (ow, oh) = (w.div_ceil(f), h.div_ceil(f));
    let lab = |x: isize, y: isize| -> u16 {
        if x < 0 || y < 0 || x >= ow as isize || y >= oh as isize {
            0
        } else {
            d.labels[((y as usize) * f).min(h - 1) * w + ((x as usize) * f).min(w - 1)]
        }
    };
    let draft = d
        .draft
        .as_ref()
        .filter(|m| m.len() == w * h && p.show_draft);
    let dr = |x: isize, y: isize| -> bool {
        match draft {
            Some(m) if x >= 0 && y >= 0 && x < ow as isize && y < oh as isize => {
                m[((y as usize) * f).min(h - 1) * w + ((x as usize) * f).min(w - 1)]
            }
            _ => false,
        }
    };
    let mut px = vec![Color32::TRANSPARENT; ow * oh];
    for y in 0..oh as isize {
        for x in 0..ow as isize {
            let mut out = [0f32; 4];
            if p.show_objects {
                let l = lab(x, y);
                if l != 0 {
                    let edge = lab(x + 1, y) != l
                        || lab(x - 1, y) != l
                        || lab(x, y + 1) != l
                        || lab(x, y - 1) != l;
                    let mut c = d
                        .palette
                        .get(l as usize)
                        .copied()
                        .unwrap_or([255, 255, 255, 255]);
                    let mut a = if edge { 1.0 } else { p.opacity };
                    if l as u32 == p.selected {
                        a = (a + 0.2f32).min(1.0);
                        if edge {
                            c = [255, 255, 255, c[3]];
                        }
                    }
                    a *= c[3] as f32 / 255.0;
                    out = [c[0] as f32 * a, c[1] as f32 * a, c[2] as f32 * a, a * 255.0];
                }
            }
            if dr(x, y) {
                let edge = !dr(x + 1, y) || !dr(x - 1, y) || !dr(x, y + 1) || !dr(x, y - 1);
                let a = if edge {
                    1.0
                } else {
                    (p.opacity + 0.1).min(1.0)
                };
                let c = p.draft_color;
                out = [
                    c[0] as f32 * a + out[0] * (1.0 - a),
                    c[1] as f32 * a + out[1] * (1.0 - a),
                    c[2] as f32 * a + out[2] * (1.0 - a),
                    a * 255.0 + out[3] * (1.0 - a),
                ];
            }
            px[y as usize * ow + x as usize] = Color32::from_rgba_premultiplied(
                out[0].round() as u8,
                out[1].round() as u8,
                out[2].round() as u8,
                out[3].round() as u8,
            );
        }
    }
    egui::ColorImage::new([ow, oh], px)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shader_parses_and_validates() {
        let module = naga::front::wgsl::parse_str(SHADER).expect("WGSL parses");
        let mut v = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::empty(),
        );
        v.validate(&module).expect("WGSL validates");
    }
}
