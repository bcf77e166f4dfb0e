//! One table of the app's actions: the keys that trigger them, the help window's rows and the
//! menu entries' labels and shortcut texts all come from [`HELP`] and [`Action`].

use egui::{Key, KeyboardShortcut, Modifiers};

use super::state::Tool;
use super::{SegApp, ToastKind};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Accept,
    /// Closes the help window when it is open; else stops "propose all objects" when it runs;
    /// else clears the prompts and the selection.
    ClearPrompts,
    CycleCandidate,
    Candidate(usize),
    Undo,
    Redo,
    DeleteSelected,
    Tool(Tool),
    BrushSmaller,
    BrushLarger,
    Fit,
    ZoomIn,
    ZoomOut,
    NextImage,
    PreviousImage,
    ToggleObjects,
    ToggleAb,
    SegmentUnprompted,
    ProposeAll,
    AcceptProposal,
    RejectProposal,
    AcceptAllProposals,
    RejectAllProposals,
    NextProposal,
    PreviousProposal,
    Save,
    ToggleHelp,
    ToggleDebug,
}

impl Action {
    /// The menu entry's text.
    pub fn label(self) -> &'static str {
        match self {
            Action::Accept => "Accept object",
            Action::ClearPrompts => "Clear prompts",
            Action::CycleCandidate => "Next candidate mask",
            Action::Candidate(_) => "Candidate mask",
            Action::Undo => "Undo",
            Action::Redo => "Redo",
            Action::DeleteSelected => "Delete object",
            Action::Tool(t) => t.name(),
            Action::BrushSmaller => "Smaller brush",
            Action::BrushLarger => "Larger brush",
            Action::Fit => "Fit image",
            Action::ZoomIn => "Zoom in",
            Action::ZoomOut => "Zoom out",
            Action::NextImage => "Next image",
            Action::PreviousImage => "Previous image",
            Action::ToggleObjects => "Show objects",
            Action::ToggleAb => "A/B compare",
            Action::SegmentUnprompted => "Segment without prompts",
            Action::ProposeAll => "Propose all objects",
            Action::AcceptProposal => "Accept proposal",
            Action::RejectProposal => "Reject proposal",
            Action::AcceptAllProposals => "Accept all proposals",
            Action::RejectAllProposals => "Reject all proposals",
            Action::NextProposal => "Next proposal",
            Action::PreviousProposal => "Previous proposal",
            Action::Save => "Save",
            Action::ToggleHelp => "Keyboard shortcuts",
            Action::ToggleDebug => "Frame-time overlay",
        }
    }

    /// The first key bound to the action, as the menus show it ("Ctrl+Z", "Esc").
    pub fn shortcut_text(self) -> Option<String> {
        HELP.iter()
            .flat_map(|r| r.bindings)
            .find(|(_, a)| *a == self)
            .map(|(c, _)| c.text())
    }

    /// "Label (key)", for checkboxes.
    pub fn label_with_key(self) -> String {
        match self.shortcut_text() {
            Some(k) => format!("{} ({k})", self.label()),
            None => self.label().to_string(),
        }
    }
}

/// A key with or without Ctrl (⌘ on macOS) and Shift.
#[derive(Clone, Copy, Debug)]
pub struct Chord {
    pub key: Key,
    pub command: bool,
    pub shift: bool,
}

const fn key(key: Key) -> Chord {
    Chord {
        key,
        command: false,
        shift: false,
    }
}
const fn shift(key: Key) -> Chord {
    Chord {
        key,
        command: false,
        shift: true,
    }
}
const fn cmd(key: Key) -> Chord {
    Chord {
        key,
        command: true,
        shift: false,
    }
}
const fn cmd_shift(key: Key) -> Chord {
    Chord {
        key,
        command: true,
        shift: true,
    }
}

impl Chord {
    pub fn text(&self) -> String {
        let name = match self.key {
            Key::Escape => "Esc",
            Key::Delete => "Del",
            k => k.name(),
        };
        let cmd = if self.command { "Ctrl+" } else { "" };
        let shift = if self.shift { "Shift+" } else { "" };
        format!("{cmd}{shift}{name}")
    }

    fn modifiers(&self) -> Modifiers {
        let mut m = Modifiers::NONE;
        if self.command {
            m |= Modifiers::COMMAND;
        }
        if self.shift {
            m |= Modifiers::SHIFT;
        }
        m
    }
}

/// One row of the help window: how it is written there, and the keys it binds.
pub struct HelpRow {
    pub keys: &'static str,
    pub what: &'static str,
    pub bindings: &'static [(Chord, Action)],
}

const fn row(
    keys: &'static str,
    what: &'static str,
    bindings: &'static [(Chord, Action)],
) -> HelpRow {
    HelpRow {
        keys,
        what,
        bindings,
    }
}

/// Every shortcut of the app, in the order the help window lists them. Mouse gestures are
/// handled by the canvas and only listed here.
pub const HELP: &[HelpRow] = &[
    row("Left click", "positive point (SAM prompt tool)", &[]),
    row("Right click / Shift+click", "negative point", &[]),
    row("Left drag", "box prompt", &[]),
    row(
        "Enter or A",
        "accept the mask as a new object",
        &[
            (key(Key::Enter), Action::Accept),
            (key(Key::A), Action::Accept),
        ],
    ),
    row(
        "Esc",
        "clear the prompts",
        &[(key(Key::Escape), Action::ClearPrompts)],
    ),
    row(
        "M, 1 / 2 / 3",
        "cycle / pick SAM's candidate masks",
        &[
            (key(Key::M), Action::CycleCandidate),
            (key(Key::Num1), Action::Candidate(0)),
            (key(Key::Num2), Action::Candidate(1)),
            (key(Key::Num3), Action::Candidate(2)),
        ],
    ),
    row(
        "Ctrl+Z / Ctrl+Shift+Z, Ctrl+Y",
        "undo / redo",
        &[
            (cmd(Key::Z), Action::Undo),
            (cmd_shift(Key::Z), Action::Redo),
            (cmd(Key::Y), Action::Redo),
        ],
    ),
    row(
        "Del / Backspace",
        "delete the selected object",
        &[
            (key(Key::Delete), Action::DeleteSelected),
            (key(Key::Backspace), Action::DeleteSelected),
        ],
    ),
    row("Ctrl+click", "select the object under the cursor", &[]),
    row(
        "P / B / E / H",
        "tools: prompts, brush, eraser, pan",
        &[
            (key(Key::P), Action::Tool(Tool::Prompt)),
            (key(Key::B), Action::Tool(Tool::Brush)),
            (key(Key::E), Action::Tool(Tool::Eraser)),
            (key(Key::H), Action::Tool(Tool::Pan)),
        ],
    ),
    row(
        "[ / ]",
        "brush size",
        &[
            (key(Key::OpenBracket), Action::BrushSmaller),
            (key(Key::CloseBracket), Action::BrushLarger),
        ],
    ),
    row("Space+drag, middle drag", "pan", &[]),
    row(
        "Wheel, + / -",
        "zoom",
        &[
            (key(Key::Plus), Action::ZoomIn),
            (key(Key::Equals), Action::ZoomIn),
            (key(Key::Minus), Action::ZoomOut),
        ],
    ),
    row("F", "fit the image", &[(key(Key::F), Action::Fit)]),
    row(
        "N / Shift+N, PgDn / PgUp",
        "next / previous image",
        &[
            (key(Key::N), Action::NextImage),
            (shift(Key::N), Action::PreviousImage),
            (key(Key::PageDown), Action::NextImage),
            (key(Key::PageUp), Action::PreviousImage),
        ],
    ),
    row(
        "O",
        "show / hide objects",
        &[(key(Key::O), Action::ToggleObjects)],
    ),
    row(
        "C",
        "A/B compare base and adapted model",
        &[(key(Key::C), Action::ToggleAb)],
    ),
    row(
        "U",
        "segment without prompts",
        &[(key(Key::U), Action::SegmentUnprompted)],
    ),
    row(
        "Shift+P",
        "propose all objects (SAM's automatic mask generator)",
        &[(shift(Key::P), Action::ProposeAll)],
    ),
    row(
        "Click / right click on a proposal",
        "accept / reject that proposal",
        &[],
    ),
    row(
        "Y / X",
        "accept / reject the highlighted proposal",
        &[
            (key(Key::Y), Action::AcceptProposal),
            (key(Key::X), Action::RejectProposal),
        ],
    ),
    row(
        "Shift+Y / Shift+X",
        "accept / reject all proposals",
        &[
            (shift(Key::Y), Action::AcceptAllProposals),
            (shift(Key::X), Action::RejectAllProposals),
        ],
    ),
    row(
        "J / K",
        "next / previous proposal",
        &[
            (key(Key::J), Action::NextProposal),
            (key(Key::K), Action::PreviousProposal),
        ],
    ),
    row("Ctrl+S", "save now", &[(cmd(Key::S), Action::Save)]),
    row(
        "F1 or ?",
        "this help",
        &[
            (key(Key::F1), Action::ToggleHelp),
            (key(Key::Questionmark), Action::ToggleHelp),
        ],
    ),
    row(
        "F12",
        "frame-time overlay",
        &[(key(Key::F12), Action::ToggleDebug)],
    ),
];

fn bindings() -> impl Iterator<Item = &'static (Chord, Action)> {
    HELP.iter().flat_map(|r| r.bindings)
}

/// The action bound to a key pressed without Ctrl. Shift only matters for the keys that have
/// a Shift binding of their own (Shift+N).
fn plain_action(k: Key, shift: bool) -> Option<Action> {
    let plain: Vec<&(Chord, Action)> = bindings()
        .filter(|(c, _)| !c.command && c.key == k)
        .collect();
    let exact = plain.iter().find(|(c, _)| c.shift == shift);
    exact
        .or_else(|| plain.iter().find(|(c, _)| !c.shift))
        .map(|(_, a)| *a)
}

impl SegApp {
    /// Runs the actions of this frame's key presses (none while a text field has the focus).
    pub(crate) fn shortcuts(&mut self, ctx: &egui::Context) {
        if ctx.egui_wants_keyboard_input() {
            return;
        }
        // Ctrl chords with Shift first: egui matches Ctrl+Z on Ctrl+Shift+Z too.
        let mut chords: Vec<&(Chord, Action)> = bindings().filter(|(c, _)| c.command).collect();
        chords.sort_by_key(|(c, _)| !c.shift);
        let mut actions: Vec<Action> = ctx.input_mut(|i| {
            chords
                .iter()
                .filter(|(c, _)| i.consume_shortcut(&KeyboardShortcut::new(c.modifiers(), c.key)))
                .map(|(_, a)| *a)
                .collect()
        });
        actions.extend(ctx.input(|i| {
            i.events
                .iter()
                .filter_map(|e| match e {
                    egui::Event::Key {
                        key,
                        pressed: true,
                        repeat: false,
                        modifiers,
                        ..
                    } if !modifiers.command => plain_action(*key, modifiers.shift),
                    _ => None,
                })
                .collect::<Vec<_>>()
        }));
        for a in actions {
            self.perform(a);
        }
    }

    /// Whether the menu entry of `a` is enabled.
    pub fn can_perform(&self, a: Action) -> bool {
        match a {
            Action::Undo => self.can_undo(),
            Action::Redo => self.can_redo(),
            Action::DeleteSelected => self.selected.is_some(),
            Action::ProposeAll => self.can_propose(),
            Action::AcceptProposal
            | Action::RejectProposal
            | Action::AcceptAllProposals
            | Action::RejectAllProposals
            | Action::NextProposal
            | Action::PreviousProposal => self.pending_proposals() > 0,
            _ => true,
        }
    }

    /// The on/off state of a toggling action.
    pub fn is_on(&self, a: Action) -> bool {
        match a {
            Action::ToggleObjects => self.overlay.show_objects,
            Action::ToggleAb => self.ab_view,
            Action::ToggleHelp => self.show_help,
            Action::ToggleDebug => self.show_debug,
            Action::Tool(t) => self.tool == t,
            _ => false,
        }
    }

    pub fn perform(&mut self, a: Action) {
        match a {
            Action::Accept => self.accept(),
            Action::ClearPrompts => {
                if self.show_help {
                    self.show_help = false;
                } else if self.proposals.running.is_some() {
                    self.cancel_proposals();
                } else {
                    self.clear_prompts();
                    self.selected = None;
                }
            }
            Action::CycleCandidate => self.cycle_candidate(),
            Action::Candidate(i) => self.choose_candidate(i),
            Action::Undo => self.undo(),
            Action::Redo => self.redo(),
            Action::DeleteSelected => self.delete_selected(),
            Action::Tool(t) => self.tool = t,
            Action::BrushSmaller => self.brush_radius = (self.brush_radius / 1.25).max(0.5),
            Action::BrushLarger => self.brush_radius = (self.brush_radius * 1.25).min(200.0),
            Action::Fit => self.fit(),
            Action::ZoomIn => self.zoom_by(1.25, None),
            Action::ZoomOut => self.zoom_by(0.8, None),
            Action::NextImage => self.next_image(1),
            Action::PreviousImage => self.next_image(-1),
            Action::ToggleObjects => self.overlay.show_objects = !self.overlay.show_objects,
            Action::ToggleAb => self.toggle_ab(),
            Action::SegmentUnprompted => self.segment_without_prompts(),
            Action::ProposeAll => self.propose_all(),
            Action::AcceptProposal => self.accept_focused_proposal(),
            Action::RejectProposal => self.reject_focused_proposal(),
            Action::AcceptAllProposals => self.accept_all_proposals(),
            Action::RejectAllProposals => self.reject_all_proposals(),
            Action::NextProposal => self.focus_proposal(1),
            Action::PreviousProposal => self.focus_proposal(-1),
            Action::Save => {
                self.save_project();
                self.toast(ToastKind::Info, "Saved");
            }
            Action::ToggleHelp => self.show_help = !self.show_help,
            Action::ToggleDebug => self.show_debug = !self.show_debug,
        }
    }

    /// A menu button for `a`, with its shortcut.
    pub(crate) fn action_button(&mut self, ui: &mut egui::Ui, a: Action) {
        let mut button = egui::Button::new(a.label());
        if let Some(k) = a.shortcut_text() {
            button = button.shortcut_text(k);
        }
        if ui.add_enabled(self.can_perform(a), button).clicked() {
            self.perform(a);
        }
    }

    /// A checkbox for a toggling action, labelled with its key.
    pub(crate) fn action_checkbox(&mut self, ui: &mut egui::Ui, a: Action) {
        let mut on = self.is_on(a);
        if ui.checkbox(&mut on, a.label_with_key()).changed() {
            self.perform(a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_key_is_bound_once_and_named_in_its_help_row() {
        let all: Vec<&(Chord, Action)> = bindings().collect();
        for (i, (a, _)) in all.iter().enumerate() {
            for (b, _) in &all[i + 1..] {
                assert!(
                    !(a.key == b.key && a.command == b.command && a.shift == b.shift),
                    "{} bound twice",
                    a.text()
                );
            }
        }
        assert_eq!(plain_action(Key::N, true), Some(Action::PreviousImage));
        assert_eq!(plain_action(Key::A, true), Some(Action::Accept));
        assert_eq!(plain_action(Key::P, true), Some(Action::ProposeAll));
        assert_eq!(
            plain_action(Key::P, false),
            Some(Action::Tool(Tool::Prompt))
        );
        assert_eq!(plain_action(Key::X, true), Some(Action::RejectAllProposals));
        assert_eq!(
            Action::Redo.shortcut_text().as_deref(),
            Some("Ctrl+Shift+Z")
        );
        assert_eq!(
            Action::DeleteSelected.shortcut_text().as_deref(),
            Some("Del")
        );
    }
}
