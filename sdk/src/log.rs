//! Logging to the gateway's log.
//!
//! Inside the component every message goes to the host's `log` import and is tagged
//! there with the policy's name. In a native build (unit tests) messages are kept per
//! thread, readable with [`crate::testing::take_logs`], and echoed to stderr (which
//! the test harness shows for failing tests only).
//!
//! ```
//! use portcullis_sdk::log;
//!
//! log::info!("configured {} rules", 3);
//! log::warn("settings use a deprecated key");
//! ```
//!
//! Logging is a host call: keep it out of the per-statement path unless it says
//! something an operator needs (the gateway audits every decision by itself).

use crate::LogLevel;

/// Writes `message` at `level`.
pub fn log(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::__bindings::log(level.into(), message);
    #[cfg(not(target_arch = "wasm32"))]
    native::record(level, message);
}

/// Writes `message` at debug level.
pub fn debug(message: impl AsRef<str>) {
    log(LogLevel::Debug, message.as_ref());
}

/// Writes `message` at info level.
pub fn info(message: impl AsRef<str>) {
    log(LogLevel::Info, message.as_ref());
}

/// Writes `message` at warning level.
pub fn warn(message: impl AsRef<str>) {
    log(LogLevel::Warn, message.as_ref());
}

/// Writes `message` at error level.
pub fn error(message: impl AsRef<str>) {
    log(LogLevel::Error, message.as_ref());
}

#[doc(inline)]
pub use crate::__portcullis_log_debug as debug;
#[doc(inline)]
pub use crate::__portcullis_log_error as error;
#[doc(inline)]
pub use crate::__portcullis_log_info as info;
#[doc(inline)]
pub use crate::__portcullis_log_warn as warn;

/// Logs a `format!`-style message at debug level: `log::debug!("x = {x}")`.
#[doc(hidden)]
#[macro_export]
macro_rules! __portcullis_log_debug {
    ($($arg:tt)+) => {
        $crate::log::log($crate::LogLevel::Debug, &::std::format!($($arg)+))
    };
}

/// Logs a `format!`-style message at info level: `log::info!("x = {x}")`.
#[doc(hidden)]
#[macro_export]
macro_rules! __portcullis_log_info {
    ($($arg:tt)+) => {
        $crate::log::log($crate::LogLevel::Info, &::std::format!($($arg)+))
    };
}

/// Logs a `format!`-style message at warning level: `log::warn!("x = {x}")`.
#[doc(hidden)]
#[macro_export]
macro_rules! __portcullis_log_warn {
    ($($arg:tt)+) => {
        $crate::log::log($crate::LogLevel::Warn, &::std::format!($($arg)+))
    };
}

/// Logs a `format!`-style message at error level: `log::error!("x = {x}")`.
#[doc(hidden)]
#[macro_export]
macro_rules! __portcullis_log_error {
    ($($arg:tt)+) => {
        $crate::log::log($crate::LogLevel::Error, &::std::format!($($arg)+))
    };
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod native {
    use std::cell::RefCell;

    use crate::LogLevel;

    thread_local! {
        static LOGS: RefCell<Vec<(LogLevel, String)>> = const { RefCell::new(Vec::new()) };
    }

    pub(crate) fn record(level: LogLevel, message: &str) {
        eprintln!("[policy {level}] {message}");
        LOGS.with(|l| l.borrow_mut().push((level, message.to_string())));
    }

    pub(crate) fn take() -> Vec<(LogLevel, String)> {
        LOGS.with(|l| std::mem::take(&mut *l.borrow_mut()))
    }
}
