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

/// CPU compute (flex) runs on rayon's global pool: one worker per core, each at a lower
/// scheduling priority than the UI thread. Leaving a core idle instead made every embedding and
/// training step single-threaded on a 2-core machine; with the workers niced, the scheduler
/// still hands the UI thread a core whenever it has a frame to draw.
pub fn compute_below_the_ui() {
    let _ = compute_pool().build_global();
}

/// The pool settings of [`compute_below_the_ui`], for the global pool or a local one.
pub fn compute_pool() -> rayon::ThreadPoolBuilder {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    rayon::ThreadPoolBuilder::new()
        .num_threads(cores)
        .start_handler(|_| super::thread::lower_thread_priority())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// The OS reports the compute threads' nice value, and there is one worker per core.
    #[test]
    fn compute_threads_run_below_the_calling_thread() {
        // SAFETY: getpriority reads this thread's nice value.
        let ui = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let pool = super::compute_pool().build().unwrap();
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(pool.current_num_threads(), cores);
        let worker = pool.install(|| unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) });
        assert_eq!(worker, ui.max(crate::service::thread::COMPUTE_NICENESS));
        let after = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        assert_eq!(after, ui, "the calling thread keeps its priority");
    }
}
