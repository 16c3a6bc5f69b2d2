//! Frame times on request (`PATCHCORE_FRAME_LOG=FILE`): one line per frame with the time since
//! the previous frame and the CPU time eframe measured for the previous frame (update, layout,
//! tessellation and painting), so responsiveness can be measured on the real window, e.g. while
//! scripts/app_throughput.sh scrolls a gallery of 10,000 images.
use std::fs::File;
use std::io::{LineWriter, Write};
use std::time::Instant;

/// The environment variable naming the frame log file.
pub const ENV: &str = "PATCHCORE_FRAME_LOG";

pub struct FrameLog {
    out: LineWriter<File>,
    last: Option<Instant>,
}

impl FrameLog {
    /// The log named by `PATCHCORE_FRAME_LOG`, if set; a file that cannot be created is
    /// reported on stderr and the app runs without it.
    pub fn from_env() -> Option<FrameLog> {
        let path = std::env::var_os(ENV)?;
        match File::create(&path) {
            Ok(f) => Some(FrameLog {
                out: LineWriter::new(f),
                last: None,
            }),
            Err(e) => {
                eprintln!("{ENV}: cannot create {}: {e}", path.to_string_lossy());
                None
            }
        }
    }

    /// Notes a frame starting now; `cpu_s` is eframe's CPU time of the previous frame.
    pub fn frame(&mut self, cpu_s: Option<f32>) {
        let now = Instant::now();
        if let Some(last) = self.last {
            let interval = (now - last).as_secs_f64() * 1000.0;
            let cpu = cpu_s.map_or(f64::NAN, |s| f64::from(s) * 1000.0);
            // A full disk only loses the measurement; the app goes on.
            let _ = writeln!(self.out, "{interval:.2} {cpu:.2}");
        }
        self.last = Some(now);
    }
}
