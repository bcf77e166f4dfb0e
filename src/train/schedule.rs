//! The stage-wise NAS schedule and the learning-rate schedule.

use serde::{Deserialize, Serialize};

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
}
