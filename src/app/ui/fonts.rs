//! The app's fonts: egui's defaults, with its monospace font (Hack) as the last fallback of
//! the proportional family. The proportional font (Ubuntu Light) has no arrows, so every
//! engine message that says `a → b` showed a missing-glyph box.

use egui::{FontDefinitions, FontFamily};

pub fn install(ctx: &egui::Context) {
    ctx.set_fonts(with_monospace_fallback(FontDefinitions::default()));
}

fn with_monospace_fallback(mut fonts: FontDefinitions) -> FontDefinitions {
    let mono = fonts.families.get(&FontFamily::Monospace).cloned();
    if let (Some(mono), Some(prop)) = (mono, fonts.families.get_mut(&FontFamily::Proportional)) {
        for name in mono {
            if !prop.contains(&name) {
                prop.push(name);
            }
        }
    }
    fonts
}

#[cfg(test)]
mod tests {
    use egui::FontId;

    fn proportional_has(ctx: &egui::Context, c: char) -> bool {
        // Font definitions take effect at the next frame.
        // The frame's texture upload has no renderer to go to here.
        ctx.run_pass(egui::RawInput::default(), |_| {})
            .textures_delta
            .clear();
        ctx.fonts_mut(|f| f.has_glyph(&FontId::proportional(14.0), c))
    }

    /// The arrow of `Dice 0.84 → 0.92` is missing from egui's default proportional fonts and
    /// present once the app's fonts are installed.
    #[test]
    fn proportional_text_can_draw_arrows() {
        let plain = egui::Context::default();
        assert!(!proportional_has(&plain, '→'), "egui's defaults changed");
        let app = egui::Context::default();
        super::install(&app);
        for c in ['→', '×', '≤', '–', 'a'] {
            assert!(proportional_has(&app, c), "{c}");
        }
    }
}
