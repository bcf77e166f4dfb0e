//! Compute device selection: Burn's wgpu backend on a real GPU adapter, else the `flex` CPU
//! backend. Software Vulkan (lavapipe/llvmpipe) counts as "no GPU": it is far slower than flex
//! and caps storage buffers at 128 MiB.

use burn::prelude::*;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
pub enum DeviceChoice {
    /// A GPU adapter when one exists, else the CPU.
    Auto,
    /// The `flex` CPU backend.
    Cpu,
    /// Burn's wgpu backend on the default adapter, even a software one.
    Gpu,
}

/// A selected device with a description for logs and the UI.
#[derive(Clone, Debug)]
pub struct ComputeDevice {
    pub device: Device,
    pub description: String,
    pub is_gpu: bool,
}

/// NVIDIA's driver keeps compiled shaders on disk, which roughly halves a later launch's GPU
/// cold start (MobileSAM encoder: 55 s → 23 s on an H200), but its default cache is small and
/// trimmed. These are the variables to set so every kernel stays cached, leaving any the user
/// set alone (`get` reads the environment).
pub fn shader_cache_env(get: impl Fn(&str) -> Option<String>) -> Vec<(&'static str, String)> {
    [
        ("__GL_SHADER_DISK_CACHE_SIZE", "10737418240"),
        ("__GL_SHADER_DISK_CACHE_SKIP_CLEANUP", "1"),
    ]
    .into_iter()
    .filter(|(k, _)| get(k).is_none())
    .map(|(k, v)| (k, v.to_string()))
    .collect()
}

/// Applies [`shader_cache_env`] to this process. Call at start, before any other thread runs.
pub fn keep_shader_cache() {
    for (k, v) in shader_cache_env(|k| std::env::var(k).ok()) {
        // SAFETY: called first thing in main, while the process is single-threaded.
        unsafe { std::env::set_var(k, v) };
    }
}

/// Keeps freed heap memory in the process instead of handing it back to the OS after every op.
///
/// The CPU backend allocates a fresh buffer for nearly every op output (tens of MB for the
/// MobileSAM encoder's 256×256×256 activations); with glibc's defaults each one is trimmed or
/// unmapped on free and page-faulted and zeroed again on the next allocation, about a quarter
/// of the encoder's time on the reference machine (perf: clear_page, page faults). A 2 GiB trim
/// threshold and 1 GiB top pad let the heap be reused (encoder 6.1 → 4.6 s, back to back). Setting
/// them also freezes glibc's mmap threshold at 128 KiB, so every larger buffer would still be
/// mapped fresh and unmapped on free: mmap is off for the heap, and big buffers are reused like
/// the rest (training step 6.2–7.7 → 4.6–5.1 s on the reference machine). The cost is that RSS
/// stays at its peak. Call once at start, before other threads allocate.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any other thread runs.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 1 << 30);
        libc::mallopt(libc::M_MMAP_MAX, 0);
    }
}

pub fn cpu() -> ComputeDevice {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    ComputeDevice {
        device: Device::flex(),
        description: format!("CPU (flex, {threads} threads)"),
        is_gpu: false,
    }
}

/// Creates the wgpu device, reporting the adapter it landed on.
pub fn gpu() -> Result<(ComputeDevice, burn::tensor::wgpu::WgpuSetup, bool), String> {
    let (device, setup) = Device::wgpu_options()
        .init_with_setup()
        .map_err(|e| format!("no usable GPU adapter: {e}"))?;
    let info = setup.adapter.get_info();
    let software = info.device_type == wgpu::DeviceType::Cpu;
    let description = format!("GPU ({}, {:?})", info.name, info.backend);
    Ok((
        ComputeDevice {
            device,
            description,
            is_gpu: true,
        },
        setup,
        software,
    ))
}

pub fn select(choice: DeviceChoice) -> Result<ComputeDevice, String> {
    match choice {
        DeviceChoice::Cpu => Ok(cpu()),
        DeviceChoice::Gpu => gpu().map(|(d, _, _)| d),
        DeviceChoice::Auto => {
            // Probing wgpu can abort inside some drivers; keep it contained.
            match std::panic::catch_unwind(gpu) {
                Ok(Ok((d, _, false))) => Ok(d),
                _ => Ok(cpu()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn shader_cache_env_fills_only_what_the_user_left_unset() {
        let set = super::shader_cache_env(|_| None);
        assert_eq!(
            set,
            vec![
                ("__GL_SHADER_DISK_CACHE_SIZE", "10737418240".to_string()),
                ("__GL_SHADER_DISK_CACHE_SKIP_CLEANUP", "1".to_string())
            ]
        );
        let user =
            super::shader_cache_env(|k| (k == "__GL_SHADER_DISK_CACHE_SIZE").then(|| "1".into()));
        assert_eq!(
            user,
            vec![("__GL_SHADER_DISK_CACHE_SKIP_CLEANUP", "1".to_string())]
        );
    }
}
