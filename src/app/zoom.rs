//! Zoom and pan of the detail view's image: a 4000-pixel part is shown whole, and the operator
//! wheels in on a 3-pixel defect. UI state only (egui's memory, never the worker), started over
//! when another image is shown. The heatmap, regions and boxes are drawn through the same
//! screen rect, so they stay aligned at every zoom.
use super::paint;
use egui::{Pos2, Rect, Vec2};
use std::path::{Path, PathBuf};

/// Largest magnification over the fitted view.
pub(crate) const MAX_ZOOM: f32 = 64.0;
/// Zoom factor of one `+` or `-` key press.
pub(crate) const KEY_STEP: f32 = 1.5;
/// Zoom factor per point of wheel scrolling (a notch of about 80 points zooms x1.27).
const WHEEL: f32 = 0.003;

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ZoomView {
    /// The image this view belongs to.
    image: Option<PathBuf>,
    /// Magnification over the fitted view (1 = the whole image fits the viewport).
    zoom: f32,
    /// Image point (pixels) at the viewport's centre; `None` = the image's centre.
    centre: Option<Pos2>,
}

impl Default for ZoomView {
    fn default() -> Self {
        Self {
            image: None,
            zoom: 1.0,
            centre: None,
        }
    }
}

impl ZoomView {
    /// Starts over (whole image) when `image` is not the image this view was showing.
    pub(crate) fn show_image(&mut self, image: &Path) {
        if self.image.as_deref() != Some(image) {
            *self = Self {
                image: Some(image.to_path_buf()),
                ..Self::default()
            };
        }
    }

    pub(crate) fn zoom(&self) -> f32 {
        self.zoom
    }

    /// Back to the whole image.
    pub(crate) fn reset(&mut self) {
        self.zoom = 1.0;
        self.centre = None;
    }

    /// Screen points per image pixel in viewport `area` for an image of `image` pixels.
    pub(crate) fn scale(&self, area: Rect, image: Vec2) -> f32 {
        paint::fit(area, image).width() / image.x.max(1e-6) * self.zoom
    }

    /// Where the whole image is drawn (usually larger than `area` once zoomed; draw clipped).
    pub(crate) fn image_rect(&self, area: Rect, image: Vec2) -> Rect {
        let s = self.scale(area, image);
        let c = self.centre.unwrap_or((image / 2.0).to_pos2());
        Rect::from_min_size(area.center() - c.to_vec2() * s, image * s)
    }

    /// The image point (pixels) under screen point `p`.
    pub(crate) fn image_point(&self, area: Rect, image: Vec2, p: Pos2) -> Pos2 {
        let r = self.image_rect(area, image);
        ((p - r.min) / self.scale(area, image)).to_pos2()
    }

    /// Multiplies the zoom by `factor` (clamped to 1..=MAX_ZOOM) keeping the image point under
    /// `cursor` where it is, as far as the image's edges allow.
    pub(crate) fn zoom_at(&mut self, area: Rect, image: Vec2, cursor: Pos2, factor: f32) {
        if !factor.is_finite() || factor <= 0.0 {
            return;
        }
        let p = self.image_point(area, image, cursor);
        self.zoom = (self.zoom * factor).clamp(1.0, MAX_ZOOM);
        let s = self.scale(area, image);
        self.centre = Some(p - (cursor - area.center()) / s);
        self.clamp(area, image);
    }

    /// Moves the image by `delta` screen points (a drag).
    pub(crate) fn pan(&mut self, area: Rect, image: Vec2, delta: Vec2) {
        let s = self.scale(area, image);
        let c = self.centre.unwrap_or((image / 2.0).to_pos2());
        self.centre = Some(c - delta / s);
        self.clamp(area, image);
    }

    /// Keeps the image in view: along an axis where the zoomed image is larger than the
    /// viewport no empty margin shows; where it is smaller it stays centred.
    fn clamp(&mut self, area: Rect, image: Vec2) {
        let half = area.size() / (2.0 * self.scale(area, image));
        let c = self.centre.unwrap_or((image / 2.0).to_pos2());
        let axis = |c: f32, half: f32, len: f32| {
            if len <= 2.0 * half {
                len / 2.0
            } else {
                c.clamp(half, len - half)
            }
        };
        self.centre = Some(Pos2::new(
            axis(c.x, half.x, image.x),
            axis(c.y, half.y, image.y),
        ));
    }

    /// Applies this frame's input over the viewport: wheel (or pinch) zooms around the pointer,
    /// dragging pans, `+`/`-` zoom around the centre and `0` fits (keys only when `keys`).
    pub(crate) fn handle_input(
        &mut self,
        ui: &egui::Ui,
        response: &egui::Response,
        area: Rect,
        image: Vec2,
        keys: bool,
    ) {
        if response.dragged() {
            self.pan(area, image, response.drag_delta());
        }
        if let Some(p) = response.hover_pos() {
            let (scroll, pinch) = ui.input(|i| (i.smooth_scroll_delta.y, i.zoom_delta()));
            let factor = (scroll * WHEEL).exp() * pinch;
            if factor != 1.0 {
                self.zoom_at(area, image, p, factor);
            }
        }
        if !keys {
            return;
        }
        let (zoom_in, zoom_out, fit) = ui.input(|i| {
            let plain = !i.modifiers.command && !i.modifiers.alt;
            let k = |key| plain && i.key_pressed(key);
            (
                k(egui::Key::Plus) || k(egui::Key::Equals),
                k(egui::Key::Minus),
                k(egui::Key::Num0),
            )
        });
        if zoom_in {
            self.zoom_at(area, image, area.center(), KEY_STEP);
        }
        if zoom_out {
            self.zoom_at(area, image, area.center(), 1.0 / KEY_STEP);
        }
        if fit {
            self.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AREA: Rect = Rect::from_min_max(Pos2::new(10.0, 20.0), Pos2::new(1010.0, 620.0));
    const LONG: Vec2 = Vec2::new(4000.0, 1000.0);

    fn assert_close(a: Rect, b: Rect) {
        assert!(
            (a.min - b.min).length() < 1e-3 && (a.max - b.max).length() < 1e-3,
            "{a:?} != {b:?}"
        );
    }

    #[test]
    fn unzoomed_view_is_the_fitted_image() {
        let v = ZoomView::default();
        assert_close(v.image_rect(AREA, LONG), paint::fit(AREA, LONG));
        // 1000 x 600 viewport, 4:1 image: 1000 x 250, centred vertically.
        let r = v.image_rect(AREA, LONG);
        assert!((r.width() - 1000.0).abs() < 1e-3 && (r.height() - 250.0).abs() < 1e-3);
    }

    #[test]
    fn zooming_keeps_the_point_under_the_cursor_fixed() {
        let mut v = ZoomView::default();
        // On the viewport's horizontal midline: up to x2.4 the image is less high than the
        // viewport and stays centred vertically, so only there is the point free to stay put.
        let cursor = Pos2::new(300.0, AREA.center().y);
        let before = v.image_point(AREA, LONG, cursor);
        for factor in [2.0, 1.7, 3.0, 0.5] {
            v.zoom_at(AREA, LONG, cursor, factor);
            let after = v.image_point(AREA, LONG, cursor);
            assert!(
                (after - before).length() < 1e-2,
                "x{factor}: {before:?} moved to {after:?}"
            );
        }
        assert!((v.zoom() - 5.1).abs() < 1e-4);
        // The image is scaled by the zoom around that point.
        let s = v.scale(AREA, LONG);
        assert!((s - 0.25 * 5.1).abs() < 1e-4);
    }

    #[test]
    fn zoom_stays_within_limits_and_the_image_in_view() {
        let mut v = ZoomView::default();
        v.zoom_at(AREA, LONG, AREA.left_top(), 0.25);
        assert_eq!(v.zoom(), 1.0);
        assert_close(v.image_rect(AREA, LONG), paint::fit(AREA, LONG));
        v.zoom_at(AREA, LONG, AREA.center(), 1e6);
        assert_eq!(v.zoom(), MAX_ZOOM);
        // Panning far past the left end stops with the image's left edge at the viewport's.
        v.reset();
        v.zoom_at(AREA, LONG, AREA.center(), 8.0);
        v.pan(AREA, LONG, Vec2::new(1e6, 0.0));
        let r = v.image_rect(AREA, LONG);
        assert!((r.min.x - AREA.min.x).abs() < 1e-2, "{r:?}");
        // At x8 the 4:1 image is 2000 points high: vertically it covers the viewport too.
        v.pan(AREA, LONG, Vec2::new(0.0, -1e6));
        let r = v.image_rect(AREA, LONG);
        assert!((r.max.y - AREA.max.y).abs() < 1e-2, "{r:?}");
        // At x2 it is 500 points high, less than the viewport: it stays centred vertically.
        v.reset();
        v.zoom_at(AREA, LONG, AREA.center(), 2.0);
        v.pan(AREA, LONG, Vec2::new(0.0, 300.0));
        assert!((v.image_rect(AREA, LONG).center().y - AREA.center().y).abs() < 1e-2);
    }

    #[test]
    fn another_image_starts_over() {
        let mut v = ZoomView::default();
        v.show_image(Path::new("a.png"));
        v.zoom_at(AREA, LONG, Pos2::new(200.0, 300.0), 4.0);
        v.show_image(Path::new("a.png"));
        assert_eq!(v.zoom(), 4.0);
        v.show_image(Path::new("b.png"));
        assert_eq!(v.zoom(), 1.0);
        assert_close(v.image_rect(AREA, LONG), paint::fit(AREA, LONG));
    }

    #[test]
    fn boxes_stay_on_the_same_image_pixels_when_zoomed() {
        // A box in image pixels maps through the zoomed rect exactly as image points do.
        let mut v = ZoomView::default();
        v.zoom_at(AREA, LONG, Pos2::new(700.0, 300.0), 6.0);
        let screen = v.image_rect(AREA, LONG);
        let region = Rect::from_min_size(Pos2::ZERO, LONG);
        let bx = Rect::from_min_size(Pos2::new(2900.0, 480.0), Vec2::new(12.0, 8.0));
        let s = paint::to_screen(bx, region, screen);
        let back = v.image_point(AREA, LONG, s.min);
        assert!((back - bx.min).length() < 1e-2, "{back:?}");
        assert!((s.width() - 12.0 * v.scale(AREA, LONG)).abs() < 1e-3);
    }
}
