//! The compute device of the desktop app, chosen once (by `main`) before the window opens.

use crate::device::{ComputeDevice, DeviceChoice};

/// The compute device and, when it is a wgpu device, its handles, so the window can render on
/// the same device instead of opening a second one.
pub struct AppDevice {
    pub compute: ComputeDevice,
    pub shared_wgpu: Option<eframe::egui_wgpu::WgpuSetupExisting>,
}

/// [`crate::device::select`]'s rules, keeping the wgpu handles: `Gpu` takes the default
/// adapter even when it is software; `Auto` computes on the CPU when there is no adapter or
/// only a software one (the window may still render on it).
pub fn select(choice: DeviceChoice) -> anyhow::Result<AppDevice> {
    if choice == DeviceChoice::Cpu {
        return Ok(AppDevice {
            compute: crate::device::cpu(),
            shared_wgpu: None,
        });
    }
    // Probing wgpu can abort inside some drivers; keep it contained.
    match std::panic::catch_unwind(crate::device::gpu) {
        Ok(Ok((dev, setup, software))) => {
            let shared_wgpu = Some(eframe::egui_wgpu::WgpuSetupExisting {
                instance: setup.instance.clone(),
                adapter: setup.adapter.clone(),
                device: setup.device.clone(),
                queue: setup.queue.clone(),
            });
            let compute = if software && choice == DeviceChoice::Auto {
                crate::device::cpu()
            } else {
                dev
            };
            Ok(AppDevice {
                compute,
                shared_wgpu,
            })
        }
        Ok(Err(e)) if choice == DeviceChoice::Gpu => anyhow::bail!("{e}"),
        Ok(Err(e)) => {
            tracing::info!("{e}; computing on the CPU");
            Ok(AppDevice {
                compute: crate::device::cpu(),
                shared_wgpu: None,
            })
        }
        Err(_) => Ok(AppDevice {
            compute: crate::device::cpu(),
            shared_wgpu: None,
        }),
    }
}

/// CPU compute (flex) runs on rayon's global pool: leave one core to the UI thread so frames
/// keep coming while an embedding or a training step runs.
pub fn leave_a_core_to_the_ui() {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(cores.saturating_sub(1).max(1))
        .build_global();
}
