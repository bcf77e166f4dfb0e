//! A finished run as a report: its outcome, step times (overall and per stage), the
//! architecture weights, and the held-out test of the base and the adapted model with the
//! `eval` protocol's box and point prompts. `segadapt train --report` writes it as JSON
//! (tools/nas_compare_report.py reads it); the app could show it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::dataset::TrainData;
use super::events::{TrainEvent, TrainOutcome};
use super::schedule::Stage;
use crate::adapt::file::{AdapterCard, CellCard};
use crate::device::ComputeDevice;
use crate::eval::{EvalPrompt, EvalReport, evaluate};
use crate::fsutil::atomic_write;
use crate::predict::tiling::TileConfig;
use crate::sam::{CheckpointInfo, Sam};

/// Per-step wall time from the trainer's cumulative `elapsed_s`: the first step (cold kernels)
/// apart, then median and mean of the rest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepTiming {
    pub first_s: f64,
    pub median_s: f64,
    pub mean_s: f64,
}

/// Median step time of one stage (the median leaves out the steps that also validated).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageTime {
    pub median_s: f64,
    pub steps: usize,
}

/// What a run's events say beyond its outcome; fed every event with `record`.
#[derive(Clone, Debug, Default)]
pub struct RunLog {
    /// (step, seconds since the run started) of every step, and its stage.
    pub step_times: Vec<(usize, f64)>,
    pub stages: Vec<Stage>,
    pub cells: Vec<String>,
    pub ops: Vec<String>,
    /// softmax(α) per cell at the last step.
    pub last_alpha: Vec<Vec<f32>>,
    /// The op of each discrete cell at the last stage change (empty before consolidation).
    pub last_chosen: Vec<(String, String)>,
}

impl RunLog {
    pub fn record(&mut self, ev: &TrainEvent) {
        match ev {
            TrainEvent::Started {
                op_names,
                cell_names,
                ..
            } => {
                self.cells = cell_names.clone();
                self.ops = op_names.clone();
            }
            TrainEvent::Step {
                step,
                stage,
                elapsed_s,
                ..
            } => {
                self.step_times.push((*step, *elapsed_s));
                self.stages.push(*stage);
            }
            TrainEvent::Alpha { weights, .. } => self.last_alpha = weights.clone(),
            TrainEvent::StageChanged { chosen, .. } => self.last_chosen = chosen.clone(),
            _ => {}
        }
    }

    /// Each step's duration after the first, with its stage.
    fn durations(&self) -> impl Iterator<Item = (f64, Stage)> + '_ {
        let d = self.step_times.windows(2).map(|w| w[1].1 - w[0].1);
        d.zip(self.stages.iter().skip(1).copied())
    }

    pub fn step_timing(&self) -> Option<StepTiming> {
        let first = self.step_times.first()?;
        let mut d: Vec<f64> = self.durations().map(|(d, _)| d).collect();
        if d.is_empty() {
            return None;
        }
        let mean_s = d.iter().sum::<f64>() / d.len() as f64;
        d.sort_by(f64::total_cmp);
        Some(StepTiming {
            first_s: first.1,
            median_s: d[d.len() / 2],
            mean_s,
        })
    }

    /// Per stage that ran a step after the first, keyed by the stage's name.
    pub fn stage_times(&self) -> BTreeMap<String, StageTime> {
        let mut m = BTreeMap::new();
        for st in [Stage::Warmup, Stage::Search, Stage::Consolidate] {
            let mut d: Vec<f64> = self
                .durations()
                .filter(|(_, s)| *s == st)
                .map(|(d, _)| d)
                .collect();
            if d.is_empty() {
                continue;
            }
            d.sort_by(f64::total_cmp);
            let t = StageTime {
                median_s: d[d.len() / 2],
                steps: d.len(),
            };
            m.insert(st.name().to_string(), t);
        }
        m
    }
}

/// One model's protocol scores, one per prompt kind.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PromptScores {
    pub r#box: EvalReport,
    pub point: EvalReport,
}

/// The held-out test: the base model, and the adapted one when an adapter was kept.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HeldOutTest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<PromptScores>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapted: Option<PromptScores>,
}

impl HeldOutTest {
    /// (model, prompt, scores), base first.
    pub fn rows(&self) -> Vec<(&'static str, EvalPrompt, &EvalReport)> {
        let models = [("base", &self.base), ("adapted", &self.adapted)];
        let models = models
            .into_iter()
            .filter_map(|(n, s)| Some((n, s.as_ref()?)));
        models
            .flat_map(|(n, s)| {
                [
                    (n, EvalPrompt::Box, &s.r#box),
                    (n, EvalPrompt::Point, &s.point),
                ]
            })
            .collect()
    }
}

/// A held-out test set: (image, label mask) pairs, the smallest object scored, and how large
/// images are tiled.
pub struct TestSet<'a> {
    pub pairs: &'a [(PathBuf, PathBuf)],
    pub min_area: usize,
    pub tiles: TileConfig,
}

/// Evaluates `base`, and `base` with `adapter` when given, on `set` with the `eval`
/// protocol, box then point prompts. `progress(model, prompt, done, total)` is called after
/// each object.
pub fn test_held_out(
    base: &Sam,
    info: &CheckpointInfo,
    adapter: Option<&Path>,
    dev: &ComputeDevice,
    set: &TestSet,
    progress: &mut dyn FnMut(&str, EvalPrompt, usize, usize),
) -> Result<HeldOutTest> {
    let mut scores = |name: &str, file: Option<&Path>| -> Result<PromptScores> {
        // The base checkpoint is already in memory: adapt a copy instead of reloading it.
        let m = crate::engine::with_adapter(base.clone(), info.clone(), file, dev.clone())?;
        let mut eval = |prompt| {
            evaluate(
                &m.predictor,
                set.pairs,
                prompt,
                set.min_area,
                &set.tiles,
                |done, total| progress(name, prompt, done, total),
            )
        };
        Ok(PromptScores {
            r#box: eval(EvalPrompt::Box)?,
            point: eval(EvalPrompt::Point)?,
        })
    };
    Ok(HeldOutTest {
        base: Some(scores("base", None)?),
        adapted: adapter.map(|a| scores("adapted", Some(a))).transpose()?,
    })
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DataCounts {
    pub train_objects: usize,
    pub val_objects: usize,
}

/// The validation scores that chose (or refused) the adapter.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ValidationSummary {
    pub base_dice: f64,
    pub base_iou: f64,
    pub best_dice: f64,
    pub best_iou: f64,
    pub best_step: usize,
    pub improved: bool,
    #[serde(default)]
    pub gain_ci95: Option<(f64, f64)>,
}

/// What `segadapt train --report` writes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainReport {
    pub method: String,
    pub device: String,
    pub steps: usize,
    pub seconds: f64,
    pub step_time: Option<StepTiming>,
    pub data: DataCounts,
    pub validation: ValidationSummary,
    pub stopped_early: bool,
    pub chosen_ops: Vec<(String, String)>,
    #[serde(default)]
    pub stage_step_time: BTreeMap<String, StageTime>,
    /// The written adapter's cells (ops, α, state), from its card.
    #[serde(default)]
    pub file_cells: Option<Vec<CellCard>>,
    pub cells: Vec<String>,
    pub ops: Vec<String>,
    pub alpha: Vec<Vec<f32>>,
    #[serde(default)]
    pub test: HeldOutTest,
    pub message: String,
}

impl TrainReport {
    pub fn new(
        method: &str,
        device: &str,
        o: &TrainOutcome,
        data: &TrainData,
        log: &RunLog,
        file_card: Option<&AdapterCard>,
        test: HeldOutTest,
    ) -> Self {
        Self {
            method: method.to_string(),
            device: device.to_string(),
            steps: o.steps_done,
            seconds: o.seconds,
            step_time: log.step_timing(),
            data: DataCounts {
                train_objects: data.train.len(),
                val_objects: data.val.len(),
            },
            validation: ValidationSummary {
                base_dice: o.base_dice,
                base_iou: o.base_iou,
                best_dice: o.best_dice,
                best_iou: o.best_iou,
                best_step: o.best_step,
                improved: o.improved,
                gain_ci95: o.gain_ci95,
            },
            stopped_early: o.stopped_early,
            chosen_ops: o.chosen_ops.clone(),
            stage_step_time: log.stage_times(),
            file_cells: file_card.map(|c| c.cells.clone()),
            cells: log.cells.clone(),
            ops: log.ops.clone(),
            alpha: log.last_alpha.clone(),
            test,
            message: o.message.clone(),
        }
    }

    /// Pretty JSON with every object's keys sorted, replacing `path` whole.
    pub fn save(&self, path: &Path) -> Result<()> {
        // Through `Value`, whose maps sort their keys: the layout reports always had.
        let v = serde_json::to_value(self)?;
        atomic_write(path, serde_json::to_string_pretty(&v)?.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Step times by hand: steps end at 2.0, 2.5, 3.5 and 3.7 s, the first two in warm-up.
    #[test]
    fn step_and_stage_times_from_the_step_events() {
        let mut log = RunLog::default();
        for (step, t, stage) in [
            (1, 2.0, Stage::Warmup),
            (2, 2.5, Stage::Warmup),
            (3, 3.5, Stage::Search),
            (4, 3.7, Stage::Search),
        ] {
            log.record(&TrainEvent::Step {
                step,
                loss: 0.0,
                mask_loss: 0.0,
                iou_loss: 0.0,
                aux_loss: 0.0,
                lr: 0.0,
                stage,
                elapsed_s: t,
                eta_s: 0.0,
            });
        }
        let t = log.step_timing().unwrap();
        assert_eq!(t.first_s, 2.0);
        // Durations after the first step: 0.5, 1.0, 0.2.
        assert!((t.median_s - 0.5).abs() < 1e-12);
        assert!((t.mean_s - 1.7 / 3.0).abs() < 1e-12);
        let s = log.stage_times();
        assert_eq!(s.len(), 2);
        assert_eq!(s["warm-up"].steps, 1);
        assert!((s["warm-up"].median_s - 0.5).abs() < 1e-12);
        // Search: 1.0 and 0.2; the upper median of two.
        assert_eq!(s["search"].steps, 2);
        assert!((s["search"].median_s - 1.0).abs() < 1e-12);
        let one = RunLog {
            step_times: vec![(1, 4.0)],
            stages: vec![Stage::Warmup],
            ..Default::default()
        };
        assert!(one.step_timing().is_none());
    }

    /// Same keys, same arrays, same strings; numbers equal up to serde_json's best-effort float
    /// parsing (a last-digit difference between parsing into `Value` and into a typed field).
    fn same(a: &serde_json::Value, b: &serde_json::Value, at: &str) {
        use serde_json::Value::*;
        match (a, b) {
            (Object(x), Object(y)) => {
                let (kx, ky): (Vec<_>, Vec<_>) = (x.keys().collect(), y.keys().collect());
                assert_eq!(kx, ky, "keys of {at}");
                for (k, v) in x {
                    same(v, &y[k], &format!("{at}.{k}"));
                }
            }
            (Array(x), Array(y)) => {
                assert_eq!(x.len(), y.len(), "length of {at}");
                for (i, (u, v)) in x.iter().zip(y).enumerate() {
                    same(u, v, &format!("{at}[{i}]"));
                }
            }
            (Number(x), Number(y)) => {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                assert!(
                    (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
                    "{at}: {x} vs {y}"
                );
            }
            _ => assert_eq!(a, b, "{at}"),
        }
    }

    /// A report the CLI wrote before the report was a type (a NAS run that kept an adapter,
    /// with a held-out test of both models) reads into `TrainReport` and writes back the same
    /// JSON. The one key it adds is `validation.gain_ci95`, which that older file predates.
    #[test]
    fn a_written_report_round_trips_through_the_type() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/results/nas_compare/wave1_h100/N_nasfull_s0.json"
        );
        let old: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let r: TrainReport = serde_json::from_value(old.clone()).unwrap();
        assert!(r.test.base.is_some() && r.test.adapted.is_some());
        assert!(r.file_cells.as_ref().is_some_and(|c| !c.is_empty()));
        let mut back = serde_json::to_value(&r).unwrap();
        let added = back["validation"]
            .as_object_mut()
            .unwrap()
            .remove("gain_ci95");
        assert_eq!(added, Some(serde_json::Value::Null));
        same(&back, &old, "report");
    }
}
