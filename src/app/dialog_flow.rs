//! Asking the operator for a path: the native file dialog, or a text field in the toolbar on
//! systems that cannot show one. One question at a time; the answer comes back with what it
//! was for, and the workstation acts on it.
use super::dialogs::{DialogAnswer, DialogOutcome, Dialogs};
use std::path::PathBuf;

/// What a path is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DialogPurpose {
    OpenFolder,
    InboxFolder,
    Export,
}

/// Where no file dialog can be shown, the toolbar asks for the path in a text field.
#[derive(Clone, Debug)]
pub(crate) struct PathPrompt {
    purpose: DialogPurpose,
    pub(crate) text: String,
}

impl PathPrompt {
    pub(crate) fn question(&self) -> &'static str {
        match self.purpose {
            DialogPurpose::OpenFolder => "Folder of images to inspect:",
            DialogPurpose::InboxFolder => "Folder to watch for new images:",
            DialogPurpose::Export => "Save the rejects as CSV to:",
        }
    }

    pub(crate) fn confirm(&self) -> &'static str {
        match self.purpose {
            DialogPurpose::OpenFolder => "Open",
            DialogPurpose::InboxFolder => "Watch",
            DialogPurpose::Export => "Save",
        }
    }
}

/// A dialog that is open: its answer arrives on `answer`.
struct OpenDialog {
    purpose: DialogPurpose,
    answer: DialogAnswer,
    /// Where the text field starts if the dialog turns out to be unavailable.
    suggestion: PathBuf,
}

/// The dialog service and the question being asked.
pub(crate) struct DialogFlow {
    dialogs: Box<dyn Dialogs>,
    open: Option<OpenDialog>,
    /// Set once a dialog could not be shown: later questions go straight to the text field.
    unavailable: bool,
    prompt: Option<PathPrompt>,
}

impl DialogFlow {
    pub(crate) fn new(dialogs: Box<dyn Dialogs>) -> DialogFlow {
        DialogFlow {
            dialogs,
            open: None,
            unavailable: false,
            prompt: None,
        }
    }

    /// Asks for a path: the native dialog, or the text field where there is none.
    /// `suggestion` pre-fills the text field. Ignored while a dialog is open.
    pub(crate) fn ask(
        &mut self,
        purpose: DialogPurpose,
        start: Option<PathBuf>,
        suggestion: PathBuf,
    ) {
        if self.open.is_some() {
            return;
        }
        if self.unavailable {
            self.prompt(purpose, suggestion);
            return;
        }
        let answer = match purpose {
            DialogPurpose::OpenFolder | DialogPurpose::InboxFolder => {
                self.dialogs.pick_folder(start.as_deref())
            }
            DialogPurpose::Export => {
                let name = suggestion
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "rejects.csv".into());
                self.dialogs.save_csv(start.as_deref(), &name)
            }
        };
        self.open = Some(OpenDialog {
            purpose,
            answer,
            suggestion,
        });
    }

    /// The path the open dialog answered, once it has; an unavailable dialog turns into the
    /// text field.
    pub(crate) fn poll(&mut self) -> Option<(DialogPurpose, PathBuf)> {
        let outcome = match self.open.as_ref()?.answer.try_recv() {
            Ok(a) => a,
            Err(crossbeam_channel::TryRecvError::Empty) => return None,
            Err(crossbeam_channel::TryRecvError::Disconnected) => DialogOutcome::Cancelled,
        };
        let open = self.open.take()?;
        match outcome {
            DialogOutcome::Chosen(path) => return Some((open.purpose, path)),
            DialogOutcome::Cancelled => {}
            DialogOutcome::Unavailable => {
                self.unavailable = true;
                self.prompt(open.purpose, open.suggestion);
            }
        }
        None
    }

    /// The text field's path, when confirmed with something in it (else it stays open).
    pub(crate) fn submit_prompt(&mut self) -> Option<(DialogPurpose, PathBuf)> {
        let p = self.prompt.take()?;
        let text = p.text.trim();
        if text.is_empty() {
            self.prompt = Some(p);
            return None;
        }
        Some((p.purpose, PathBuf::from(text)))
    }

    pub(crate) fn cancel_prompt(&mut self) {
        self.prompt = None;
    }

    /// The text field, for the toolbar to draw and edit.
    pub(crate) fn prompt_mut(&mut self) -> Option<&mut PathPrompt> {
        self.prompt.as_mut()
    }

    fn prompt(&mut self, purpose: DialogPurpose, suggestion: PathBuf) {
        self.prompt = Some(PathPrompt {
            purpose,
            text: suggestion.display().to_string(),
        });
    }
}
