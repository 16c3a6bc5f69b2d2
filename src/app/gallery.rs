//! The gallery: a virtualised grid of thumbnails with heatmap overlay, score and decision.
//!
//! Only the visible rows are laid out (`ScrollArea::show_rows`); rows within a couple of
//! screens keep their textures, everything further away is freed by the texture cache.
use super::actions::Action;
use super::decode::Size;
use super::paint::{self, ERROR};
use super::state::{Inspector, Item, ItemStatus};
use super::textures::{ImageState, TextureCache};
use super::workstation::{Prefs, Selection};
use crate::decide::Rules;
use egui::{
    Color32, CornerRadius, FontId, Rect, RichText, ScrollArea, Sense, Stroke, StrokeKind, Ui, Vec2,
};

const THUMB: f32 = 150.0;
const CAPTION: f32 = 36.0;
const TILE: Vec2 = Vec2::new(THUMB, THUMB + CAPTION);
/// Rows kept alive above and below the visible ones (about two screens).
const KEEP_ROWS: usize = 8;

pub(crate) fn show(
    ui: &mut Ui,
    insp: &mut Inspector,
    sel: &mut Selection,
    textures: &mut TextureCache,
    prefs: &Prefs,
    actions: &mut Vec<Action>,
) {
    let view = insp.view_shared();
    let counts = insp.counts();
    ui.horizontal(|ui| {
        ui.label(RichText::new("Gallery").strong());
        ui.weak(format!("showing {} of {} images", view.len(), counts.total));
        if let Some(b) = &insp.bank {
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                paint::legend(ui, &b.scale, 180.0);
                ui.weak("heat scale");
            });
        }
    });
    ui.separator();
    if view.is_empty() {
        ui.add_space(20.0);
        ui.vertical_centered(|ui| {
            let msg = if insp.bank.is_none() {
                "Choose a category to inspect its images."
            } else if counts.total == 0 {
                "No images yet."
            } else {
                "No image matches the filter."
            };
            ui.weak(msg);
        });
        return;
    }

    let spacing = ui.spacing().item_spacing;
    let cols =
        (((ui.available_width() + spacing.x) / (TILE.x + spacing.x)).floor() as usize).max(1);
    let rows = view.len().div_ceil(cols);
    let row_h = TILE.y + spacing.y;

    let mut area = ScrollArea::vertical()
        .id_salt("gallery")
        .auto_shrink([false, false]);
    // Arrow keys or the reject table moved the selection: bring it into view if it is not.
    if sel.scroll_to_selected {
        sel.scroll_to_selected = false;
        if let Some(pos) = sel.selected.and_then(|s| insp.view_position(s)) {
            let row = (pos / cols) as f32;
            let id = ui.make_persistent_id(egui::IdSalt::new("gallery"));
            let offset = egui::scroll_area::State::load(ui.ctx(), id).map(|s| s.clamped_offset().y);
            let view_h = ui.available_height();
            let top = row * row_h;
            match offset {
                Some(o) if top >= o && top + row_h <= o + view_h => {}
                Some(o) if top < o => area = area.vertical_scroll_offset(top),
                _ => area = area.vertical_scroll_offset((top + row_h - view_h).max(0.0)),
            }
        }
    }

    let rules = insp.rules();
    let scale = insp.bank.as_ref().map(|b| b.scale);
    let ctx = ui.ctx().clone();
    let items = &insp.items;
    let selected = sel.selected;
    let (opacity, overlay) = (prefs.opacity, prefs.overlay_in_gallery);
    area.show_rows(ui, TILE.y, rows, |ui, visible| {
        let keep_from = visible.start.saturating_sub(KEEP_ROWS);
        let keep_to = (visible.end + KEEP_ROWS).min(rows);
        for row in (keep_from..visible.start).chain(visible.end..keep_to) {
            for &i in row_of(&view, row, cols) {
                textures.touch(&items[i].path, Size::Thumb);
            }
        }
        for row in visible {
            ui.horizontal(|ui| {
                for &i in row_of(&view, row, cols) {
                    let parts = Parts {
                        textures: &mut *textures,
                        opacity,
                        overlay,
                    };
                    let is_selected = selected == Some(i);
                    let resp = tile(ui, parts, &items[i], is_selected, &rules, scale, &ctx);
                    if resp.clicked() {
                        actions.push(Action::OpenDetail(i));
                    }
                }
            });
        }
    });
}

/// The items of gallery row `row`.
fn row_of(view: &[usize], row: usize, cols: usize) -> &[usize] {
    let start = (row * cols).min(view.len());
    &view[start..(start + cols).min(view.len())]
}

/// What a tile draws with.
struct Parts<'a> {
    textures: &'a mut TextureCache,
    opacity: f32,
    overlay: bool,
}

/// Accessible name of a tile: file name, decision and score (what a screen reader says).
pub fn tile_label(item: &Item, rules: &Rules) -> String {
    match &item.status {
        ItemStatus::Pending => format!("{}: scoring", item.name),
        ItemStatus::Failed(_) => format!("{}: error", item.name),
        ItemStatus::Scored(ins) => {
            let d = item.decision(rules).unwrap_or_else(|| ins.decide(rules));
            format!(
                "{}: {} {:.3}",
                item.name,
                paint::decision_text(d),
                ins.score
            )
        }
    }
}

fn tile(
    ui: &mut Ui,
    parts: Parts<'_>,
    item: &Item,
    selected: bool,
    rules: &Rules,
    scale: Option<super::colormap::ColorScale>,
    ctx: &egui::Context,
) -> egui::Response {
    let (rect, resp) = ui.allocate_exact_size(TILE, Sense::click());
    let label = tile_label(item, rules);
    resp.widget_info(|| egui::WidgetInfo::selected(egui::Role::Button, true, selected, &label));
    if !ui.is_rect_visible(rect) {
        return resp;
    }
    let visuals = ui.visuals().clone();
    let painter = ui.painter_at(rect);
    let img_area = Rect::from_min_size(rect.min, Vec2::splat(THUMB)).shrink(3.0);
    painter.rect_filled(rect, CornerRadius::same(4), visuals.extreme_bg_color);

    let decision = item.decision(rules);
    match parts.textures.image(&item.path, Size::Thumb) {
        ImageState::Ready(tex) => {
            let size = tex.size_vec2();
            let screen = paint::fit(img_area, size);
            painter.image(
                tex.id(),
                screen,
                Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0)),
                Color32::WHITE,
            );
            if let (Some(ins), Some(scale), true) = (item.inspection(), scale, parts.overlay) {
                let g = ins.geometry;
                let region = Rect::from_min_size(
                    egui::Pos2::ZERO,
                    Vec2::new(g.orig_width as f32, g.orig_height as f32),
                );
                let heat = parts.textures.heat(ctx, &item.path, ins, &scale);
                paint::draw_heat(&painter, heat.id(), &g, region, screen, parts.opacity);
                if let Some(d) = decision {
                    if d == super::state::Decision::Reject {
                        paint::draw_box(
                            &painter,
                            ins.top_patch.box_original,
                            region,
                            screen,
                            Color32::WHITE,
                            1.5,
                        );
                    }
                }
            }
        }
        ImageState::Loading => {
            painter.text(
                img_area.center(),
                egui::Align2::CENTER_CENTER,
                "loading…",
                FontId::proportional(12.0),
                visuals.weak_text_color(),
            );
        }
        ImageState::Failed(e) => {
            painter.rect_filled(img_area, CornerRadius::same(3), ERROR.gamma_multiply(0.25));
            let galley = painter.layout(
                format!("cannot show image\n{e}"),
                FontId::proportional(11.0),
                visuals.text_color(),
                img_area.width() - 8.0,
            );
            painter.galley(
                img_area.min + Vec2::splat(4.0),
                galley,
                visuals.text_color(),
            );
        }
    }

    // Scoring state over the image.
    match &item.status {
        ItemStatus::Pending => {
            painter.text(
                img_area.left_bottom() + Vec2::new(4.0, -4.0),
                egui::Align2::LEFT_BOTTOM,
                "scoring…",
                FontId::proportional(11.0),
                visuals.strong_text_color(),
            );
        }
        ItemStatus::Failed(e) => {
            let r = Rect::from_min_max(
                img_area.left_bottom() - Vec2::new(0.0, 46.0),
                img_area.right_bottom(),
            );
            painter.rect_filled(r, CornerRadius::ZERO, Color32::from_black_alpha(200));
            // A long reason is cut to the band (the tooltip has all of it): wrapped in full it
            // ran over the file name below.
            let mut job = egui::text::LayoutJob::simple(
                e.to_string(),
                FontId::proportional(10.0),
                ERROR,
                r.width() - 6.0,
            );
            job.wrap.max_rows = 3;
            let galley = painter.layout_job(job);
            painter
                .with_clip_rect(r)
                .galley(r.min + Vec2::new(3.0, 2.0), galley, ERROR);
        }
        ItemStatus::Scored(_) => {}
    }
    if let Some(d) = decision {
        paint::badge(
            &painter,
            img_area.right_top() + Vec2::new(-3.0, 3.0),
            d,
            12.0,
        );
    }
    if item.inbox_seq.is_some() {
        paint_new(&painter, img_area.left_top() + Vec2::new(3.0, 3.0));
    }

    // Caption: name, then score (normalised).
    let cap = Rect::from_min_max(egui::pos2(rect.min.x, rect.min.y + THUMB), rect.max);
    let name = painter.layout(
        item.name.clone(),
        FontId::proportional(12.0),
        visuals.text_color(),
        f32::INFINITY,
    );
    let name_pos = cap.min + Vec2::new(4.0, 2.0);
    painter
        .with_clip_rect(cap.shrink(2.0))
        .galley(name_pos, name, visuals.text_color());
    let line2 = match &item.status {
        ItemStatus::Scored(ins) => format!("{:.2}  norm {:.2}", ins.score, ins.normalized),
        ItemStatus::Pending => "—".into(),
        ItemStatus::Failed(_) => "error".into(),
    };
    let color = decision
        .map(paint::decision_color)
        .unwrap_or(visuals.weak_text_color());
    painter.text(
        cap.min + Vec2::new(4.0, 18.0),
        egui::Align2::LEFT_TOP,
        line2,
        FontId::monospace(12.0),
        color,
    );

    let stroke = if selected {
        Stroke::new(3.0, visuals.selection.stroke.color)
    } else if resp.hovered() {
        Stroke::new(1.0, visuals.widgets.hovered.fg_stroke.color)
    } else {
        Stroke::new(1.0, visuals.widgets.noninteractive.bg_stroke.color)
    };
    painter.rect_stroke(rect, CornerRadius::same(4), stroke, StrokeKind::Inside);
    let hover = match &item.status {
        ItemStatus::Failed(e) => format!("{}\n{e}", item.path.display()),
        _ => item.path.display().to_string(),
    };
    resp.on_hover_text(hover)
}

/// "NEW" marker for images that came in through the inbox.
fn paint_new(painter: &egui::Painter, top_left: egui::Pos2) {
    let galley = painter.layout_no_wrap("NEW".into(), FontId::proportional(11.0), Color32::BLACK);
    let r = Rect::from_min_size(top_left, galley.size() + Vec2::new(8.0, 4.0));
    painter.rect_filled(r, CornerRadius::same(4), Color32::from_rgb(250, 210, 0));
    painter.galley(r.min + Vec2::new(4.0, 2.0), galley, Color32::BLACK);
}
