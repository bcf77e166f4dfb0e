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
