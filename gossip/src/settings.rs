//! `key=value` overrides of a TOML configuration, shared by both drivers (`murmur-sim run
//! --set`, `murmur run --set`): a dotted key names a nested table entry
//! (`gossip.gamma`, `network.latency.min_ms`), and the value is TOML (`3`, `0.5`, `"ring"`,
//! `[1, 2]`, `{ kind = "normal" }`) or, when it does not parse as TOML, a bare string.

/// Why an assignment could not be read.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SettingError {
    /// No `=` in it.
    #[error("expected key=value, got {0:?}")]
    NotAnAssignment(String),
    /// An empty key, or an empty part in a dotted key.
    #[error("empty key in {0:?}")]
    EmptyKey(String),
}

/// Parses `key=value` (the value TOML, or a bare string).
pub fn parse_assignment(text: &str) -> Result<(String, toml::Value), SettingError> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| SettingError::NotAnAssignment(text.to_string()))?;
    let key = k.trim();
    if key.split('.').any(str::is_empty) {
        return Err(SettingError::EmptyKey(text.to_string()));
    }
    let v = v.trim();
    let value = toml::from_str::<toml::Table>(&format!("x = {v}"))
        .ok()
        .and_then(|mut t| t.remove("x"))
        .unwrap_or_else(|| toml::Value::String(v.to_string()));
    Ok((key.to_string(), value))
}

/// Sets the dotted `key` of `table` to `value`, creating (or replacing non-table values with)
/// the tables on the way.
pub fn set_dotted(table: &mut toml::Table, key: &str, value: toml::Value) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().expect("split yields at least one part");
    let mut t = table;
    for p in parts {
        let entry = t
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        t = entry.as_table_mut().expect("just made a table");
    }
    t.insert(last.to_string(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_parse_as_toml_or_bare_strings_and_nest() {
        let mut t = toml::Table::new();
        for a in [
            "gossip.gamma=0.25",
            "gossip.codec=threshold:0.01",
            "network.latency={kind=\"constant\", ms=2.0}",
            "rounds = 7",
        ] {
            let (k, v) = parse_assignment(a).unwrap();
            set_dotted(&mut t, &k, v);
        }
        let back: toml::Table = toml::from_str(&toml::to_string(&t).unwrap()).unwrap();
        assert_eq!(back["gossip"]["gamma"].as_float(), Some(0.25));
        assert_eq!(back["gossip"]["codec"].as_str(), Some("threshold:0.01"));
        assert_eq!(back["network"]["latency"]["ms"].as_float(), Some(2.0));
        assert_eq!(back["rounds"].as_integer(), Some(7));
        assert_eq!(
            parse_assignment("gamma"),
            Err(SettingError::NotAnAssignment("gamma".into()))
        );
        assert!(matches!(
            parse_assignment("gossip..gamma=1"),
            Err(SettingError::EmptyKey(_))
        ));
    }
}
