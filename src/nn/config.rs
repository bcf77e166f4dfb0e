//! Adapter configuration. Every choice the design marks *(ours)* is a field here.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// LoRA with a searchable cell of spatial ops between A and B.
    NasLora,
    /// NAS-LoRA whose mixed op runs on ceil(r/K) channels only (PC-DARTS style).
    NasPcLora,
    /// Plain LoRA.
    Lora,
    /// Conv-LoRA: a mixture of convolutional experts in the bottleneck.
    ConvLora,
    /// No encoder adapter: only the mask decoder trains (a baseline for comparisons).
    DecoderOnly,
}

impl Method {
    pub fn name(&self) -> &'static str {
        match self {
            Method::NasLora => "nas-lora",
            Method::NasPcLora => "nas-pc-lora",
            Method::Lora => "lora",
            Method::ConvLora => "conv-lora",
            Method::DecoderOnly => "decoder-only",
        }
    }
    pub fn has_cell(&self) -> bool {
        matches!(self, Method::NasLora | Method::NasPcLora)
    }
}

/// Where adapters go in the image encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// The fused qkv projection of every attention block (Conv-LoRA convention).
    Qkv,
    /// Separate adapters on the q and v slices of qkv (SAMed convention).
    Qv,
    /// qkv, the attention output projection and both MLP linears.
    All,
}

/// Candidate operations of the NAS cell (stride 1, 'same' padding, r -> r channels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    Identity,
    Conv3x3,
    Conv5x5,
    DilConv3x3,
    AvgPool3x3,
    MaxPool3x3,
    /// Outputs zeros: in a residual cell it leaves plain LoRA (DARTS' `none`).
    Zero,
}

impl OpKind {
    /// The plain cell's default candidates: every known op but `zero`.
    pub const ALL: &[OpKind] = Self::KNOWN.split_at(6).0;
    /// The residual cell's default candidates: `zero` (plain LoRA) and the spatial ops.
    pub const RESIDUAL: [OpKind; 6] = [
        OpKind::Zero,
        OpKind::Conv3x3,
        OpKind::Conv5x5,
        OpKind::DilConv3x3,
        OpKind::AvgPool3x3,
        OpKind::MaxPool3x3,
    ];
    /// Every op a config may name (`zero` last, so that the plain defaults are a prefix).
    pub const KNOWN: [OpKind; 7] = [
        OpKind::Identity,
        OpKind::Conv3x3,
        OpKind::Conv5x5,
        OpKind::DilConv3x3,
        OpKind::AvgPool3x3,
        OpKind::MaxPool3x3,
        OpKind::Zero,
    ];
    /// The default candidates of a cell of this form.
    pub fn defaults(form: CellForm) -> Vec<OpKind> {
        match form {
            CellForm::Plain => OpKind::ALL.to_vec(),
            CellForm::Residual | CellForm::Gated => OpKind::RESIDUAL.to_vec(),
        }
    }
    /// Linear per token (no spatial mixing), so a cell discretised to it folds into W0.
    pub fn is_linear(&self) -> bool {
        matches!(self, OpKind::Identity | OpKind::Zero)
    }
    pub fn name(&self) -> &'static str {
        match self {
            OpKind::Identity => "identity",
            OpKind::Zero => "zero",
            OpKind::Conv3x3 => "conv3x3",
            OpKind::Conv5x5 => "conv5x5",
            OpKind::DilConv3x3 => "dil_conv3x3",
            OpKind::AvgPool3x3 => "avg_pool3x3",
            OpKind::MaxPool3x3 => "max_pool3x3",
        }
    }
    pub fn parse(s: &str) -> Result<OpKind, String> {
        OpKind::KNOWN
            .into_iter()
            .find(|o| o.name() == s.trim())
            .ok_or_else(|| {
                let names: Vec<&str> = OpKind::KNOWN.iter().map(|o| o.name()).collect();
                format!("unknown op '{s}' (known: {})", names.join(", "))
            })
    }
    /// Multiply-accumulates per output element of an r-channel map (for overhead reports).
    pub fn macs_per_elem(&self, r: usize) -> usize {
        match self {
            OpKind::Identity | OpKind::Zero => 0,
            OpKind::Conv3x3 | OpKind::DilConv3x3 => 9 * r,
            OpKind::Conv5x5 => 25 * r,
            OpKind::AvgPool3x3 | OpKind::MaxPool3x3 => 9,
        }
    }
}

/// The token grid the bottleneck ops of a qkv adapter see in windowed attention blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CellGrid {
    /// Each attention window separately, padded tokens included (the ops see window edges).
    Window,
    /// The whole unpadded token map: `A x` is per token, so it commutes with the window
    /// partition; the ops then see true neighbours and no padding, and the result is
    /// partitioned like the host's qkv.
    Full,
}

impl CellGrid {
    /// Cards written before the grid existed computed the cell per window.
    pub fn legacy() -> Self {
        CellGrid::Window
    }
}

/// How the NAS cell combines its ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CellForm {
    /// `Σ w_i op_i(z)`: identity is one candidate among the spatial ops (the paper's cell).
    Plain,
    /// `z + Σ w_i op_i(z)`: the LoRA path always passes, the ops add spatial context on top
    /// (`zero` among them leaves plain LoRA); a discretised cell keeps its op's weight
    /// `w_k`, so the switch drops only the other ops' shares.
    Residual,
    /// `z + g · Σ w_i op_i(z)` with a learned scalar gate `g` starting at 0: the adapter
    /// starts exactly as plain LoRA and the ops enter as far as the gate opens (it trains at
    /// α's learning rate in every stage); a cut cell keeps `g · w_k`.
    Gated,
}

impl CellForm {
    /// Cards written before the form existed had plain cells.
    pub fn legacy() -> Self {
        CellForm::Plain
    }
}

/// How conv ops of the cell start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OpInit {
    /// Kaiming-uniform (DARTS default).
    Random,
    /// Dirac (identity) kernel plus small noise, so every op starts close to identity.
    Dirac,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdapterConfig {
    pub method: Method,
    pub placement: Placement,
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f64,
    /// Candidate ops of the NAS cell, by name.
    pub ops: Vec<OpKind>,
    /// Partial-channel factor K of NAS-PC-LoRA.
    pub pc_k: usize,
    /// Softmax temperature of the architecture weights.
    pub alpha_temperature: f64,
    pub op_init: OpInit,
    /// Conv-LoRA experts.
    pub conv_lora_experts: usize,
    /// Adapt only these encoder stages (ViT blocks / TinyViT stages); empty = all.
    pub blocks: Vec<usize>,
    pub seed: u64,
    /// Grid of the qkv adapter's bottleneck in windowed blocks.
    #[serde(default = "CellGrid::legacy")]
    pub grid: CellGrid,
    #[serde(default = "CellForm::legacy")]
    pub cell: CellForm,
}

impl Default for AdapterConfig {
    fn default() -> Self {
        Self {
            method: Method::NasLora,
            placement: Placement::Qkv,
            rank: 4,
            alpha: Self::default_alpha(4),
            dropout: 0.0,
            ops: OpKind::ALL.to_vec(),
            pc_k: 2,
            alpha_temperature: 1.0,
            op_init: OpInit::Random,
            conv_lora_experts: 8,
            blocks: Vec::new(),
            seed: 0,
            grid: CellGrid::Full,
            cell: CellForm::Plain,
        }
    }
}

impl AdapterConfig {
    /// LoRA alpha when none is given: 4·rank, i.e. a fixed scale alpha / rank = 4.
    pub const ALPHA_PER_RANK: f64 = 4.0;

    pub fn default_alpha(rank: usize) -> f64 {
        Self::ALPHA_PER_RANK * rank as f64
    }

    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// Rejects settings that would panic or train nonsense further on (configs come from the
    /// CLI, `project.json` and adapter cards, all user-editable).
    pub fn validate(&self) -> anyhow::Result<()> {
        use anyhow::bail;
        if self.rank == 0 {
            bail!("adapter rank must be ≥ 1 (got 0)");
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            bail!(
                "adapter alpha must be a finite number > 0 (got {})",
                self.alpha
            );
        }
        if !(0.0..1.0).contains(&self.dropout) {
            bail!("adapter dropout must be in [0, 1) (got {})", self.dropout);
        }
        // Checked for every method: a project keeps its ops and temperature when the user
        // switches the method to a NAS one later.
        if self.ops.is_empty() {
            bail!("the NAS cell needs at least one candidate op (the op list is empty)");
        }
        for (i, o) in self.ops.iter().enumerate() {
            if self.ops[..i].contains(o) {
                bail!("candidate op '{}' is listed twice", o.name());
            }
        }
        if !(self.alpha_temperature.is_finite() && self.alpha_temperature > 0.0) {
            bail!(
                "architecture temperature must be a finite number > 0 (got {})",
                self.alpha_temperature
            );
        }
        if self.pc_k == 0 {
            bail!("partial-channel factor K (pc_k) must be ≥ 1 (got 0)");
        }
        if self.method == Method::ConvLora && self.conv_lora_experts == 0 {
            bail!("Conv-LoRA needs at least one expert (conv_lora_experts is 0)");
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(b) = self.blocks.iter().find(|&&b| !seen.insert(b)) {
            bail!("encoder block {b} is listed twice in the adapted blocks");
        }
        Ok(())
    }
}
