//! The detail view: the selected image large with its heatmap on the category's fixed scale,
//! the top patch outlined, and a zoomed crop of that patch beside it. Arrow keys (handled by
//! the workstation) step through the filtered gallery order; the wheel, a drag and `+`/`-`/`0`
//! zoom and pan the image ([`super::zoom`]).
use super::actions::Action;
use super::decode::Size;
use super::paint::{self, ERROR, REJECT};
use super::state::{Decision, Inspector, ItemStatus};
use super::textures::{ImageState, TextureCache};
use super::workstation::Prefs;
use super::zoom::{ZoomView, KEY_STEP};
use egui::{Color32, CornerRadius, Pos2, Rect, RichText, Sense, Slider, Ui, Vec2};

const SIDE: f32 = 270.0;

/// What the detail view draws with and changes besides the inspector: the textures, the
/// overlay choices, and the list of sliders (whose focus keeps the arrow keys).
pub(crate) struct Parts<'a> {
    pub(crate) textures: &'a mut TextureCache,
    pub(crate) prefs: &'a mut Prefs,
    pub(crate) slider_ids: &'a mut Vec<egui::Id>,
    /// A teach or undo is running (the teach buttons wait).
    pub(crate) teach_busy: bool,
}

/// Shows item `index` of the inspector.
pub(crate) fn show(
    ui: &mut Ui,
    insp: &mut Inspector,
    index: usize,
    parts: Parts<'_>,
    actions: &mut Vec<Action>,
) {
    let Parts {
        textures,
        prefs,
        slider_ids,
        teach_busy,
    } = parts;
    let Some(item) = insp.items.get(index).cloned() else {
        return;
    };
    let threshold = insp.threshold();
    let rules = insp.rules();
    let view_len = insp.view().len();
    let pos = insp.view_position(index);
    let scale = insp.bank.as_ref().map(|b| b.scale);
    let decision = item.decision(&rules);

    ui.horizontal(|ui| {
        if ui
            .button("« Back to gallery")
            .on_hover_text("Esc")
            .clicked()
        {
            actions.push(Action::CloseDetail);
        }
        ui.separator();
        if ui
            .add_enabled(pos.is_some_and(|p| p > 0), egui::Button::new("Previous"))
            .on_hover_text("Left or Up arrow key")
            .clicked()
        {
            actions.push(Action::Step(-1));
        }
        if ui
            .add_enabled(
                pos.is_some_and(|p| p + 1 < view_len),
                egui::Button::new("Next"),
            )
            .on_hover_text("Right or Down arrow key")
            .clicked()
        {
            actions.push(Action::Step(1));
        }
        match pos {
            Some(p) => ui.label(format!("{} / {}", p + 1, view_len)),
            None => ui.weak("not in the current filter"),
        };
        ui.separator();
        ui.label(RichText::new(&item.name).strong().size(16.0));
        if let Some(d) = decision {
            let text = match d {
                Decision::Accept => "ACCEPTED",
                Decision::Review => "TO REVIEW",
                Decision::Reject => "REJECTED",
            };
            ui.label(
                RichText::new(format!(" {text} "))
                    .strong()
                    .color(Color32::WHITE)
                    .background_color(paint::decision_color(d)),
            );
        }
    });
    ui.horizontal(|ui| {
        match &item.status {
            ItemStatus::Scored(ins) => {
                let [x, y, w, h] = ins.top_patch.box_original;
                ui.label(format!(
                    "Score {:.4}   normalised {:.3}   threshold {:.4}   defect at x {x}, y {y} ({w}×{h} px)",
                    ins.score, ins.normalized, threshold
                ));
            }
            ItemStatus::Pending => {
                ui.spinner();
                ui.label("Scoring…");
            }
            ItemStatus::Failed(e) => {
                ui.colored_label(REJECT, format!("Not scored: {e}"));
            }
        }
    });
    super::review::show(ui, index, &item, &rules, actions);
    if item
        .inspection()
        .is_some_and(|i| i.decide(&rules) != Decision::Accept)
    {
        ui.horizontal(|ui| {
            super::teach::buttons(ui, &[index], teach_busy, actions);
        });
    }
    ui.horizontal(|ui| {
        ui.checkbox(&mut prefs.overlay_in_detail, "Show heatmap");
        let r = ui.add(
            Slider::new(&mut prefs.opacity, 0.0..=1.0)
                .text("Overlay opacity")
                .max_decimals(2),
        );
        slider_ids.push(r.id);
        if let Some(s) = &scale {
            ui.separator();
            ui.weak("heat scale");
            paint::legend(ui, s, 200.0);
        }
    });
    ui.separator();

    let avail = ui.available_rect_before_wrap();
    let side_w = SIDE.min(avail.width() * 0.35);
    let main = Rect::from_min_max(
        avail.min,
        Pos2::new(avail.max.x - side_w - 8.0, avail.max.y),
    );
    let side = Rect::from_min_max(Pos2::new(main.max.x + 8.0, avail.min.y), avail.max);
    ui.allocate_rect(avail, Sense::hover());

    let overlay = prefs.overlay_in_detail;
    let opacity = prefs.opacity;
    let ctx = ui.ctx().clone();
    let view_id = ui.make_persistent_id(egui::IdSalt::new("detail_zoom"));
    let mut view = ctx.data_mut(|d| d.get_temp_mut_or_default::<ZoomView>(view_id).clone());
    view.show_image(&item.path);
    // Full image if decoded, else the thumbnail meanwhile (instant feedback while stepping).
    let full = match textures.image(&item.path, Size::Full) {
        ImageState::Ready(t) => Ok(Some(t.clone())),
        ImageState::Loading => Ok(None),
        ImageState::Failed(e) => Err(e.to_string()),
    };
    let texture = match full {
        Ok(Some(t)) => Ok(Some(t)),
        Ok(None) => Ok(textures.existing(&item.path, Size::Thumb).cloned()),
        Err(e) => Err(e),
    };
    let painter = ui.painter_at(main);
    painter.rect_filled(main, CornerRadius::same(4), ui.visuals().extreme_bg_color);
    let inspection = item.inspection().cloned();
    match texture {
        Ok(Some(tex)) => {
            let (region, image_size) = match &inspection {
                Some(ins) => {
                    let s = Vec2::new(
                        ins.geometry.orig_width as f32,
                        ins.geometry.orig_height as f32,
                    );
                    (Rect::from_min_size(Pos2::ZERO, s), s)
                }
                None => (
                    Rect::from_min_size(Pos2::ZERO, tex.size_vec2()),
                    tex.size_vec2(),
                ),
            };
            let area = main.shrink(4.0);
            let screen = if image_size.min_elem() >= 1.0 {
                let response = ui.interact(main, view_id, Sense::click_and_drag());
                let keys = !ctx.egui_wants_keyboard_input();
                view.handle_input(ui, &response, area, image_size, keys);
                view.image_rect(area, image_size)
            } else {
                paint::fit(area, image_size)
            };
            let tex = sharpest(textures, &ctx, &item.path, tex, screen, image_size);
            painter.image(tex.id(), screen, unit_uv(), Color32::WHITE);
            if let (Some(ins), Some(scale)) = (&inspection, &scale) {
                if overlay {
                    let heat = textures.heat(&ctx, &item.path, ins, scale);
                    paint::draw_heat(&painter, heat.id(), &ins.geometry, region, screen, opacity);
                }
                super::review::draw_regions(&painter, ins, &rules, region, screen);
                paint::draw_box(
                    &painter,
                    ins.top_patch.box_original,
                    region,
                    screen,
                    Color32::WHITE,
                    2.5,
                );
            }
            if image_size.min_elem() >= 1.0 {
                zoom_bar(ui, main, &mut view, area, image_size);
            }
            // The zoomed patch: about 3x the patch, square, inside the image.
            if let Some(ins) = &inspection {
                let zoom = zoom_region(ins.top_patch.box_original, image_size);
                let mut side_ui = ui.new_child(egui::UiBuilder::new().max_rect(side));
                side_ui
                    .label(RichText::new("Most anomalous patch, zoomed").strong())
                    .on_hover_text("Raw pixels around the outlined patch, without the heatmap");
                let (zr, _) =
                    side_ui.allocate_exact_size(Vec2::splat(side.width()), Sense::hover());
                let zp = side_ui.painter_at(zr);
                zp.rect_filled(zr, CornerRadius::ZERO, Color32::BLACK);
                let zscreen = paint::fit(zr, zoom.size());
                let uv = Rect::from_min_max(
                    Pos2::new(zoom.min.x / image_size.x, zoom.min.y / image_size.y),
                    Pos2::new(zoom.max.x / image_size.x, zoom.max.y / image_size.y),
                );
                // Raw pixels, no overlay: the heatmap is on the big image already, and here
                // the operator wants to see the defect itself.
                zp.image(tex.id(), zscreen, uv, Color32::WHITE);
                paint::draw_box(
                    &zp,
                    ins.top_patch.box_original,
                    zoom,
                    zscreen,
                    Color32::WHITE,
                    2.0,
                );
                side_ui.label(format!(
                    "patch score {:.4} (row {}, col {})",
                    ins.top_patch.score, ins.top_patch.row, ins.top_patch.col
                ));
                side_ui.add_space(6.0);
                side_ui.weak(item.path.display().to_string());
                if !item.scored_at.is_empty() {
                    side_ui.weak(format!("scored {}", item.scored_at));
                }
                let t = ins.times;
                if t.features_ms + t.search_ms > 0.0 {
                    side_ui.weak(format!(
                        "decode {:.0} ms · features {:.0} ms · search {:.0} ms · map {:.0} ms",
                        t.decode_ms, t.features_ms, t.search_ms, t.map_ms
                    ));
                }
            }
        }
        Ok(None) => {
            painter.text(
                main.center(),
                egui::Align2::CENTER_CENTER,
                "loading…",
                egui::FontId::proportional(16.0),
                ui.visuals().weak_text_color(),
            );
        }
        Err(e) => {
            let galley = painter.layout(
                format!("This image cannot be shown:\n{e}"),
                egui::FontId::proportional(15.0),
                ERROR,
                main.width() - 40.0,
            );
            painter.galley(main.min + Vec2::splat(20.0), galley, ERROR);
        }
    }
    ctx.data_mut(|d| d.insert_temp(view_id, view));
}

/// The texture to draw at `screen`: `tex`, or the native-resolution rendition when the zoom
/// magnifies the full rendition and the image is larger than it (shown once decoded).
fn sharpest(
    textures: &mut TextureCache,
    ctx: &egui::Context,
    path: &std::path::Path,
    tex: egui::TextureHandle,
    screen: Rect,
    image_size: Vec2,
) -> egui::TextureHandle {
    // Measured against the full rendition, not `tex`: a thumbnail standing in while the full
    // image loads must not start a native decode.
    let full_side = image_size.max_elem().min(Size::Full.max_side() as f32);
    let magnified = screen.size().max_elem() * ctx.pixels_per_point() > full_side * 1.1;
    let larger = image_size.max_elem() > full_side + 0.5;
    let gpu_allows = ctx.input(|i| i.max_texture_side) as u32 >= Size::Native.max_side();
    if magnified && larger && gpu_allows {
        if let ImageState::Ready(t) = textures.image(path, Size::Native) {
            return t.clone();
        }
    }
    tex
}

/// The zoom indicator and buttons over the image's top-left corner.
fn zoom_bar(ui: &mut Ui, main: Rect, view: &mut ZoomView, area: Rect, image: Vec2) {
    let bar = Rect::from_min_size(
        main.min + Vec2::splat(8.0),
        Vec2::new(main.width() - 16.0, 24.0),
    );
    let mut bar_ui = ui.new_child(egui::UiBuilder::new().max_rect(bar));
    bar_ui.horizontal(|ui| {
        let zoom_out = ui.small_button("−").on_hover_text("Zoom out (- key)");
        let zoom_in = ui.small_button("+").on_hover_text("Zoom in (+ key)");
        let fit = ui.small_button("Fit").on_hover_text("Whole image (0 key)");
        if zoom_out.clicked() {
            view.zoom_at(area, image, area.center(), 1.0 / KEY_STEP);
        }
        if zoom_in.clicked() {
            view.zoom_at(area, image, area.center(), KEY_STEP);
        }
        if fit.clicked() {
            view.reset();
        }
        let pixels = view.scale(area, image) * ui.ctx().pixels_per_point() * 100.0;
        let text = if view.zoom() <= 1.0 {
            format!("whole image · {pixels:.0} % of its pixels")
        } else {
            format!("zoom ×{:.1} · {pixels:.0} % of its pixels", view.zoom())
        };
        ui.label(
            RichText::new(text)
                .color(Color32::WHITE)
                .background_color(Color32::from_black_alpha(160)),
        )
        .on_hover_text(
            "Wheel: zoom around the pointer · drag: pan · + / - / 0: zoom in, out, whole image",
        );
    });
}

fn unit_uv() -> Rect {
    Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0))
}

/// A square around the top patch, three times its size (at least a quarter of the image's
/// short side), shifted to stay inside the image.
fn zoom_region(b: [u32; 4], image: Vec2) -> Rect {
    let center = Pos2::new(
        b[0] as f32 + b[2] as f32 / 2.0,
        b[1] as f32 + b[3] as f32 / 2.0,
    );
    let side = (b[2].max(b[3]) as f32 * 3.0)
        .max(image.x.min(image.y) / 4.0)
        .min(image.x.min(image.y));
    let mut r = Rect::from_center_size(center, Vec2::splat(side));
    let shift = Vec2::new(
        (-r.min.x).max(0.0) - (r.max.x - image.x).max(0.0),
        (-r.min.y).max(0.0) - (r.max.y - image.y).max(0.0),
    );
    r = r.translate(shift);
    r
}
