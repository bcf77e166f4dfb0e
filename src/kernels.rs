//! cubecl's runtime settings for the GPU backend, applied once before the first device starts:
//! where autotune results persist between launches (with the `kernel-cache` feature), and, for
//! `segadapt bench --cold`, a log line per compiled kernel and per autotune decision.
//!
//! A GPU cold start is mostly autotuning: every candidate kernel of every tuned key is compiled
//! by the driver and timed, serially. With a persistent cache the winners are written to an
//! embedded database under the per-user cache folder, and a later launch runs none of them.
//!
//! Environment (read by [`configure_from_env`]):
//! - `SEGADAPT_KERNEL_CACHE`: the cache folder (default `<cache>/segadapt/kernels`, beside the
//!   models), or `off` to keep autotune results in memory only.
//! - `SEGADAPT_KERNEL_LOGS`: a folder; `compile.log` and `autotune.jsonl` are written there.
//!
//! A `cubecl.toml` in the working directory is read first, as cubecl itself would; only the
//! cache location (when it is left at cubecl's default, a `target/` folder that means nothing for
//! an installed app) and the two logs (when asked for) are set on top of it.

use std::path::{Path, PathBuf};

use cubecl_runtime::config::cache::CacheConfig;
use cubecl_runtime::config::compilation::CompilationLogLevel;
use cubecl_runtime::config::{CubeClRuntimeConfig, RuntimeConfig};

pub const CACHE_ENV: &str = "SEGADAPT_KERNEL_CACHE";
pub const LOGS_ENV: &str = "SEGADAPT_KERNEL_LOGS";
pub const COMPILE_LOG: &str = "compile.log";
pub const AUTOTUNE_LOG: &str = "autotune.jsonl";

/// Where autotune results persist: `$SEGADAPT_KERNEL_CACHE`, else `kernels` beside the model
/// folder. `None` when the user turned the cache off.
pub fn cache_dir(get: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    match get(CACHE_ENV).filter(|v| !v.is_empty()) {
        Some(v) if v.eq_ignore_ascii_case("off") => None,
        Some(v) => Some(PathBuf::from(v)),
        None => Some(crate::models::cache_root().join("kernels")),
    }
}

/// Whether this build keeps autotune results on disk.
pub const fn persistent() -> bool {
    cfg!(feature = "kernel-cache")
}

/// The settings for this process: `base` (cubecl.toml or defaults) with the cache location and
/// logs applied.
pub fn settings(
    mut base: CubeClRuntimeConfig,
    cache: Option<&Path>,
    logs: Option<&Path>,
) -> CubeClRuntimeConfig {
    match cache {
        Some(dir) if matches!(base.environment.path, CacheConfig::Target) => {
            base.environment.path = CacheConfig::Directory(dir.to_path_buf());
        }
        Some(_) => {}
        None => base.autotune.disable_cache = true,
    }
    if let Some(dir) = logs {
        base.compilation.logger.level = CompilationLogLevel::Basic;
        base.compilation.logger.file = Some(dir.join(COMPILE_LOG));
        base.autotune.decisions.file = Some(dir.join(AUTOTUNE_LOG));
        // Appending: cubecl opens a file per server, and truncating handles would overwrite
        // each other's lines. The caller starts from an empty folder.
        base.compilation.logger.append = true;
        base.autotune.decisions.append = true;
    }
    base
}

/// Applies [`settings`] from the environment. Call before the first GPU device starts; returns
/// false when cubecl had already read its settings (then nothing changes).
pub fn configure_from_env() -> bool {
    let get = |k: &str| std::env::var(k).ok();
    let cache = cache_dir(get);
    if let Some(dir) = &cache
        && persistent()
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        tracing::warn!(
            "kernel cache {}: {e}; autotuning from scratch",
            dir.display()
        );
    }
    let logs = get(LOGS_ENV).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = &logs {
        let _ = std::fs::create_dir_all(dir);
    }
    let base = CubeClRuntimeConfig::from_current_dir();
    CubeClRuntimeConfig::try_set(settings(base, cache.as_deref(), logs.as_deref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_dir_defaults_beside_the_models_and_can_be_turned_off() {
        let off = cache_dir(|k| (k == CACHE_ENV).then(|| "OFF".into()));
        assert_eq!(off, None);
        let set = cache_dir(|k| (k == CACHE_ENV).then(|| "/x/k".into()));
        assert_eq!(set, Some(PathBuf::from("/x/k")));
        let default = cache_dir(|_| None).unwrap();
        assert_eq!(default.file_name().unwrap(), "kernels");
        assert_eq!(
            default.parent(),
            crate::models::models_dir().parent(),
            "kernels sit beside models"
        );
    }

    #[test]
    fn settings_keep_a_users_cache_location_and_add_logs_on_request() {
        let dir = Path::new("/c");
        let s = settings(CubeClRuntimeConfig::default(), Some(dir), None);
        assert!(matches!(&s.environment.path, CacheConfig::Directory(p) if p == dir));
        assert!(s.compilation.logger.file.is_none());
        assert!(!s.autotune.disable_cache);

        let mut user = CubeClRuntimeConfig::default();
        user.environment.path = CacheConfig::Global;
        let s = settings(user, Some(dir), Some(Path::new("/l")));
        assert!(matches!(s.environment.path, CacheConfig::Global));
        assert_eq!(
            s.compilation.logger.file,
            Some(PathBuf::from("/l/compile.log"))
        );
        assert_eq!(
            s.autotune.decisions.file,
            Some(PathBuf::from("/l/autotune.jsonl"))
        );
        assert!(matches!(
            s.compilation.logger.level,
            CompilationLogLevel::Basic
        ));

        let s = settings(CubeClRuntimeConfig::default(), None, None);
        assert!(s.autotune.disable_cache);
    }
}
