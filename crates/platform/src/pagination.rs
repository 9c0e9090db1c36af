//! `page_size`/`page_token` handling shared by every List RPC. A page token
//! is the opaque, URL-safe encoding of the last key returned.

use switchboard_core::Error;

pub const DEFAULT_PAGE_SIZE: usize = 100;
pub const MAX_PAGE_SIZE: usize = 1000;

/// A validated page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub size: usize,
    /// Return only keys strictly after this one.
    pub after: Option<String>,
}

pub fn page_request(page_size: i32, page_token: &str) -> Result<PageRequest, Error> {
    let size = match page_size {
        size if size < 0 => return Err(Error::invalid_field("page_size", "must not be negative")),
        0 => DEFAULT_PAGE_SIZE,
        size => (size as usize).min(MAX_PAGE_SIZE),
    };
    let after = if page_token.is_empty() {
        None
    } else {
        let bytes = hex::decode(page_token)
            .map_err(|_| Error::invalid_field("page_token", "is not a token this API issued"))?;
        Some(
            String::from_utf8(bytes)
                .map_err(|_| Error::invalid_field("page_token", "is not a token this API issued"))?,
        )
    };
    Ok(PageRequest { size, after })
}

/// Takes one page from `items` (sorted by key, at most `size + 1` long) and
/// returns it with the next page token.
pub fn page<T>(mut items: Vec<T>, request: &PageRequest, key: impl Fn(&T) -> String) -> (Vec<T>, String) {
    if items.len() <= request.size {
        return (items, String::new());
    }
    items.truncate(request.size);
    let token = items.last().map(|last| hex::encode(key(last))).unwrap_or_default();
    (items, token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_chain_until_exhausted() {
        let request = page_request(2, "").expect("request");
        let (items, token) = page(vec!["a", "b", "c"], &request, |item| (*item).to_owned());
        assert_eq!(items, vec!["a", "b"]);
        let next = page_request(2, &token).expect("next");
        assert_eq!(next.after.as_deref(), Some("b"));
        let (items, token) = page(vec!["c"], &next, |item| (*item).to_owned());
        assert_eq!((items, token.as_str()), (vec!["c"], ""));
    }

    #[test]
    fn bad_page_arguments_name_the_field() {
        assert_eq!(page_request(-1, "").expect_err("neg").field_violations[0].field, "page_size");
        assert_eq!(page_request(5, "zz").expect_err("tok").field_violations[0].field, "page_token");
        assert_eq!(page_request(5000, "").expect("big").size, MAX_PAGE_SIZE);
    }
}
