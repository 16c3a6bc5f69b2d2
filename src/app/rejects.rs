//! The reject list beside the gallery: every image above the threshold, sortable by name,
//! score, normalised score or defect location. Clicking a name opens the detail view.
use super::paint::REJECT;
use super::state::RejectColumn;
use super::workstation::{Action, Workstation};
use egui::{RichText, Ui};
use egui_extras::{Column, TableBuilder};

pub fn show(ui: &mut Ui, ws: &mut Workstation, actions: &mut Vec<Action>) {
    let rows: Vec<usize> = ws.insp.rejects().to_vec();
    ui.horizontal(|ui| {
        ui.label(
            RichText::new(format!("Rejects ({})", rows.len()))
                .strong()
                .color(REJECT),
        );
        ui.weak("click a name to inspect");
    });
    ui.separator();
    if rows.is_empty() {
        ui.weak(if ws.insp.bank.is_some() {
            "No image is above the threshold."
        } else {
            "Nothing scored yet."
        });
        return;
    }
    let (sort_col, ascending) = ws.insp.reject_sort();
    let arrow = if ascending { "asc" } else { "desc" };
    let selected = ws.selected;
    let scroll_to = selected.and_then(|s| rows.iter().position(|&r| r == s));
    let mut table = TableBuilder::new(ui)
        .id_salt("rejects_table")
        .striped(true)
        .resizable(true)
        .cell_layout(egui::Layout::left_to_right(egui::Align::Center))
        .column(Column::remainder().at_least(110.0).clip(true))
        .column(Column::auto().at_least(58.0))
        .column(Column::auto().at_least(48.0))
        .column(Column::auto().at_least(96.0))
        .min_scrolled_height(0.0);
    // Follow the selection once per change (arrow keys in the detail view), then let the
    // operator scroll freely.
    if ws.rejects_scrolled_for != selected {
        ws.rejects_scrolled_for = selected;
        if let Some(r) = scroll_to {
            table = table.scroll_to_row(r, None);
        }
    }
    table
        .header(22.0, |mut header| {
            for (col, text) in [
                (RejectColumn::Name, "Name"),
                (RejectColumn::Score, "Score"),
                (RejectColumn::Normalized, "Norm."),
                (RejectColumn::Location, "Location"),
            ] {
                header.col(|ui| {
                    let r = ui
                        .selectable_label(sort_col == col, text)
                        .on_hover_text("Sort by this column; again to reverse");
                    if r.clicked() {
                        actions.push(Action::SortRejects(col));
                    }
                    if sort_col == col {
                        ui.weak(arrow);
                    }
                });
            }
        })
        .body(|body| {
            body.rows(20.0, rows.len(), |mut row| {
                let i = rows[row.index()];
                let item = &ws.insp.items[i];
                let Some(ins) = item.inspection() else {
                    return;
                };
                row.set_selected(selected == Some(i));
                row.col(|ui| {
                    if ui
                        .selectable_label(selected == Some(i), &item.name)
                        .on_hover_text(item.path.display().to_string())
                        .clicked()
                    {
                        actions.push(Action::OpenDetail(i));
                    }
                });
                row.col(|ui| {
                    ui.monospace(format!("{:.3}", ins.score));
                });
                row.col(|ui| {
                    ui.monospace(format!("{:.2}", ins.normalized));
                });
                row.col(|ui| {
                    let [x, y, w, h] = ins.top_patch.box_original;
                    ui.monospace(format!("{x},{y} {w}×{h}"));
                });
            });
        });
}
