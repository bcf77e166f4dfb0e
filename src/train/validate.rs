//! Checks of a [`TrainConfig`] before a run starts: the values come from the CLI and from
//! `project.json` (hand-editable), and a bad one would otherwise surface as a panic deep in
//! training (an empty op list, rank 0) or as a silently meaningless run (NaN learning rate).

use anyhow::{Result, bail};

use super::TrainConfig;

fn finite_positive(name: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v > 0.0) {
        bail!("{name} must be a finite number > 0 (got {v})");
    }
    Ok(())
}

fn finite_non_negative(name: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v >= 0.0) {
        bail!("{name} must be a finite number ≥ 0 (got {v})");
    }
    Ok(())
}

fn fraction(name: &str, v: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&v) {
        bail!("{name} must be in [0, 1] (got {v})");
    }
    Ok(())
}

impl TrainConfig {
    /// Every setting in range, with a message naming the bad one.
    pub fn validate(&self) -> Result<()> {
        self.adapter.validate()?;
        let s = &self.schedule;
        if s.steps == 0 {
            bail!("steps must be ≥ 1 (got 0)");
        }
        fraction("warm-up fraction", s.warmup_frac)?;
        fraction("search fraction", s.search_frac)?;
        if s.warmup_frac + s.search_frac > 1.0 {
            bail!(
                "warm-up and search fractions must sum to ≤ 1 (got {} + {})",
                s.warmup_frac,
                s.search_frac
            );
        }
        fraction("learning-rate warm-up fraction", s.lr_warmup_frac)?;
        finite_positive("learning rate", s.lr)?;
        finite_positive("architecture learning rate", s.alpha_lr)?;
        finite_non_negative("polynomial decay power", s.poly_power)?;
        if let Some(t) = s.alpha_temperature_end {
            finite_positive("final temperature", t)?;
        }
        if let Some(v) = s.op_lr {
            finite_positive("op learning rate", v)?;
        }
        if !(0.0..1.0).contains(&s.alpha_beta1) {
            bail!("α Adam β1 must be in [0, 1) (got {})", s.alpha_beta1);
        }
        if self.adapter.cell != crate::adapt::CellForm::Plain
            && s.discretize == crate::adapt::Discretize::KeepWeight
        {
            bail!(
                "keep-weight discretisation is for the plain cell: a residual or gated cell \
                 keeps its op's weight by itself (use --discretize argmax)"
            );
        }
        if self.adapter.method == crate::adapt::Method::DecoderOnly && !self.train_decoder {
            bail!("decoder-only training with a frozen decoder has nothing to train");
        }
        if self.objects_per_step == 0 {
            bail!("objects per step must be ≥ 1 (got 0)");
        }
        if self.grad_accum == 0 {
            bail!("gradient accumulation must be ≥ 1 (got 0)");
        }
        if !(self.val_split > 0.0 && self.val_split < 1.0) {
            bail!(
                "validation split must be in (0, 1) (got {})",
                self.val_split
            );
        }
        finite_non_negative("IoU loss weight", self.iou_loss_weight)?;
        finite_non_negative("intensity jitter", self.intensity_jitter as f64)?;
        finite_non_negative("weight decay", self.weight_decay)?;
        let m = &self.prompt_mix;
        for (name, w) in [
            ("box", m.r#box),
            ("points", m.points),
            ("box+points", m.box_points),
            ("none", m.none),
        ] {
            finite_non_negative(&format!("prompt mix weight '{name}'"), w)?;
        }
        if m.r#box + m.points + m.box_points + m.none <= 0.0 {
            bail!("prompt mix: at least one weight must be > 0");
        }
        finite_non_negative("box jitter", m.box_jitter)?;
        if m.max_points == 0 {
            bail!("prompt mix: max points must be ≥ 1 (got 0)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_each_bad_value_is_named() {
        TrainConfig::default().validate().unwrap();
        type Edit = fn(&mut TrainConfig);
        let cases: [(&str, Edit); 20] = [
            ("final temperature", |c| {
                c.schedule.alpha_temperature_end = Some(0.0)
            }),
            ("op learning rate", |c| c.schedule.op_lr = Some(f64::NAN)),
            ("β1", |c| c.schedule.alpha_beta1 = 1.0),
            ("nothing to train", |c| {
                c.adapter.method = crate::adapt::Method::DecoderOnly;
                c.train_decoder = false
            }),
            ("rank", |c| c.adapter.rank = 0),
            ("alpha", |c| c.adapter.alpha = f64::NAN),
            ("dropout", |c| c.adapter.dropout = 1.0),
            ("op list is empty", |c| c.adapter.ops.clear()),
            ("listed twice", |c| {
                let o = c.adapter.ops[0];
                c.adapter.ops.push(o)
            }),
            ("temperature", |c| c.adapter.alpha_temperature = 0.0),
            ("pc_k", |c| c.adapter.pc_k = 0),
            ("steps", |c| c.schedule.steps = 0),
            ("sum to ≤ 1", |c| c.schedule.search_frac = 0.9),
            ("learning rate", |c| c.schedule.lr = -1.0),
            ("architecture learning rate", |c| {
                c.schedule.alpha_lr = f64::INFINITY
            }),
            ("objects per step", |c| c.objects_per_step = 0),
            ("gradient accumulation", |c| c.grad_accum = 0),
            ("validation split", |c| c.val_split = 1.0),
            ("intensity jitter", |c| c.intensity_jitter = f32::NAN),
            ("at least one weight", |c| {
                c.prompt_mix.r#box = 0.0;
                c.prompt_mix.points = 0.0;
                c.prompt_mix.box_points = 0.0
            }),
        ];
        for (want, edit) in cases {
            let mut c = TrainConfig::default();
            edit(&mut c);
            let err = c.validate().expect_err(want).to_string();
            assert!(err.contains(want), "expected '{want}' in: {err}");
        }
    }
}
