// Mask overlay for the segadapt canvas, drawn through an egui_wgpu paint callback.
//
// Inputs: a label texture (0 = background, k = k-th visible object), the draft mask (the object
// being made), and a palette (one RGBA per label). Every fragment maps its framebuffer position
// back to an image pixel, fills objects with their colour at `opacity`, and draws an outline of
// `outline_px` screen pixels on the inside of each object's border, whatever the zoom.
// Output is premultiplied alpha, as egui blends.

struct Uniforms {
    // framebuffer pixel of the image's top-left corner
    img_origin: vec2<f32>,
    // framebuffer pixels per image pixel (x, y)
    img_scale: vec2<f32>,
    // image size in pixels
    img_size: vec2<f32>,
    // label texels per image pixel (< 1 when huge images are downsampled)
    tex_scale: f32,
    opacity: f32,
    outline_px: f32,
    // label of the selected object (0 = none)
    selected: u32,
    // bit 0: objects, bit 1: draft, bit 2: sRGB target (linearise colours)
    flags: u32,
    _pad: u32,
    draft_color: vec4<f32>,
};

@group(0) @binding(0) var<uniform> u: Uniforms;
@group(0) @binding(1) var labels: texture_2d<u32>;
@group(0) @binding(2) var draft: texture_2d<u32>;
@group(0) @binding(3) var palette: texture_2d<f32>;

@vertex
fn vs_main(@builtin(vertex_index) i: u32) -> @builtin(position) vec4<f32> {
    // One triangle covering the callback's viewport.
    let x = f32((i << 1u) & 2u) * 2.0 - 1.0;
    let y = f32(i & 2u) * 2.0 - 1.0;
    return vec4<f32>(x, y, 0.0, 1.0);
}

fn inside(p: vec2<f32>) -> bool {
    return p.x >= 0.0 && p.y >= 0.0 && p.x < u.img_size.x && p.y < u.img_size.y;
}

fn texel(p: vec2<f32>, dims: vec2<u32>) -> vec2<i32> {
    let t = vec2<i32>(floor(p * u.tex_scale));
    return clamp(t, vec2<i32>(0, 0), vec2<i32>(dims) - vec2<i32>(1, 1));
}

fn label_at(p: vec2<f32>) -> u32 {
    if !inside(p) {
        return 0u;
    }
    return textureLoad(labels, texel(p, textureDimensions(labels)), 0).r;
}

fn draft_at(p: vec2<f32>) -> u32 {
    if !inside(p) {
        return 0u;
    }
    return textureLoad(draft, texel(p, textureDimensions(draft)), 0).r;
}

fn to_target(c: vec3<f32>) -> vec3<f32> {
    if (u.flags & 4u) != 0u {
        return pow(c, vec3<f32>(2.2));
    }
    return c;
}

@fragment
fn fs_main(@builtin(position) pos: vec4<f32>) -> @location(0) vec4<f32> {
    let p = (pos.xy - u.img_origin) / u.img_scale;
    if !inside(p) {
        discard;
    }
    // Outline width in image pixels.
    let dx = vec2<f32>(u.outline_px / u.img_scale.x, 0.0);
    let dy = vec2<f32>(0.0, u.outline_px / u.img_scale.y);
    var out = vec4<f32>(0.0);

    if (u.flags & 1u) != 0u {
        let l = label_at(p);
        if l != 0u {
            let edge = label_at(p + dx) != l || label_at(p - dx) != l || label_at(p + dy) != l || label_at(p - dy) != l;
            var c = textureLoad(palette, vec2<i32>(i32(l), 0), 0);
            var a = u.opacity;
            if edge {
                a = 1.0;
            }
            if l == u.selected {
                a = min(1.0, a + 0.2);
                if edge {
                    c = vec4<f32>(1.0, 1.0, 1.0, c.a);
                }
            }
            a = a * c.a;
            out = vec4<f32>(to_target(c.rgb) * a, a);
        }
    }

    if (u.flags & 2u) != 0u {
        let d = draft_at(p);
        if d != 0u {
            let edge = draft_at(p + dx) == 0u || draft_at(p - dx) == 0u || draft_at(p + dy) == 0u || draft_at(p - dy) == 0u;
            var a = min(1.0, u.opacity + 0.1);
            if edge {
                a = 1.0;
            }
            let c = to_target(u.draft_color.rgb) * a;
            out = vec4<f32>(c, a) + out * (1.0 - a);
        }
    }

    if out.a <= 0.0 {
        discard;
    }
    return out;
}
