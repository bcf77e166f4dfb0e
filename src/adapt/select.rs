//! Perturbation-based op selection (DARTS-PT, Wang et al., ICLR 2021) at the search →
//! consolidate boundary. An op's strength is how much the supernet's loss rises when that op
//! is taken out of its cell, not the size of its α: single-level DARTS inflates the α of
//! parameter-free ops (here max-pool), while the perturbation score asks what the trained
//! supernet relies on. Ties go to `identity`, the one op that folds into the base weight and
//! so costs nothing at inference.

use anyhow::{Result, bail};
use burn::prelude::*;
use serde::Serialize;

use super::{Discretize, OpKind, for_each_branch, for_each_named_branch};
use crate::nn::nas_cell::CellState;
use crate::sam::Sam;

/// How each cell's op is picked at the start of consolidation.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum OpSelect {
    /// The op with the largest α.
    #[default]
    Alpha,
    /// The op whose removal raises the supernet's training loss most (DARTS-PT), ties to
    /// identity.
    Perturbation,
}

/// α given to a removed op: softmax(α/T) sends its weight to 0 and renormalises the others.
const REMOVED_ALPHA: f32 = -1.0e4;

/// `identity` wins when its removal raises the loss by at least the best op's rise minus this
/// share of the cell's spread (largest minus smallest removed-op loss). Relative to the cell,
/// not the total loss: one cell moves the whole model's loss only a little.
pub const IDENTITY_TOLERANCE: f64 = 0.1;

#[derive(Clone, Debug, Serialize)]
pub struct CellScores {
    pub name: String,
    pub ops: Vec<OpKind>,
    /// Supernet loss with op `i` removed from this cell (all other cells unchanged).
    pub removed_loss: Vec<f64>,
    /// The op [`choose`] picked.
    pub chosen: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct PerturbationScores {
    /// Loss of the untouched supernet.
    pub full_loss: f64,
    pub cells: Vec<CellScores>,
}

/// Scores every op of every mixed cell of `model`: the loss (`loss`, lower is better) of the
/// supernet with that op removed, one op of one cell at a time, then picks per cell with
/// [`choose`]. `model` is not changed. Cells must not be discrete yet.
pub fn perturbation_scores(
    model: &Sam,
    mut loss: impl FnMut(&Sam) -> Result<f64>,
) -> Result<PerturbationScores> {
    let mut cells: Vec<(String, Vec<OpKind>)> = Vec::new();
    let mut discrete = false;
    let mut probe = model.clone();
    for_each_named_branch(&mut probe, |name, b| {
        if let Some(c) = &b.cell {
            discrete |= matches!(c.state, CellState::Discrete(_));
            cells.push((name.to_string(), c.ops.clone()));
        }
    });
    if discrete {
        bail!("perturbation selection needs mixed cells; this model already has discrete cells");
    }
    let full_loss = loss(model)?;
    let mut out = Vec::with_capacity(cells.len());
    for (k, (name, ops)) in cells.into_iter().enumerate() {
        let mut removed_loss = Vec::with_capacity(ops.len());
        for i in 0..ops.len() {
            removed_loss.push(loss(&without_op(model, k, i))?);
        }
        let chosen = choose(&ops, &removed_loss);
        out.push(CellScores {
            name,
            ops,
            removed_loss,
            chosen,
        });
    }
    Ok(PerturbationScores {
        full_loss,
        cells: out,
    })
}

/// The op whose removal raises the loss most; the linear op (`identity`, or `zero` in a
/// residual cell: both fold into W0) instead when its removed loss is
/// within [`IDENTITY_TOLERANCE`] × the cell's spread of that maximum.
pub fn choose(ops: &[OpKind], removed_loss: &[f64]) -> usize {
    let (mut best, mut worst) = (0, 0);
    for (i, l) in removed_loss.iter().enumerate() {
        if *l > removed_loss[best] {
            best = i;
        }
        if *l < removed_loss[worst] {
            worst = i;
        }
    }
    let tolerance = IDENTITY_TOLERANCE * (removed_loss[best] - removed_loss[worst]);
    match ops.iter().position(|o| o.is_linear()) {
        Some(id) if removed_loss[id] >= removed_loss[best] - tolerance => id,
        _ => best,
    }
}

/// A copy of `model` with op `op` of the `cell`-th cell (in branch order) removed.
#[allow(clippy::single_range_in_vec_init)] // Burn's slice argument: one range per dimension.
fn without_op(model: &Sam, cell: usize, op: usize) -> Sam {
    let mut m = model.clone();
    let mut k = 0;
    for_each_branch(&mut m, |b| {
        let Some(c) = &mut b.cell else { return };
        if k == cell {
            c.alpha = c.alpha.clone().map(|a| {
                let device = a.device();
                a.slice_assign(
                    [op..op + 1],
                    Tensor::<1>::from_data(TensorData::new(vec![REMOVED_ALPHA], [1]), &device),
                )
            });
        }
        k += 1;
    });
    m
}

/// Discretises every cell to the op `choices` names for it (in branch order), scaling as
/// `mode` says (see [`super::discretise_cells`]).
pub fn discretise_cells_to(model: &mut Sam, choices: &[usize], mode: Discretize) -> Result<()> {
    let mut n = 0;
    for_each_branch(model, |b| n += usize::from(b.cell.is_some()));
    if n != choices.len() {
        bail!("{} op choices for {n} cells", choices.len());
    }
    let mut k = 0;
    super::discretise_cells_by(model, mode, |_| {
        k += 1;
        choices[k - 1]
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use OpKind::*;

    #[test]
    fn choose_takes_the_op_whose_removal_hurts_most() {
        // Removing conv3x3 raises the loss from 1.0 to 1.5; the rest barely matter.
        let ops = [Identity, Conv3x3, MaxPool3x3];
        assert_eq!(choose(&ops, &[1.01, 1.5, 1.02]), 1);
    }

    #[test]
    fn choose_breaks_near_ties_towards_identity() {
        let ops = [MaxPool3x3, Identity, Conv3x3];
        // Spread 2.2 - 2.0 = 0.2, tolerance 0.02: identity's 2.185 is within it of 2.2.
        assert_eq!(choose(&ops, &[2.2, 2.185, 2.0]), 1);
        // 2.17 is not.
        assert_eq!(choose(&ops, &[2.2, 2.17, 2.0]), 0);
        // Without identity among the ops the maximum stands.
        assert_eq!(choose(&[MaxPool3x3, Conv3x3], &[2.2, 2.195]), 0);
        // A cell where nothing matters (all equal) keeps identity.
        assert_eq!(choose(&ops, &[1.0, 1.0, 1.0]), 1);
    }
}
