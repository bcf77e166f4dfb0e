//! The desktop app (eframe/egui).

use crate::device::DeviceChoice;

/// Opens the app window. (Being built out under issue 5.)
pub fn run(device: DeviceChoice) -> anyhow::Result<()> {
    let _ = device;
    anyhow::bail!("the desktop app is not available in this build yet; use the subcommands (segadapt --help)")
}
