//! One frame of the workstation: take in what the threads sent, lay out the panels (each view
//! borrows only the parts it shows), apply the views' actions, and hand changed settings to
//! their writer.
use super::actions::Action;
use super::worker::BACKGROUND_REPAINT;
use super::workstation::Workstation;
use super::{controls, detail, gallery, rejects, toolbar};
use std::time::{Duration, Instant};

/// Per-frame time for handling worker replies; the rest waits for the next frame.
const REPLY_BUDGET: Duration = Duration::from_millis(8);
const TEXTURE_BUDGET: Duration = Duration::from_millis(6);

impl Workstation {
    /// One frame: take in what arrived, lay out the panels, apply the actions.
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        let _ = self.ctx_slot.set(ctx.clone());

        let mut more = self.drain_inputs();
        more |= self.textures.receive(&ctx, TEXTURE_BUDGET);
        if more {
            // Left-over replies and thumbnails come on the next budgeted frame, not at once.
            ctx.request_repaint_after(BACKGROUND_REPAINT);
        }

        let mut actions = Vec::new();
        self.slider_ids.clear();
        egui::Panel::top("toolbar").show(ui, |ui| {
            let bar = toolbar::Toolbar {
                catalog: &self.catalog,
                jobs: &self.jobs,
                insp: &mut self.insp,
                prompt: self.dialogs.prompt_mut(),
                folder_error: self.folder_error.as_deref(),
                notices: &self.notices,
            };
            toolbar::show(ui, bar, &mut actions);
        });
        let window = &self.settings.get().window;
        let (left_size, right_size) = (window.left_panel, window.right_panel);
        let left = egui::Panel::left("controls")
            .resizable(true)
            .default_size(left_size)
            .size_range(220.0..=520.0)
            .show(ui, |ui| {
                controls::show(
                    ui,
                    &mut self.insp,
                    &mut self.prefs,
                    &mut self.slider_ids,
                    &mut actions,
                );
            });
        let right = egui::Panel::right("rejects")
            .resizable(true)
            .default_size(right_size)
            .size_range(260.0..=800.0)
            .show(ui, |ui| {
                let busy = self.teach.busy.is_some();
                rejects::show(ui, &mut self.insp, &mut self.sel, busy, &mut actions);
            });
        let teach = &self.teach;
        if teach.busy.is_some() || teach.status.is_some() || teach.undo.is_some() {
            egui::Panel::bottom("teach").show(ui, |ui| {
                super::teach::status(ui, teach, &mut actions);
            });
        }
        if let Some(c) = &self.teach.confirm {
            super::teach::confirm_window(&ctx, c, &mut actions);
        }
        egui::CentralPanel::default().show(ui, |ui| match self.sel.selected {
            Some(selected) if self.sel.detail => {
                let parts = detail::Parts {
                    textures: &mut self.textures,
                    prefs: &mut self.prefs,
                    slider_ids: &mut self.slider_ids,
                    teach_busy: self.teach.busy.is_some(),
                };
                detail::show(ui, &mut self.insp, selected, parts, &mut actions);
            }
            _ => gallery::show(
                ui,
                &mut self.insp,
                &mut self.sel,
                &mut self.textures,
                &self.prefs,
                &mut actions,
            ),
        });
        if self.roi_editor.open {
            super::roi_editor::show(&ctx, &mut self.roi_editor, &mut self.textures, &mut actions);
        }
        self.remember_layout(
            &ctx,
            left.response.rect.width(),
            right.response.rect.width(),
        );
        self.keyboard(&ctx, &mut actions);

        for a in actions {
            self.apply(a);
        }
        self.textures.end_frame();
        self.settings.commit();
    }

    /// Takes in what the threads sent since the last frame; true if worker replies are left
    /// over for the next frame.
    fn drain_inputs(&mut self) -> bool {
        let start = Instant::now();
        let mut more = true;
        while start.elapsed() < REPLY_BUDGET {
            let Some(reply) = self.jobs.try_reply() else {
                more = false;
                break;
            };
            self.on_reply(reply);
        }
        while let Some(task) = self.jobs.try_task() {
            self.on_task(task);
        }
        let arrived = self.jobs.drain_inbox();
        if !arrived.is_empty() {
            self.score_inbox(arrived);
        }
        if let Some((purpose, path)) = self.dialogs.poll() {
            self.dialog_chose(purpose, path);
        }
        self.report_settings_errors();
        more
    }

    /// Arrow keys move through the gallery order, Escape leaves the detail view. Skipped
    /// while a text field or a focused slider wants the keys.
    fn keyboard(&self, ctx: &egui::Context, actions: &mut Vec<Action>) {
        if ctx.egui_wants_keyboard_input() {
            return;
        }
        let focused = ctx.memory(|m| m.focused());
        if focused.is_some_and(|id| self.slider_ids.contains(&id)) {
            return;
        }
        ctx.input(|i| {
            for (key, delta) in [
                (egui::Key::ArrowRight, 1),
                (egui::Key::ArrowDown, 1),
                (egui::Key::ArrowLeft, -1),
                (egui::Key::ArrowUp, -1),
                (egui::Key::Home, isize::MIN / 2),
                (egui::Key::End, isize::MAX / 2),
            ] {
                if i.key_pressed(key) {
                    actions.push(Action::Step(delta));
                }
            }
            if i.key_pressed(egui::Key::Escape) && self.sel.detail {
                actions.push(Action::CloseDetail);
            }
            if i.key_pressed(egui::Key::Enter) && !self.sel.detail {
                if let Some(s) = self.sel.selected {
                    actions.push(Action::OpenDetail(s));
                }
            }
        });
    }

    /// Notes panel widths, window geometry and display choices in the settings when the
    /// operator changed them.
    fn remember_layout(&mut self, ctx: &egui::Context, left: f32, right: f32) {
        if self.layout_seen != Some((left, right)) {
            if self.layout_seen.is_some() {
                self.settings.update(|s| {
                    s.window.left_panel = left;
                    s.window.right_panel = right;
                });
            }
            self.layout_seen = Some((left, right));
        }
        let (inner, outer, maximized) = ctx.input(|i| {
            let v = i.viewport();
            (v.inner_rect, v.outer_rect, v.maximized)
        });
        if let Some(inner) = inner {
            let maximized = maximized.unwrap_or(false);
            let pos = outer.map(|o| (o.min.x, o.min.y));
            let w = &self.settings.get().window;
            let changed = (w.width - inner.width()).abs() > 0.5
                || (w.height - inner.height()).abs() > 0.5
                || w.maximized != maximized
                || pos.is_some_and(|(x, y)| w.x != Some(x) || w.y != Some(y));
            if changed {
                self.settings.update(|s| {
                    let w = &mut s.window;
                    if !maximized {
                        w.width = inner.width();
                        w.height = inner.height();
                        if let Some((x, y)) = pos {
                            w.x = Some(x);
                            w.y = Some(y);
                        }
                    }
                    w.maximized = maximized;
                });
            }
        }
        let p = &self.prefs;
        let s = self.settings.get();
        if s.overlay_opacity != p.opacity || s.show_overlay_in_gallery != p.overlay_in_gallery {
            let (opacity, in_gallery) = (p.opacity, p.overlay_in_gallery);
            self.settings.update(|s| {
                s.overlay_opacity = opacity;
                s.show_overlay_in_gallery = in_gallery;
            });
        }
    }
}
