//! The adapter layers that sit inside the model: LoRA next to a frozen linear, the NAS cell
//! between its down and up projections, Conv-LoRA's mixture of experts, and their
//! configuration. Below `sam/` (which holds them) and `adapt/` (which places, merges and
//! saves them), so neither imports the other's internals in a circle.

pub mod config;
pub mod conv_lora;
pub mod lora;
pub mod nas_cell;

pub use config::{AdapterConfig, CellForm, CellGrid, Method, OpInit, OpKind, Placement};
pub use lora::{AdaptTarget, Adapter, Branch};
pub use nas_cell::{CellState, NasCell};
