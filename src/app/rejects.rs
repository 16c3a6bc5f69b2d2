//! The reject list beside the gallery: every image above the threshold, sortable by name,
//! score, normalised score or defect location. Clicking a name opens the detail view.
use super::actions::Action;
use super::paint::REJECT;
use super::state::{Inspector, RejectColumn};
use super::workstation::Selection;
use egui::{RichText, Ui};
use egui_extras::{Column, TableBuilder};

pub(crate) fn show(
    ui: &mut Ui,
    insp: &mut Inspector,
    sel: &mut Selection,
    teach_busy: bool,
    actions: &mut Vec<Action>,
) {
    let rows: Vec<usize> = insp.rejects().to_vec();
    ui.horizontal(|ui| {
        ui.label(
            RichText::new(format!("Rejects ({})", rows.len()))
                .strong()
                .color(REJECT),
        );
        ui.weak("click a name to inspect, tick rows to teach");
    });
    // Rows ticked that are still listed (a rescore can drop some).
    let ticked: Vec<usize> = rows
        .iter()
        .copied()
        .filter(|r| sel.checked.contains(r))
        .collect();
    if !ticked.is_empty() {
        ui.horizontal(|ui| {
            super::teach::buttons(ui, &ticked, teach_busy, actions);
        });
    }
    ui.separator();
    if rows.is_empty() {
        ui.weak(if insp.bank.is_some() {
            "No image is above the threshold."
        } else {
            "Nothing scored yet."
        });
        return;
    }
    let (sort_col, ascending) = insp.reject_sort();
    let selected = sel.selected;
    let scroll_to = selected.and_then(|s| rows.iter().position(|&r| r == s));
    let mut table = TableBuilder::new(ui)
        .id_salt("rejects_table")
        .striped(true)
        .resizable(true)
        .cell_layout(egui::Layout::left_to_right(egui::Align::Center))
        .column(Column::exact(18.0))
        // Not resizable, so it keeps taking what the other columns leave (a resizable one
        // would keep its first-frame width and leave a gap at the right).
        .column(
            Column::remainder()
                .at_least(140.0)
                .clip(true)
                .resizable(false),
        )
        .column(Column::auto().at_least(58.0))
        .column(Column::auto().at_least(44.0))
        .column(Column::auto().at_least(64.0))
        .min_scrolled_height(0.0);
    // Follow the selection once per change (arrow keys in the detail view), then let the
    // operator scroll freely.
    if sel.rejects_scrolled_for != selected {
        sel.rejects_scrolled_for = selected;
        if let Some(r) = scroll_to {
            table = table.scroll_to_row(r, None);
        }
    }
    table
        .header(22.0, |mut header| {
            header.col(|_| {});
            for (col, text) in [
                (RejectColumn::Name, "Name"),
                (RejectColumn::Score, "Score"),
                (RejectColumn::Normalized, "Norm."),
                (RejectColumn::Location, "Location"),
            ] {
                header.col(|ui| {
                    let r = ui
                        .selectable_label(sort_col == col, text)
                        .on_hover_text(match col {
                            RejectColumn::Location => {
                                "Top-left corner (x, y in pixels) of the most anomalous patch. \
                                 Sort by this column; again to reverse"
                            }
                            _ => "Sort by this column; again to reverse",
                        });
                    if r.clicked() {
                        actions.push(Action::SortRejects(col));
                    }
                    if sort_col == col {
                        sort_arrow(ui, ascending);
                    }
                });
            }
        })
        .body(|body| {
            body.rows(20.0, rows.len(), |mut row| {
                let i = rows[row.index()];
                let item = &insp.items[i];
                let Some(ins) = item.inspection() else {
                    return;
                };
                row.set_selected(selected == Some(i));
                row.col(|ui| {
                    let mut on = sel.checked.contains(&i);
                    let label = format!("Tick {}", item.name);
                    let r = ui.add(egui::Checkbox::without_text(&mut on));
                    r.widget_info(|| {
                        egui::WidgetInfo::selected(egui::Role::CheckBox, true, on, &label)
                    });
                    let r = r.on_hover_text("Ticked rows: Mark as good / Confirm defect");
                    if r.clicked() {
                        actions.push(Action::ToggleChecked(i));
                    }
                });
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
                    ui.monospace(format!("{x},{y}"))
                        .on_hover_text(format!("{w}×{h} px patch at x {x}, y {y}"));
                });
            });
        });
}

/// A small triangle beside the sorted column's name: up for ascending, down for descending.
/// Painted, since the bundled fonts have no arrow glyphs.
fn sort_arrow(ui: &mut Ui, ascending: bool) {
    let (rect, resp) = ui.allocate_exact_size(egui::vec2(9.0, 9.0), egui::Sense::hover());
    let (top, bottom) = (rect.top(), rect.bottom());
    let (l, c, r) = (rect.left(), rect.center().x, rect.right());
    let points = if ascending {
        vec![
            egui::pos2(l, bottom),
            egui::pos2(r, bottom),
            egui::pos2(c, top),
        ]
    } else {
        vec![
            egui::pos2(l, top),
            egui::pos2(r, top),
            egui::pos2(c, bottom),
        ]
    };
    let color = ui.visuals().weak_text_color();
    ui.painter().add(egui::Shape::convex_polygon(
        points,
        color,
        egui::Stroke::NONE,
    ));
    resp.on_hover_text(if ascending { "ascending" } else { "descending" });
}
