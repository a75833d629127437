//! The edge of operator logging: [`Logger`] filters
//! [`LogRecord`](dask_core::log::LogRecord)s by level, stamps them with the
//! wall-clock time (UTC, RFC 3339, milliseconds) and writes one line each
//! to standard error, as text or JSON (`--log-level`, `--log-format`).

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use dask_core::log::{Level, LogRecord};

/// How a [`Logger`] writes a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `TIME LEVEL component: message`.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// Reads `text` or `json`.
    pub fn from_name(name: &str) -> Option<LogFormat> {
        match name {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// Writes records at or above a level to standard error.
#[derive(Debug, Clone)]
pub struct Logger {
    component: &'static str,
    /// `None`: writes nothing.
    level: Option<Level>,
    format: LogFormat,
}

impl Logger {
    /// A logger for `component` (`dask-scheduler`, `dask-worker`).
    pub fn new(component: &'static str, level: Level, format: LogFormat) -> Logger {
        Logger {
            component,
            level: Some(level),
            format,
        }
    }

    /// A logger that writes nothing (library use, tests).
    pub fn off(component: &'static str) -> Logger {
        Logger {
            component,
            level: None,
            format: LogFormat::Text,
        }
    }

    /// Whether records of `level` are written.
    pub fn enabled(&self, level: Level) -> bool {
        self.level.is_some_and(|min| level >= min)
    }

    /// The line `record` is written as (without the newline), or `None`
    /// when its level is below the logger's.
    pub fn line(&self, record: &LogRecord, time: SystemTime) -> Option<String> {
        if !self.enabled(record.level) {
            return None;
        }
        let time = rfc3339(time);
        Some(match self.format {
            LogFormat::Text => record.to_text(&time, self.component),
            LogFormat::Json => record.to_json(&time, self.component),
        })
    }

    /// Writes `record` to standard error (one write, so lines of threads
    /// do not interleave).
    pub fn log(&self, record: &LogRecord) {
        if let Some(mut line) = self.line(record, SystemTime::now()) {
            line.push('\n');
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }
}

/// `2026-12-05T11:33:13.123Z` (UTC; times before 1970 print as 1970).
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_are_utc_rfc3339_with_milliseconds() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (a leap day of a year divisible by 400).
        let t = UNIX_EPOCH + Duration::from_millis(951_782_400_123);
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.123Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_796_470_393);
        assert_eq!(rfc3339(t), "2026-12-05T11:33:13.000Z");
    }

    #[test]
    fn a_logger_writes_its_level_and_above_in_its_format() {
        let record =
            LogRecord::new(Level::Info, "worker-joined", "worker w1 joined").with("worker", "w1");
        let text = Logger::new("dask-scheduler", Level::Info, LogFormat::Text);
        let line = text.line(&record, UNIX_EPOCH).unwrap();
        assert_eq!(
            line,
            "1970-01-01T00:00:00.000Z INFO  dask-scheduler: worker w1 joined"
        );
        let quiet = Logger::new("dask-scheduler", Level::Warn, LogFormat::Text);
        assert_eq!(quiet.line(&record, UNIX_EPOCH), None);
        let json = Logger::new("dask-scheduler", Level::Debug, LogFormat::Json);
        let line = json.line(&record, UNIX_EPOCH).unwrap();
        assert!(line.starts_with("{\"time\":\"1970-01-01T00:00:00.000Z\",\"level\":\"info\""));
        assert!(line.ends_with("\"worker\":\"w1\"}"));
        assert_eq!(Logger::off("x").line(&record, UNIX_EPOCH), None);
    }
}
