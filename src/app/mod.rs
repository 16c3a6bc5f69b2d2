//! The operator workstation (`patchcore gui`): pick a category, see every image of a folder
//! with its heatmap and decision, move the threshold, inspect the worst parts, export rejects.
//!
//! Threads: the GUI thread draws and never touches libtorch; one [`worker`] thread owns the
//! device and the loaded models; a small [`decode`] pool makes thumbnails; the [`inbox`]
//! poller, short tasks (folder listing, CSV export) and the settings writer
//! ([`settings_store`]) run on their own threads. They all talk to the GUI over crossbeam
//! channels with plain-data messages ([`protocol`]) and wake it with `request_repaint`.
mod actions;
mod banks;
pub mod catalog;
pub mod colormap;
mod controls;
pub mod decode;
mod detail;
mod dialog_flow;
pub mod dialogs;
mod frame;
pub mod frame_log;
mod gallery;
mod histogram;
pub mod inbox;
pub mod job_log;
mod jobs;
mod paint;
pub mod protocol;
mod rejects;
mod review;
mod review_controls;
mod roi_editor;
pub mod settings;
pub mod settings_store;
pub mod stand_in_backend;
pub mod state;
mod teach;
mod textures;
mod toolbar;
pub mod torch_backend;
pub mod worker;
pub mod workstation;
mod zoom;

pub use dialogs::{DialogOutcome, Dialogs, NativeDialogs, NoDialogs, ScriptedDialogs};
pub use protocol::{Backend, BackendFactory, JobId, Reply, Request};
pub use settings::Settings;
pub use stand_in_backend::StandInBackend;
pub use torch_backend::TorchBackend;
pub use workstation::{Services, Workstation};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Options of `patchcore gui`.
#[derive(Clone, Debug)]
pub struct GuiOptions {
    /// Folder listed for bank files (one category per file). Default: the remembered one,
    /// else `models`.
    pub models_dir: Option<PathBuf>,
    /// Folder with the backbone weights files; `None` = `models_dir` (banks beside weights).
    pub weights_dir: Option<PathBuf>,
    /// "auto" (CUDA when available), "cpu", "cuda" or "cuda:N"; parsed on the worker thread.
    pub device: String,
    /// Watch this folder and score new images as they arrive.
    pub inbox: Option<PathBuf>,
    /// Settings file; `None` = `<platform config dir>/patchcore/gui.json`. Tests point it at a
    /// temp folder.
    pub settings_path: Option<PathBuf>,
    /// Images per forward pass on the device.
    pub batch_size: usize,
    /// How often the inbox folder is listed.
    pub inbox_poll: Duration,
    /// libtorch's intra-op threads on the CPU (0 = libtorch's default, one per core).
    pub torch_threads: usize,
}

impl Default for GuiOptions {
    fn default() -> Self {
        GuiOptions {
            models_dir: None,
            weights_dir: None,
            device: "auto".into(),
            inbox: None,
            settings_path: None,
            batch_size: 8,
            inbox_poll: Duration::from_secs(1),
            torch_threads: torch_backend::default_threads(),
        }
    }
}

/// The eframe app: a thin shell around [`Workstation`].
pub struct GuiApp {
    pub workstation: Workstation,
    /// Frame times, when `PATCHCORE_FRAME_LOG` asks for them.
    pub frame_log: Option<frame_log::FrameLog>,
}

impl eframe::App for GuiApp {
    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        if let Some(log) = &mut self.frame_log {
            log.frame(frame.info().cpu_usage);
        }
        self.workstation.ui(ui);
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        self.workstation.flush_settings();
    }
}

/// Opens the workstation window with the real libtorch worker; returns when it is closed.
pub fn run(mut opts: GuiOptions) -> anyhow::Result<()> {
    let settings = load_settings(&opts);
    let models_dir = opts
        .models_dir
        .clone()
        .or_else(|| settings.models_dir.clone())
        .unwrap_or_else(|| PathBuf::from("models"));
    opts.models_dir = Some(models_dir.clone());
    let weights = opts.weights_dir.clone().unwrap_or(models_dir);
    let backend = TorchBackend::factory(
        weights,
        opts.device.clone(),
        opts.batch_size,
        opts.torch_threads,
    );
    run_with(opts, move |ctx| Services {
        backend,
        dialogs: Box::new(NativeDialogs {
            repaint: repaint_for(ctx),
        }),
    })
}

/// Opens the window with the given services (e.g. the stand-in backend for a demo).
pub fn run_with(
    opts: GuiOptions,
    services: impl FnOnce(&egui::Context) -> Services + 'static,
) -> anyhow::Result<()> {
    let w = load_settings(&opts).window;
    let mut viewport = egui::ViewportBuilder::default()
        .with_title("PatchCore inspection")
        .with_app_id("patchcore")
        .with_inner_size([w.width.max(960.0), w.height.max(600.0)])
        .with_min_inner_size([960.0, 600.0])
        .with_maximized(w.maximized);
    if let (Some(x), Some(y)) = (w.x, w.y) {
        viewport = viewport.with_position([x, y]);
    }
    let native = eframe::NativeOptions {
        viewport,
        ..Default::default()
    };
    eframe::run_native(
        "patchcore",
        native,
        Box::new(move |cc| {
            let services = services(&cc.egui_ctx);
            Ok(Box::new(GuiApp {
                workstation: Workstation::new(opts, services),
                frame_log: frame_log::FrameLog::from_env(),
            }))
        }),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the workstation window: {e}"))
}

fn load_settings(opts: &GuiOptions) -> Settings {
    opts.settings_path
        .clone()
        .or_else(settings::default_path)
        .map(|p| Settings::load(&p).0)
        .unwrap_or_default()
}

/// A repaint callback for background threads.
pub fn repaint_for(ctx: &egui::Context) -> worker::Repaint {
    let ctx = ctx.clone();
    Arc::new(move || ctx.request_repaint())
}
