//! Byte offsets to 1-based lines and columns, the way an editor shows them to whoever fixes the
//! backend: lines end at LF (so CRLF counts once), columns count bytes, a leading BOM is not a
//! column.

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// 1-based line and byte column of `offset` in `body`. Offsets past the end are clamped to it.
pub fn line_column(body: &[u8], offset: usize) -> (u32, u32) {
    let offset = offset.min(body.len());
    let before = body.get(..offset).unwrap_or_default();
    let newlines = memchr::memchr_iter(b'\n', before).count();
    let line_start = match memchr::memrchr(b'\n', before) {
        Some(nl) => nl + 1,
        None if body.starts_with(BOM) && offset >= BOM.len() => BOM.len(),
        None => 0,
    };
    let line = u32::try_from(newlines.saturating_add(1)).unwrap_or(u32::MAX);
    let column =
        u32::try_from(offset.saturating_sub(line_start).saturating_add(1)).unwrap_or(u32::MAX);
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_byte_is_line_one_column_one() {
        assert_eq!(line_column(b"<a/>", 0), (1, 1));
    }

    #[test]
    fn columns_count_bytes_after_the_last_newline() {
        let body = b"<R>\n  <x/>\r\n\t<y/>";
        assert_eq!(line_column(body, 6), (2, 3));
        assert_eq!(line_column(body, 13), (3, 2));
    }

    #[test]
    fn a_bom_is_not_a_column() {
        let body = b"\xEF\xBB\xBF<R/>";
        assert_eq!(line_column(body, 3), (1, 1));
        assert_eq!(line_column(body, 0), (1, 1));
    }

    #[test]
    fn offsets_past_the_end_are_clamped() {
        assert_eq!(line_column(b"a\nbc", 99), (2, 3));
    }
}
