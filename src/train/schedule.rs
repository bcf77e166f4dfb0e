//! The stage-wise NAS schedule and the learning-rate schedule.

use serde::{Deserialize, Serialize};

pub use crate::adapt::Discretize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Weights train, α frozen at its initial value.
    Warmup,
    /// α trains jointly with the weights (first-order).
    Search,
    /// α frozen, cells discretised to their argmax op, weights keep training.
    Consolidate,
}

impl Stage {
    pub fn name(&self) -> &'static str {
        match self {
            Stage::Warmup => "warm-up",
            Stage::Search => "search",
            Stage::Consolidate => "consolidate",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub steps: usize,
    /// Fraction of steps in warm-up.
    pub warmup_frac: f64,
    /// Fraction of steps in search.
    pub search_frac: f64,
    pub lr: f64,
    pub alpha_lr: f64,
    /// Linear learning-rate warm-up, as a fraction of the steps.
    pub lr_warmup_frac: f64,
    pub poly_power: f64,
    /// Softmax temperature of α at the end of search: T goes geometrically from the adapter's
    /// `alpha_temperature` to this over the search stage, so the mix approaches the one-hot
    /// state it is discretised to. `None`: T stays constant.
    #[serde(default)]
    pub alpha_temperature_end: Option<f64>,
    /// How cells leave the mixed state at the start of consolidation.
    #[serde(default = "default_discretize")]
    pub discretize: Discretize,
    /// How each cell's op is picked at the start of consolidation.
    #[serde(default)]
    pub select: crate::adapt::select::OpSelect,
    /// Learning rate of the cells' conv kernels (`None`: the weight learning rate).
    #[serde(default)]
    pub op_lr: Option<f64>,
    /// Adam β1 of the α group (DARTS uses 0.5).
    #[serde(default = "default_alpha_beta1")]
    pub alpha_beta1: f64,
    /// First-order bi-level search: during search, α is stepped on batches from one half of
    /// the training objects and the weights on the other half (never on the validation split).
    #[serde(default)]
    pub bilevel: bool,
}

fn default_discretize() -> Discretize {
    Discretize::Argmax
}

fn default_alpha_beta1() -> f64 {
    0.9
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            steps: 300,
            warmup_frac: 0.25,
            search_frac: 0.5,
            lr: 1e-4,
            alpha_lr: 3e-3,
            lr_warmup_frac: 0.05,
            poly_power: 0.9,
            alpha_temperature_end: None,
            discretize: default_discretize(),
            select: Default::default(),
            op_lr: None,
            alpha_beta1: default_alpha_beta1(),
            bilevel: false,
        }
    }
}

impl Schedule {
    /// First step of search and of consolidation.
    pub fn boundaries(&self) -> (usize, usize) {
        let s1 = (self.steps as f64 * self.warmup_frac).round() as usize;
        let s2 = (self.steps as f64 * (self.warmup_frac + self.search_frac)).round() as usize;
        (s1.min(self.steps), s2.min(self.steps))
    }

    /// Stage of a method with a NAS cell at `step` (0-based).
    pub fn stage(&self, step: usize) -> Stage {
        let (s1, s2) = self.boundaries();
        if step < s1 {
            Stage::Warmup
        } else if step < s2 {
            Stage::Search
        } else {
            Stage::Consolidate
        }
    }

    /// Softmax temperature of α at `step`: `t0` until search starts, then geometric towards
    /// `alpha_temperature_end` over the search stage, held at the end value afterwards.
    pub fn temperature_at(&self, t0: f64, step: usize) -> f64 {
        let Some(t1) = self.alpha_temperature_end else {
            return t0;
        };
        let (s1, s2) = self.boundaries();
        if step < s1 || s2 <= s1 {
            return if step < s1 { t0 } else { t1 };
        }
        let f = ((step - s1) as f64 / (s2 - s1) as f64).min(1.0);
        t0 * (t1 / t0).powf(f)
    }

    /// Weight learning rate: linear warm-up, then polynomial decay to 0.
    pub fn lr_at(&self, step: usize) -> f64 {
        let warm = (self.steps as f64 * self.lr_warmup_frac).round() as usize;
        if step < warm {
            return self.lr * (step + 1) as f64 / warm as f64;
        }
        let t = (step - warm) as f64 / (self.steps - warm).max(1) as f64;
        self.lr * (1.0 - t).max(0.0).powf(self.poly_power)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_and_lr() {
        let s = Schedule {
            steps: 100,
            ..Default::default()
        };
        assert_eq!(s.boundaries(), (25, 75));
        assert_eq!(s.stage(24), Stage::Warmup);
        assert_eq!(s.stage(25), Stage::Search);
        assert_eq!(s.stage(75), Stage::Consolidate);
        assert!((s.lr_at(0) - 1e-4 / 5.0).abs() < 1e-12);
        assert!((s.lr_at(5) - 1e-4).abs() < 1e-12);
        assert!(s.lr_at(99) < s.lr_at(50));
    }

    #[test]
    fn temperature_anneals_geometrically_over_search() {
        let s = Schedule {
            steps: 100,
            alpha_temperature_end: Some(0.1),
            ..Default::default()
        };
        // Search is steps 25..75: T = 1 before, 1 · 0.1^(25/50) = 0.3162 half-way, 0.1 after.
        assert_eq!(s.temperature_at(1.0, 0), 1.0);
        assert_eq!(s.temperature_at(1.0, 25), 1.0);
        assert!((s.temperature_at(1.0, 50) - 0.1f64.sqrt()).abs() < 1e-12);
        assert!((s.temperature_at(1.0, 75) - 0.1).abs() < 1e-12);
        assert!((s.temperature_at(1.0, 99) - 0.1).abs() < 1e-12);
        let flat = Schedule {
            alpha_temperature_end: None,
            ..Default::default()
        };
        assert_eq!(flat.temperature_at(2.0, 200), 2.0);
    }
}
