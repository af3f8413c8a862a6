//! Reading a `multipart/form-data` body, as `POST /files` receives it.
//!
//! Written out here because the mock's server hands each handler the whole body at once and
//! the form has two fields; the multipart crates on crates.io are built around async streams.

/// One field of the form.
#[derive(Debug, PartialEq)]
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub data: Vec<u8>,
}

/// The boundary named by a `Content-Type: multipart/form-data; boundary=...` header.
fn boundary_of(content_type: &str) -> Option<String> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (name, value) = p.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_string())
    })
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// `name="x"` out of a `Content-Disposition` header's value.
fn disposition_param(value: &str, param: &str) -> Option<String> {
    value.split(';').find_map(|p| {
        let (name, v) = p.trim().split_once('=')?;
        (name.trim() == param).then(|| v.trim().trim_matches('"').to_string())
    })
}

/// The fields of `body`, or why it is not a form.
pub fn parse(content_type: &str, body: &[u8]) -> Result<Vec<Part>, String> {
    let boundary = boundary_of(content_type).ok_or("the body is not multipart/form-data with a boundary")?;
    let delimiter = format!("--{boundary}").into_bytes();
    let mut at = find(body, &delimiter, 0).ok_or("the body has no first boundary")? + delimiter.len();
    let mut parts = Vec::new();
    loop {
        if body.get(at..at + 2) == Some(b"--") {
            return Ok(parts);
        }
        let headers_start = at + 2; // CRLF after the boundary
        let headers_end = find(body, b"\r\n\r\n", headers_start).ok_or("a part has no end of headers")?;
        let headers = String::from_utf8_lossy(&body[headers_start..headers_end]).to_string();
        let data_start = headers_end + 4;
        let mut closing = b"\r\n".to_vec();
        closing.extend_from_slice(&delimiter);
        let data_end = find(body, &closing, data_start).ok_or("a part has no closing boundary")?;
        let disposition = headers
            .lines()
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(n, _)| n.trim().eq_ignore_ascii_case("content-disposition"))
                    .map(|(_, v)| v.to_string())
            })
            .ok_or("a part has no Content-Disposition")?;
        parts.push(Part {
            name: disposition_param(&disposition, "name").ok_or("a part has no name")?,
            filename: disposition_param(&disposition, "filename"),
            data: body[data_start..data_end].to_vec(),
        });
        at = data_end + closing.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_fields_are_read_with_their_bytes() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--XyZ\r\n\
Content-Disposition: form-data; name=\"file\"; filename=\"b.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n{\"a\":1}\n{\"b\":2}\n\r\n--XyZ--\r\n";
        let parts = parse("multipart/form-data; boundary=XyZ", body).unwrap();
        assert_eq!(
            parts[0],
            Part {
                name: "purpose".into(),
                filename: None,
                data: b"batch".to_vec()
            }
        );
        assert_eq!(parts[1].filename.as_deref(), Some("b.jsonl"));
        assert_eq!(parts[1].data, b"{\"a\":1}\n{\"b\":2}\n");
    }

    #[test]
    fn a_body_without_the_boundary_is_refused() {
        assert!(parse("application/json", b"{}").is_err());
        assert!(parse("multipart/form-data; boundary=a", b"nothing here").is_err());
    }
}
