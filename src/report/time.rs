//! Timestamps for reports and bank metadata.

/// The current UTC time as RFC 3339 with whole seconds, e.g. `2026-12-05T01:42:51Z`.
pub fn now_rfc3339() -> String {
    let now = ::time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&::time::format_description::well_known::Rfc3339)
        // Formatting a valid UTC time as RFC 3339 cannot fail for years 0..=9999.
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_shape() {
        let s = super::now_rfc3339();
        assert_eq!(s.len(), 20, "{s}");
        assert!(s.ends_with('Z') && s.as_bytes()[10] == b'T', "{s}");
    }
}
