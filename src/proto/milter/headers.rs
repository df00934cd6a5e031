//! The header section of a message as the milter protocol sees it: a
//! list of fields (name, value) followed by the body. Pure functions over
//! bytes; used to replay a message and to apply a milter's changes.

/// One header field of a message, as slices into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field<'a> {
    /// The name, before the colon.
    pub name: &'a [u8],
    /// The whole field: `name:value` with its folding and final CRLF.
    pub raw: &'a [u8],
}

impl<'a> Field<'a> {
    /// The value after the colon without the final line break; with
    /// `leading_space` false (no `SMFIP_HDR_LEADSPC`), blanks after the
    /// colon are left out. Folding line breaks become bare LF, as
    /// Sendmail and Postfix show them to milters.
    pub fn value(&self, leading_space: bool) -> Vec<u8> {
        let after = &self.raw[self.name.len() + 1..];
        let after = after.strip_suffix(b"\r\n").or_else(|| after.strip_suffix(b"\n")).unwrap_or(after);
        let after = if leading_space {
            after
        } else {
            let skip = after.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
            &after[skip..]
        };
        let mut out = Vec::with_capacity(after.len());
        let mut i = 0;
        while i < after.len() {
            if after[i] == b'\r' && after.get(i + 1) == Some(&b'\n') {
                i += 1;
                continue;
            }
            out.push(after[i]);
            i += 1;
        }
        out
    }
}

/// Split `message` into its header fields and the offset where the body
/// starts (after the empty line; the message's length if there is none).
/// A line that is neither a field nor a continuation ends the header
/// section there (it is treated as the first body line).
pub fn split(message: &[u8]) -> (Vec<Field<'_>>, usize) {
    let mut fields: Vec<Field<'_>> = Vec::new();
    let mut pos = 0;
    while pos < message.len() {
        let end = message[pos..].iter().position(|&b| b == b'\n').map_or(message.len(), |n| pos + n + 1);
        let line = &message[pos..end];
        if line == b"\r\n" || line == b"\n" {
            return (fields, end);
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some(last) = fields.last_mut() {
                // The continuation belongs to the field before it: widen
                // its slice (fields are contiguous in the message).
                let start = last.raw.as_ptr() as usize - message.as_ptr() as usize;
                last.raw = &message[start..end];
                pos = end;
                continue;
            }
            return (fields, pos);
        }
        match line.iter().position(|&b| b == b':') {
            Some(colon) if colon > 0 && line[..colon].iter().all(|&b| (33..=126).contains(&b)) => {
                fields.push(Field { name: &line[..colon], raw: line });
            }
            _ => return (fields, pos),
        }
        pos = end;
    }
    (fields, message.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_folding_and_body_offset() {
        let m = b"Subject: hi\r\n there\r\nFrom:  a@b\r\n\r\nbody\r\n";
        let (f, body) = split(m);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].name, b"Subject");
        assert_eq!(f[0].value(false), b"hi\n there");
        assert_eq!(f[1].value(false), b"a@b");
        assert_eq!(f[1].value(true), b"  a@b");
        assert_eq!(&m[body..], b"body\r\n");
    }

    #[test]
    fn a_non_field_line_starts_the_body() {
        let m = b"Subject: hi\r\nnot a field\r\nmore\r\n";
        let (f, body) = split(m);
        assert_eq!(f.len(), 1);
        assert_eq!(&m[body..], b"not a field\r\nmore\r\n");
        let (f, body) = split(b"");
        assert!(f.is_empty());
        assert_eq!(body, 0);
    }
}
