//! Header maps as a host hands them over: the headers of a map read at once, and a name's values
//! picked out of it. A leaf shared by `decide` and both Envoy shims.

/// A header map as one call returns it: the headers the guard reads (or every header), in order,
/// names lowercase. Reading it once per callback and looking values up here costs one call into
/// the host instead of one per name.
pub type HeaderPairs = [(String, String)];

/// The first value of `name`, as Envoy's single-value read would give it.
pub fn first_value<'a>(headers: &'a HeaderPairs, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Every value of `name` joined with `, ` (`None` when absent): a repeated header must not go
/// unseen behind its first value.
pub fn joined_values(headers: &HeaderPairs, name: &str) -> Option<String> {
    let mut values = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str());
    let mut joined = values.next()?.to_string();
    for value in values {
        joined.push_str(", ");
        joined.push_str(value);
    }
    Some(joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_and_joined_values() {
        let h: Vec<(String, String)> = [
            ("content-type", "text/html"),
            ("Content-Type", "text/xml"),
            ("upgrade", "websocket"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(first_value(&h, "content-type"), Some("text/html"));
        assert_eq!(
            joined_values(&h, "content-type").as_deref(),
            Some("text/html, text/xml")
        );
        assert_eq!(first_value(&h, "accept-encoding"), None);
        assert_eq!(joined_values(&h, "accept-encoding"), None);
    }
}
