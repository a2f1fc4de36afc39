//! What the ACL file and the password file share: both are Mosquitto's line-oriented files,
//! read whole and then taken a line at a time, with blank lines and `#` comments skipped.
//! Only the reading lives here; what a line means is each file's own parser.

use std::path::Path;

use crate::BrokerError;

/// The whole text of a rule file; `kind` ("ACL", "password") names it in the error.
pub(crate) fn read(kind: &'static str, path: &Path) -> Result<String, BrokerError> {
    std::fs::read_to_string(path).map_err(|source| BrokerError::ReadFile {
        kind,
        path: path.to_path_buf(),
        source,
    })
}

/// The lines that say something, trimmed, each with its 1-based number for error messages:
/// Mosquitto skips blank lines and lines whose first non-blank character is `#`.
pub(crate) fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(index, raw)| (index + 1, raw.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_blanks_and_comments_and_keeps_line_numbers() {
        let text = "# header\n\n  user a  \n\t# indented comment\ntopic x\n";
        let got: Vec<_> = lines(text).collect();
        assert_eq!(got, [(3, "user a"), (5, "topic x")]);
    }

    #[test]
    fn a_missing_file_names_its_kind_and_path() {
        let e = read("ACL", Path::new("/nonexistent/mqpaxos.acl")).expect_err("missing file");
        assert!(
            e.to_string()
                .starts_with("cannot read the ACL file /nonexistent/mqpaxos.acl: "),
            "{e}"
        );
    }
}
