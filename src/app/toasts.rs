//! Short messages in the corner: information and errors.

use std::time::Instant;

use super::SegApp;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToastKind {
    Info,
    Error,
}

pub struct Toast {
    pub kind: ToastKind,
    pub text: String,
    pub at: Instant,
}

impl SegApp {
    pub fn toast(&mut self, kind: ToastKind, text: impl Into<String>) {
        let text = text.into();
        if kind == ToastKind::Error {
            tracing::warn!("{text}");
        }
        self.toasts.push(Toast {
            kind,
            text,
            at: Instant::now(),
        });
        if self.toasts.len() > 6 {
            self.toasts.remove(0);
        }
    }

    pub fn error(&mut self, text: impl Into<String>) {
        self.toast(ToastKind::Error, text);
    }
}
