//! `check`: every configuration found in the inputs, through the filter's own validator
//! (`FilterConfig::from_json`, whose error is the line the plugin logs), then the warnings.

use kiali_header_auth::config::FilterConfig;
use serde::Serialize;

use crate::explain::mode_name;
use crate::input::{Found, Scan};
use crate::warnings::{warnings, Warning};

#[derive(Debug, Clone, Serialize)]
pub struct WarningReport {
    pub code: &'static str,
    pub message: String,
    /// Named by `--allow`: reported, never a failure.
    pub allowed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConfigReport {
    pub origin: String,
    pub valid: bool,
    /// `strip-only`, `map identity`, `full impersonation`; absent when invalid.
    pub mode: Option<&'static str>,
    /// The plugin's own message (what it logs when it refuses to start).
    pub error: Option<String>,
    pub warnings: Vec<WarningReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: bool,
    pub strict: bool,
    pub configurations: Vec<ConfigReport>,
    /// Inputs that could not be read (each is a failure).
    pub unreadable: Vec<String>,
    pub skipped: Vec<String>,
}

pub fn check_one(found: &Found, allow: &[String]) -> ConfigReport {
    match FilterConfig::from_json(found.json.as_bytes()) {
        Err(error) => ConfigReport {
            origin: found.origin.clone(),
            valid: false,
            mode: None,
            error: Some(std::iter::once(error.to_string()).chain(found.hints.iter().cloned()).collect::<Vec<_>>().join("; ")),
            warnings: Vec::new(),
        },
        Ok(config) => ConfigReport {
            origin: found.origin.clone(),
            valid: true,
            mode: Some(mode_name(&config)),
            error: None,
            warnings: warnings(&config, &found.host)
                .into_iter()
                .map(|Warning { code, message }| WarningReport { code, message, allowed: allow.iter().any(|a| a == code) })
                .collect(),
        },
    }
}

pub fn check(scan: Scan, strict: bool, allow: &[String]) -> Report {
    let configurations: Vec<ConfigReport> = scan.found.iter().map(|found| check_one(found, allow)).collect();
    let failing_warning = |report: &ConfigReport| strict && report.warnings.iter().any(|w| !w.allowed);
    let ok = !configurations.is_empty()
        && scan.unreadable.is_empty()
        && configurations.iter().all(|report| report.valid && !failing_warning(report));
    Report { ok, strict, configurations, unreadable: scan.unreadable, skipped: scan.skipped }
}

/// The text form: results on stdout, errors on stderr.
/// `quiet`: only what fails or needs attention, and the summary line.
pub fn render_text(report: &Report, quiet: bool, out: &mut String, err: &mut String) {
    for line in &report.unreadable {
        err.push_str(&format!("error: {line}\n"));
    }
    for config in &report.configurations {
        match (&config.error, config.mode) {
            (Some(error), _) => err.push_str(&format!("{}: error: {error}\n", config.origin)),
            (None, Some(_)) if quiet && config.warnings.iter().all(|w| w.allowed) => continue,
            (None, Some(mode)) => out.push_str(&format!("{}: valid ({mode})\n", config.origin)),
            (None, None) => {}
        }
        for warning in config.warnings.iter().filter(|w| !(quiet && w.allowed)) {
            let tail = if warning.allowed {
                " (allowed)"
            } else if report.strict {
                " (--strict: fails)"
            } else {
                ""
            };
            out.push_str(&format!("  warning[{}]{tail}: {}\n", warning.code, warning.message));
        }
    }
    if !quiet && !report.skipped.is_empty() {
        out.push_str(&format!(
            "skipped {} document(s) without a configuration of this filter (--output json lists them)\n",
            report.skipped.len()
        ));
    }
    let invalid = report.configurations.iter().filter(|c| !c.valid).count();
    let warned: usize = report.configurations.iter().map(|c| c.warnings.iter().filter(|w| !w.allowed).count()).sum();
    if report.configurations.is_empty() {
        err.push_str("error: no kiali-header-auth configuration found in the inputs\n");
    }
    out.push_str(&format!(
        "{} configuration(s): {invalid} invalid, {warned} warning(s){}: {}\n",
        report.configurations.len(),
        if report.strict { " (--strict)" } else { "" },
        if report.ok { "ok" } else { "FAILED" }
    ));
}
