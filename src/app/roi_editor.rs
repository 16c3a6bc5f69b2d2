//! The ROI editor: a window over one image of the category where the operator paints what to
//! inspect (brush), what to ignore (erase), fills polygons either way or the whole image, and
//! saves the mask into the bank (the worker stores it atomically and recalibrates).
use super::actions::Action;
use super::decode::Size;
use super::jobs::Task;
use super::textures::{ImageState, TextureCache};
use super::workstation::Workstation;
use crate::bank::BankFile;
use crate::decide::Roi;
use egui::{Color32, ColorImage, Pos2, Rect, Sense, Stroke, TextureHandle, Ui, Vec2};
use std::path::PathBuf;

/// Longest mask side drawn here: the mask is stretched over each image anyway, and a finer one
/// only makes painting slower.
const MAX_SIDE: u32 = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tool {
    /// Paint "inspect".
    Brush,
    /// Paint "ignore".
    Erase,
    /// Click vertices, then fill the polygon either way.
    Polygon,
}

/// The editor's state: the mask being drawn (1 = inspect) and the image under it.
pub(crate) struct RoiEditor {
    pub(crate) open: bool,
    image: Option<PathBuf>,
    width: u32,
    height: u32,
    mask: Vec<u8>,
    tool: Tool,
    /// Brush radius in mask pixels.
    brush: f32,
    polygon: Vec<Pos2>,
    overlay: Option<TextureHandle>,
    dirty: bool,
    pub(crate) status: Option<String>,
}

impl Default for RoiEditor {
    fn default() -> Self {
        RoiEditor {
            open: false,
            image: None,
            width: 0,
            height: 0,
            mask: Vec::new(),
            tool: Tool::Brush,
            brush: 24.0,
            polygon: Vec::new(),
            overlay: None,
            dirty: true,
            status: None,
        }
    }
}

impl RoiEditor {
    /// Starts over on `image` (`w` x `h` original pixels), everything inspected.
    fn start(&mut self, image: PathBuf, w: u32, h: u32) {
        let s = (MAX_SIDE as f32 / w.max(h).max(1) as f32).min(1.0);
        self.width = ((w as f32 * s).round() as u32).max(1);
        self.height = ((h as f32 * s).round() as u32).max(1);
        self.mask = vec![1; (self.width * self.height) as usize];
        self.image = Some(image);
        self.polygon.clear();
        self.dirty = true;
        self.status = None;
        self.open = true;
    }

    /// Adopts the bank's stored mask (its own size: it is stretched over the image anyway).
    pub(crate) fn adopt(&mut self, roi: Roi) {
        self.width = roi.width;
        self.height = roi.height;
        self.mask = roi.mask;
        self.dirty = true;
    }

    fn stamp(&mut self, at: Pos2, value: u8) {
        let r = self.brush.max(1.0);
        let (w, h) = (self.width as i64, self.height as i64);
        let (x0, x1) = ((at.x - r).floor() as i64, (at.x + r).ceil() as i64);
        let (y0, y1) = ((at.y - r).floor() as i64, (at.y + r).ceil() as i64);
        for y in y0.max(0)..y1.min(h) {
            for x in x0.max(0)..x1.min(w) {
                let (dx, dy) = (x as f32 + 0.5 - at.x, y as f32 + 0.5 - at.y);
                if dx * dx + dy * dy <= r * r {
                    self.mask[(y * w + x) as usize] = value;
                }
            }
        }
        self.dirty = true;
    }

    /// Fills the closed polygon (even-odd rule, pixel centres) with `value`.
    fn fill_polygon(&mut self, value: u8) {
        let p = std::mem::take(&mut self.polygon);
        if p.len() < 3 {
            return;
        }
        let w = self.width as usize;
        for y in 0..self.height as usize {
            let cy = y as f32 + 0.5;
            for x in 0..w {
                let cx = x as f32 + 0.5;
                let mut inside = false;
                for (a, b) in p.iter().zip(p.iter().cycle().skip(1)) {
                    if (a.y > cy) != (b.y > cy) && cx < a.x + (cy - a.y) / (b.y - a.y) * (b.x - a.x)
                    {
                        inside = !inside;
                    }
                }
                if inside {
                    self.mask[y * w + x] = value;
                }
            }
        }
        self.dirty = true;
    }

    fn overlay(&mut self, ctx: &egui::Context) -> Option<&TextureHandle> {
        if self.dirty || self.overlay.is_none() {
            let pixels = self
                .mask
                .iter()
                .map(|&m| {
                    if m == 1 {
                        Color32::TRANSPARENT
                    } else {
                        Color32::from_rgba_unmultiplied(20, 20, 60, 170)
                    }
                })
                .collect();
            let image = ColorImage::new([self.width as usize, self.height as usize], pixels);
            self.overlay = Some(ctx.load_texture("roi-mask", image, egui::TextureOptions::NEAREST));
            self.dirty = false;
        }
        self.overlay.as_ref()
    }
}

/// The editor window, when open.
pub(crate) fn show(
    ctx: &egui::Context,
    ed: &mut RoiEditor,
    textures: &mut TextureCache,
    actions: &mut Vec<Action>,
) {
    let mut open = ed.open;
    egui::Window::new("Region of interest")
        .open(&mut open)
        .default_size([760.0, 700.0])
        .show(ctx, |ui| body(ui, ed, textures, actions));
    ed.open = open && ed.open;
}

fn body(ui: &mut Ui, ed: &mut RoiEditor, textures: &mut TextureCache, actions: &mut Vec<Action>) {
    ui.horizontal(|ui| {
        ui.selectable_value(&mut ed.tool, Tool::Brush, "Brush (inspect)");
        ui.selectable_value(&mut ed.tool, Tool::Erase, "Erase (ignore)");
        ui.selectable_value(&mut ed.tool, Tool::Polygon, "Polygon");
        ui.add(egui::Slider::new(&mut ed.brush, 2.0..=200.0).text("brush px"));
    });
    ui.horizontal(|ui| {
        let closed = ed.polygon.len() >= 3;
        if ui
            .add_enabled(closed, egui::Button::new("Fill polygon: inspect"))
            .clicked()
        {
            ed.fill_polygon(1);
        }
        if ui
            .add_enabled(closed, egui::Button::new("Fill polygon: ignore"))
            .clicked()
        {
            ed.fill_polygon(0);
        }
        if ui.button("Inspect all").clicked() {
            ed.mask.fill(1);
            ed.dirty = true;
        }
        if ui.button("Ignore all").clicked() {
            ed.mask.fill(0);
            ed.dirty = true;
        }
        ui.separator();
        if ui
            .button("Save to bank")
            .on_hover_text("Stores the mask in the bank and recalibrates the thresholds under it")
            .clicked()
        {
            match Roi::new(ed.width, ed.height, &ed.mask) {
                Ok(roi) => actions.push(Action::SaveRoi(Some(roi))),
                Err(e) => ed.status = Some(e),
            }
        }
        if ui.button("Remove ROI").clicked() {
            actions.push(Action::SaveRoi(None));
        }
    });
    let share = ed.mask.iter().filter(|&&m| m == 1).count() as f32 / ed.mask.len().max(1) as f32;
    ui.label(format!(
        "{} x {} mask, {:.1} % inspected (dark = ignored){}",
        ed.width,
        ed.height,
        100.0 * share,
        ed.status
            .as_deref()
            .map(|s| format!(" — {s}"))
            .unwrap_or_default()
    ));
    let avail = ui.available_size();
    let (rect, resp) = ui.allocate_exact_size(avail, Sense::click_and_drag());
    let size = Vec2::new(ed.width as f32, ed.height as f32);
    let screen = super::paint::fit(rect, size);
    let painter = ui.painter_at(rect);
    let uv = Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0));
    if let Some(path) = ed.image.clone() {
        if let ImageState::Ready(tex) = textures.image(&path, Size::Full) {
            painter.image(tex.id(), screen, uv, Color32::WHITE);
        }
    }
    let ctx = ui.ctx().clone();
    if let Some(overlay) = ed.overlay(&ctx) {
        painter.image(overlay.id(), screen, uv, Color32::WHITE);
    }
    let to_mask = |p: Pos2| {
        Pos2::new(
            (p.x - screen.min.x) / screen.width() * size.x,
            (p.y - screen.min.y) / screen.height() * size.y,
        )
    };
    let to_screen = |m: Pos2| {
        Pos2::new(
            screen.min.x + m.x / size.x * screen.width(),
            screen.min.y + m.y / size.y * screen.height(),
        )
    };
    if let Some(p) = resp.interact_pointer_pos() {
        match ed.tool {
            Tool::Brush if resp.dragged() || resp.clicked() => ed.stamp(to_mask(p), 1),
            Tool::Erase if resp.dragged() || resp.clicked() => ed.stamp(to_mask(p), 0),
            Tool::Polygon if resp.clicked() => ed.polygon.push(to_mask(p)),
            _ => {}
        }
    }
    let line = Stroke::new(2.0, Color32::from_rgb(250, 200, 0));
    let pts: Vec<Pos2> = ed.polygon.iter().map(|&m| to_screen(m)).collect();
    for pair in pts.windows(2) {
        painter.line_segment([pair[0], pair[1]], line);
    }
    if let (Some(&first), Some(&last), true) = (pts.first(), pts.last(), pts.len() >= 3) {
        // The edge that filling closes, thinner.
        painter.line_segment([last, first], Stroke::new(1.0, line.color));
    }
    for &p in &pts {
        painter.circle_filled(p, 3.5, line.color);
    }
    if let (Some(h), Tool::Brush | Tool::Erase) = (resp.hover_pos(), ed.tool) {
        painter.circle_stroke(
            h,
            ed.brush * screen.width() / size.x.max(1.0),
            Stroke::new(1.0, Color32::WHITE),
        );
    }
}

impl Workstation {
    /// Opens the editor on the selected image (else the first scored one), starting from the
    /// bank's stored mask when it has one.
    pub(crate) fn open_roi_editor(&mut self) {
        let Some(bank) = self.insp.bank.as_ref().map(|b| b.path.clone()) else {
            return;
        };
        let pick = self
            .sel
            .selected
            .and_then(|i| self.insp.items.get(i))
            .filter(|i| i.inspection().is_some())
            .or_else(|| self.insp.items.iter().find(|i| i.inspection().is_some()));
        let Some((path, g)) =
            pick.and_then(|i| i.inspection().map(|ins| (i.path.clone(), ins.geometry)))
        else {
            self.roi_editor.status = Some("open a folder and let an image be scored first".into());
            self.roi_editor.open = true;
            return;
        };
        self.roi_editor.start(path, g.orig_width, g.orig_height);
        self.jobs.spawn_task(move || {
            Task::RoiLoaded(
                BankFile::load(&bank)
                    .map(|f| f.roi)
                    .map_err(|e| e.to_string()),
            )
        });
    }

    /// Sends the mask to the worker, which stores it in the bank and reloads it.
    pub(crate) fn save_roi(&mut self, roi: Option<Roi>) {
        if let Some(bank) = self.insp.bank.as_ref().map(|b| b.path.clone()) {
            self.roi_editor.status = Some("saving and recalibrating…".into());
            // The worker answers with the reloaded bank, which the catalog must be awaiting.
            self.catalog.choose(&bank);
            self.jobs
                .change_bank(bank, crate::engine::calibrate::BankChange::Roi(roi));
        }
    }
}
