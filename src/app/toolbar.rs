//! The top bar: category picker, folder, inbox, export, scoring progress, and notices. Each
//! error is shown next to the control it concerns.
use super::actions::Action;
use super::banks::BankCatalog;
use super::dialog_flow::PathPrompt;
use super::jobs::{InboxWatch, Jobs};
use super::paint::{ACCEPT, ERROR, REJECT};
use super::state::{BankInfo, Inspector};
use egui::{Button, ComboBox, Label, ProgressBar, RichText, Ui};

/// What the top bar shows: the catalogue, the jobs, the open folder, the path prompt and the
/// notices. Only the prompt's text and the inspector's cached counts change while drawing.
pub(crate) struct Toolbar<'a> {
    pub(crate) catalog: &'a BankCatalog,
    pub(crate) jobs: &'a Jobs,
    pub(crate) insp: &'a mut Inspector,
    pub(crate) prompt: Option<&'a mut PathPrompt>,
    pub(crate) folder_error: Option<&'a str>,
    pub(crate) notices: &'a [String],
}

pub(crate) fn show(ui: &mut Ui, bar: Toolbar<'_>, actions: &mut Vec<Action>) {
    let Toolbar {
        catalog,
        jobs,
        insp,
        prompt,
        folder_error,
        notices,
    } = bar;
    ui.add_space(4.0);
    ui.horizontal_wrapped(|ui| {
        category_picker(ui, catalog, insp.bank.as_ref(), actions);
        ui.separator();
        folder(ui, jobs, insp, folder_error, actions);
        ui.separator();
        inbox(ui, &jobs.inbox, actions);
        ui.separator();
        export(ui, jobs, insp.bank.is_some(), actions);
        ui.separator();
        progress(ui, jobs, insp, actions);
    });
    if let Some(prompt) = prompt {
        path_prompt(ui, prompt, actions);
    }
    for (i, n) in notices.iter().enumerate() {
        ui.horizontal(|ui| {
            ui.colored_label(REJECT, n.as_str());
            if ui.small_button("Dismiss").clicked() {
                actions.push(Action::DismissNotice(i));
            }
        });
    }
    ui.add_space(2.0);
}

/// The text-field stand-in for a file dialog, on systems that cannot show one.
fn path_prompt(ui: &mut Ui, prompt: &mut PathPrompt, actions: &mut Vec<Action>) {
    ui.horizontal(|ui| {
        let label = ui.label(prompt.question());
        let width = (ui.available_width() - 200.0).clamp(200.0, 700.0);
        let r = ui
            .add(egui::TextEdit::singleline(&mut prompt.text).desired_width(width))
            .labelled_by(label.id)
            .on_hover_text("No file dialog is available on this system: type the path");
        let entered = r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        if ui.button(prompt.confirm()).clicked() || entered {
            actions.push(Action::PromptSubmit);
        }
        if ui.button("Cancel").clicked() {
            actions.push(Action::PromptCancel);
        }
    });
}

fn category_picker(
    ui: &mut Ui,
    catalog: &BankCatalog,
    bank: Option<&BankInfo>,
    actions: &mut Vec<Action>,
) {
    let label = ui.label(RichText::new("Category").strong());
    let current = bank.map(|b| b.path.as_path());
    let selected_text = match (&catalog.loading, bank) {
        (Some(p), _) => catalog
            .category_of(p)
            .map(str::to_string)
            .unwrap_or_else(|| p.display().to_string()),
        (None, Some(b)) => format!("{} ({})", b.meta.category, b.meta.backbone),
        (None, None) => "Choose a category".into(),
    };
    ComboBox::from_id_salt("category")
        .selected_text(selected_text)
        .width(220.0)
        .show_ui(ui, |ui| {
            ui.set_min_width(420.0);
            if catalog.entries.is_empty() {
                ui.label(format!(
                    "No bank files in {} — fit one with `patchcore fit`",
                    catalog.models_dir.display()
                ));
            }
            for entry in &catalog.entries {
                match &entry.meta {
                    Ok(_) => {
                        let is_current = current == Some(entry.path.as_path());
                        if ui
                            .selectable_label(is_current, entry.summary())
                            .on_hover_text(entry.path.display().to_string())
                            .clicked()
                        {
                            actions.push(Action::ChooseBank(entry.path.clone()));
                        }
                    }
                    Err(_) => {
                        ui.colored_label(ERROR, entry.summary());
                    }
                }
            }
        })
        .response
        .labelled_by(label.id)
        .on_hover_text("One entry per bank file in the models folder");
    if ui
        .add_enabled(!catalog.scanning, Button::new("Rescan"))
        .on_hover_text(format!(
            "Look for bank files in {}",
            catalog.models_dir.display()
        ))
        .clicked()
    {
        actions.push(Action::RescanModels);
    }
    if let Some(p) = &catalog.loading {
        ui.spinner();
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        ui.label(format!("Loading {}…", name.unwrap_or_default()));
    } else if let Some(e) = &catalog.load_error {
        ui.add(Label::new(RichText::new(e.to_string()).color(REJECT)).truncate())
            .on_hover_text(e);
    } else if let Some(e) = &catalog.error {
        ui.colored_label(REJECT, e.as_str());
    } else if let Some(b) = bank {
        ui.weak(format!("on {}", b.device));
    }
}

fn folder(
    ui: &mut Ui,
    jobs: &Jobs,
    insp: &Inspector,
    error: Option<&str>,
    actions: &mut Vec<Action>,
) {
    let has_bank = insp.bank.is_some();
    if ui
        .add_enabled(has_bank, Button::new("Open folder..."))
        .on_hover_text("Score another folder of images with this category")
        .on_disabled_hover_text("Choose a category first")
        .clicked()
    {
        actions.push(Action::OpenFolderDialog);
    }
    if let Some((_, dir)) = &jobs.listing {
        ui.spinner();
        ui.label(format!("Listing {}…", dir.display()));
    } else if let Some(dir) = &insp.source {
        let name = dir.display().to_string();
        ui.add(Label::new(RichText::new(&name).monospace()).truncate())
            .on_hover_text(name);
    }
    if let Some(e) = error {
        ui.colored_label(REJECT, e);
    }
}

fn inbox(ui: &mut Ui, inbox: &InboxWatch, actions: &mut Vec<Action>) {
    let mut on = inbox.is_on();
    let hover = match &inbox.dir {
        Some(d) => format!("Score new images arriving in {}", d.display()),
        None => "Choose a folder to watch for new images".into(),
    };
    if ui
        .checkbox(&mut on, "Watch inbox")
        .on_hover_text(hover)
        .changed()
    {
        actions.push(Action::InboxEnabled(on));
    }
    if on {
        if let Some(d) = &inbox.dir {
            ui.weak(d.display().to_string());
        }
    }
    if !inbox.waiting.is_empty() {
        ui.colored_label(
            ERROR,
            format!("{} new images wait for a category", inbox.waiting.len()),
        );
    }
    if let Some(e) = &inbox.error {
        ui.colored_label(REJECT, e.as_str());
    }
}

fn export(ui: &mut Ui, jobs: &Jobs, has_bank: bool, actions: &mut Vec<Action>) {
    let can = has_bank && !jobs.exporting;
    if ui
        .add_enabled(can, Button::new("Export rejects..."))
        .on_hover_text("Save the reject list as CSV")
        .clicked()
    {
        actions.push(Action::ExportDialog);
    }
    match &jobs.export_status {
        Some(Ok(msg)) => {
            ui.colored_label(ACCEPT, msg);
        }
        Some(Err(e)) => {
            ui.colored_label(REJECT, format!("Export failed: {e}"));
        }
        None if jobs.exporting => {
            ui.spinner();
        }
        None => {}
    }
}

/// Scoring progress and rate. No spinner here: an animation repaints every frame for as long
/// as scoring runs, which is the CPU the scoring needs.
fn progress(ui: &mut Ui, jobs: &Jobs, insp: &mut Inspector, actions: &mut Vec<Action>) {
    let (done, total) = jobs.overall_progress();
    if total == 0 || !insp.is_busy() {
        let c = insp.counts();
        if c.total > 0 {
            let scored = c.total - c.pending - c.failed;
            match c.failed {
                0 => ui.label(format!("{scored} images scored")),
                n => ui.label(format!("{scored} images scored, {n} not (errors)")),
            };
        }
        if let Some(last) = &jobs.meter.last {
            ui.weak(format!(
                "last {} job: {} images, {:.1} images/s",
                last.kind.name(),
                last.images,
                last.images_per_second()
            ))
            .on_hover_text("Every finished job is also a line in jobs.log beside the settings");
        }
        return;
    }
    ui.add(
        ProgressBar::new(done as f32 / total.max(1) as f32)
            .desired_width(180.0)
            .text(format!("Scoring {done} / {total}")),
    );
    if let Some(rate) = jobs.meter.rate(std::time::Instant::now()) {
        ui.label(format!("{rate:.1} images/s"))
            .on_hover_text("Images scored per second over the last 5 s");
    }
    if ui.button("Cancel").clicked() {
        actions.push(Action::CancelScoring);
    }
}
