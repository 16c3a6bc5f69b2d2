//! Drawing helpers shared by the gallery and the detail view: fitting images, laying the
//! heatmap over the part of the image the model saw, decision badges, the colour legend.
use super::colormap::{heat_solid, ColorScale};
use super::state::Decision;
use crate::data::Geometry;
use egui::{Color32, CornerRadius, FontId, Painter, Pos2, Rect, Stroke, StrokeKind, Vec2};

pub const ACCEPT: Color32 = Color32::from_rgb(40, 160, 75);
pub const REJECT: Color32 = Color32::from_rgb(215, 45, 45);
pub const REVIEW: Color32 = Color32::from_rgb(225, 180, 20);
pub const ERROR: Color32 = Color32::from_rgb(230, 120, 30);

pub fn decision_color(d: Decision) -> Color32 {
    match d {
        Decision::Accept => ACCEPT,
        Decision::Review => REVIEW,
        Decision::Reject => REJECT,
    }
}

pub fn decision_text(d: Decision) -> &'static str {
    match d {
        Decision::Accept => "OK",
        Decision::Review => "REVIEW",
        Decision::Reject => "REJECT",
    }
}

/// The largest rect with the image's aspect ratio centred in `area`.
pub fn fit(area: Rect, image_size: Vec2) -> Rect {
    if image_size.x <= 0.0 || image_size.y <= 0.0 {
        return area;
    }
    let s = (area.width() / image_size.x).min(area.height() / image_size.y);
    Rect::from_center_size(area.center(), image_size * s)
}

/// The input the model saw, in original-image pixels.
pub fn crop_region(g: &Geometry) -> Rect {
    let (w, h) = (g.width as f64, g.height as f64);
    let (sx, sy) = (g.scale_x.max(1e-9), g.scale_y.max(1e-9));
    Rect::from_min_max(
        Pos2::new((g.off_x / sx) as f32, (g.off_y / sy) as f32),
        Pos2::new(((w + g.off_x) / sx) as f32, ((h + g.off_y) / sy) as f32),
    )
}

/// Maps a rect in original pixels to the screen, where `region` (original pixels) is shown
/// in `screen`.
pub fn to_screen(r: Rect, region: Rect, screen: Rect) -> Rect {
    let sx = screen.width() / region.width().max(1e-6);
    let sy = screen.height() / region.height().max(1e-6);
    Rect::from_min_max(
        Pos2::new(
            screen.min.x + (r.min.x - region.min.x) * sx,
            screen.min.y + (r.min.y - region.min.y) * sy,
        ),
        Pos2::new(
            screen.min.x + (r.max.x - region.min.x) * sx,
            screen.min.y + (r.max.y - region.min.y) * sy,
        ),
    )
}

/// Draws the heat texture over `screen`, which shows `region` of the original image. Only
/// the part inside the model's crop gets colour; the uv is cut to match so nothing stretches.
pub fn draw_heat(
    painter: &Painter,
    heat: egui::TextureId,
    g: &Geometry,
    region: Rect,
    screen: Rect,
    opacity: f32,
) {
    let crop = crop_region(g);
    let inter = crop.intersect(region);
    if inter.width() <= 0.0 || inter.height() <= 0.0 {
        return;
    }
    let target = to_screen(inter, region, screen);
    let (w, h) = (g.width as f32, g.height as f32);
    let uv_of = |p: Pos2| {
        Pos2::new(
            ((p.x as f64 * g.scale_x - g.off_x) as f32 / w).clamp(0.0, 1.0),
            ((p.y as f64 * g.scale_y - g.off_y) as f32 / h).clamp(0.0, 1.0),
        )
    };
    let uv = Rect::from_min_max(uv_of(inter.min), uv_of(inter.max));
    let a = (opacity.clamp(0.0, 1.0) * 255.0).round() as u8;
    painter.image(heat, target, uv, Color32::from_white_alpha(a));
}

/// Outlines the box `b = [x, y, w, h]` (original pixels, within `region`) drawn at `screen`:
/// a `width` line in `color` inside a black one, visible on bright and dark parts alike.
pub fn draw_box(
    painter: &Painter,
    b: [u32; 4],
    region: Rect,
    screen: Rect,
    color: Color32,
    width: f32,
) {
    let r = Rect::from_min_size(
        Pos2::new(b[0] as f32, b[1] as f32),
        Vec2::new(b[2] as f32, b[3] as f32),
    );
    let s = to_screen(r, region, screen);
    painter.rect_stroke(
        s,
        CornerRadius::ZERO,
        Stroke::new(width + 0.5, Color32::BLACK),
        StrokeKind::Outside,
    );
    painter.rect_stroke(
        s,
        CornerRadius::ZERO,
        Stroke::new(width, color),
        StrokeKind::Inside,
    );
}

/// A filled pill with the decision, anchored at its top-right corner.
pub fn badge(painter: &Painter, top_right: Pos2, d: Decision, font_size: f32) {
    let text = decision_text(d);
    let galley = painter.layout_no_wrap(
        text.to_string(),
        FontId::proportional(font_size),
        Color32::WHITE,
    );
    let pad = Vec2::new(5.0, 2.0);
    let rect = Rect::from_min_size(
        Pos2::new(top_right.x - galley.size().x - 2.0 * pad.x, top_right.y),
        galley.size() + 2.0 * pad,
    );
    painter.rect_filled(rect, CornerRadius::same(4), decision_color(d));
    painter.galley(rect.min + pad, galley, Color32::WHITE);
}

/// Horizontal colour bar of the fixed scale with its three reference values.
pub fn legend(ui: &mut egui::Ui, scale: &ColorScale, width: f32) {
    let (rect, _) = ui.allocate_exact_size(Vec2::new(width, 30.0), egui::Sense::hover());
    let bar = Rect::from_min_size(rect.min, Vec2::new(width, 12.0));
    let n = 48;
    for i in 0..n {
        let t0 = i as f32 / n as f32;
        let x0 = bar.min.x + t0 * bar.width();
        let x1 = bar.min.x + (i + 1) as f32 / n as f32 * bar.width();
        ui.painter().rect_filled(
            Rect::from_min_max(Pos2::new(x0, bar.min.y), Pos2::new(x1 + 0.5, bar.max.y)),
            CornerRadius::ZERO,
            heat_solid(t0 + 0.5 / n as f32),
        );
    }
    let font = FontId::proportional(11.0);
    let color = ui.visuals().text_color();
    let p = ui.painter();
    for (t, v, align) in [
        (0.0, scale.lo, egui::Align2::LEFT_TOP),
        (0.5, scale.mid, egui::Align2::CENTER_TOP),
        (1.0, scale.hi, egui::Align2::RIGHT_TOP),
    ] {
        let x = bar.min.x + t * bar.width();
        p.line_segment(
            [Pos2::new(x, bar.max.y), Pos2::new(x, bar.max.y + 3.0)],
            Stroke::new(1.0, color),
        );
        p.text(
            Pos2::new(x, bar.max.y + 3.0),
            align,
            format!("{v:.2}"),
            font.clone(),
            color,
        );
    }
}
