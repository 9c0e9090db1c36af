//! `page_size`/`page_token` handling shared by every List RPC. A page token
//! is opaque to clients and bound to the list that issued it: it encodes a
//! version, a tag of the list (the RPC and everything that selects its
//! items: parent, filters), the last key returned, and a MAC over the tag
//! and the key. A token presented to another list (another tenant's,
//! another RPC's, the same RPC with other filters), altered or made up, is
//! refused with INVALID_ARGUMENT on `page_token`: a client can resume a
//! list only where the server left it.
//!
//! The MAC's key comes from the deployment's service key
//! ([`sign_tokens_with`]), which every replica shares, so a token of one
//! replica works on another; a process without one (`dev`, tests) signs
//! with a random key of its own.

use std::sync::OnceLock;

use ring::hmac;
use sha2::{Digest, Sha256};
use switchboard_core::Error;

pub const DEFAULT_PAGE_SIZE: usize = 100;
pub const MAX_PAGE_SIZE: usize = 1000;
/// The most a page of a list whose items can be large (contacts, messages,
/// conversations, timelines) may weigh, encoded: well under the 4 MiB a
/// gRPC client takes by default. A page that would weigh more ends early,
/// with a next page token.
pub const MAX_PAGE_BYTES: usize = 2 * 1024 * 1024;

const TOKEN_VERSION: u8 = 2;
const LIST_TAG_BYTES: usize = 8;
/// The MAC's length in a token (truncated HMAC-SHA256).
const MAC_BYTES: usize = 16;

static TOKEN_KEY: OnceLock<hmac::Key> = OnceLock::new();

/// Signs this process's page tokens with a key derived from `secret` (the
/// deployment's service key). The first call wins; tokens made before it
/// used a random key.
pub fn sign_tokens_with(secret: &str) {
    let derived = Sha256::digest(format!("switchboard page tokens\0{secret}").as_bytes());
    let _ = TOKEN_KEY.set(hmac::Key::new(hmac::HMAC_SHA256, &derived));
}

fn token_key() -> &'static hmac::Key {
    TOKEN_KEY.get_or_init(|| {
        use rand::RngCore;
        let mut random = [0_u8; 32];
        rand::rng().fill_bytes(&mut random);
        hmac::Key::new(hmac::HMAC_SHA256, &random)
    })
}

/// The MAC a token carries for `key` in the list tagged `list_tag`.
fn token_mac(list_tag: &[u8], key: &[u8]) -> [u8; MAC_BYTES] {
    let mut context = hmac::Context::with_key(token_key());
    context.update(list_tag);
    context.update(key);
    let mut mac = [0; MAC_BYTES];
    mac.copy_from_slice(&context.sign().as_ref()[..MAC_BYTES]);
    mac
}

/// A validated page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub size: usize,
    /// Return only keys strictly after this one.
    pub after: Option<String>,
    /// The list's tag, put in the next page's token.
    list_tag: [u8; LIST_TAG_BYTES],
}

impl PageRequest {
    /// The first `size` items, as a store sees it (counting for a quota).
    pub fn first(size: usize) -> PageRequest {
        PageRequest::resume_after(size, None)
    }

    /// A request for `size` items after `key`, as a store sees it (for the
    /// stores' own tests; an API builds it with [`page_request`]).
    pub fn resume_after(size: usize, key: Option<&str>) -> PageRequest {
        PageRequest { size, after: key.map(str::to_owned), list_tag: [0; LIST_TAG_BYTES] }
    }
}

fn list_tag(list: &str) -> [u8; LIST_TAG_BYTES] {
    let digest = Sha256::digest(list.as_bytes());
    let mut tag = [0; LIST_TAG_BYTES];
    tag.copy_from_slice(&digest[..LIST_TAG_BYTES]);
    tag
}

/// Validates a List RPC's paging arguments for the list named by `list`
/// (e.g. `routing.ListQueues tenants/acme`).
pub fn page_request(list: &str, page_size: i32, page_token: &str) -> Result<PageRequest, Error> {
    let size = match page_size {
        size if size < 0 => return Err(Error::invalid_field("page_size", "must not be negative")),
        0 => DEFAULT_PAGE_SIZE,
        size => (size as usize).min(MAX_PAGE_SIZE),
    };
    let list_tag = list_tag(list);
    if page_token.is_empty() {
        return Ok(PageRequest { size, after: None, list_tag });
    }
    let foreign = || Error::invalid_field("page_token", "is not a token this list issued");
    let bytes = hex::decode(page_token).map_err(|_| foreign())?;
    let (header, rest) = bytes.split_at_checked(1 + LIST_TAG_BYTES).ok_or_else(foreign)?;
    if header[0] != TOKEN_VERSION || header[1..] != list_tag {
        return Err(foreign());
    }
    let (mac, key) = rest.split_at_checked(MAC_BYTES).ok_or_else(foreign)?;
    // Compared without an early exit, so the time taken tells nothing.
    let differing = token_mac(&list_tag, key).iter().zip(mac).fold(0_u8, |acc, (a, b)| acc | (a ^ b));
    if differing != 0 {
        return Err(foreign());
    }
    let after = String::from_utf8(key.to_vec()).map_err(|_| foreign())?;
    Ok(PageRequest { size, after: Some(after), list_tag })
}

/// Takes one page from `items` (sorted by key, at most `size + 1` long) and
/// returns it with the next page token.
pub fn page<T>(mut items: Vec<T>, request: &PageRequest, key: impl Fn(&T) -> String) -> (Vec<T>, String) {
    if items.len() <= request.size {
        return (items, String::new());
    }
    items.truncate(request.size);
    let token = items
        .last()
        .map(|last| {
            let key = key(last);
            let mut bytes = vec![TOKEN_VERSION];
            bytes.extend_from_slice(&request.list_tag);
            bytes.extend_from_slice(&token_mac(&request.list_tag, key.as_bytes()));
            bytes.extend_from_slice(key.as_bytes());
            hex::encode(bytes)
        })
        .unwrap_or_default();
    (items, token)
}

/// [`page`], ending the page early once its items weigh more than
/// [`MAX_PAGE_BYTES`] by `weight` (their encoded size); a page always holds
/// at least one item, so a list always progresses.
pub fn page_bounded<T>(
    mut items: Vec<T>,
    request: &PageRequest,
    key: impl Fn(&T) -> String,
    weight: impl Fn(&T) -> usize,
) -> (Vec<T>, String) {
    let mut total = 0;
    let fitting = items
        .iter()
        .take(request.size)
        .take_while(|item| {
            total += weight(item);
            total <= MAX_PAGE_BYTES
        })
        .count()
        .max(1);
    if fitting < items.len().min(request.size) {
        // One more than the page, so `page` issues a token after it.
        items.truncate(fitting + 1);
        let shorter = PageRequest { size: fitting, ..request.clone() };
        return page(items, &shorter, key);
    }
    page(items, request, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heavy_page_ends_early_and_the_next_one_goes_on() {
        let request = page_request(LIST, 10, "").expect("request");
        let items: Vec<(String, usize)> = (0..5).map(|index| (format!("k{index}"), MAX_PAGE_BYTES / 2)).collect();
        let (first, token) = page_bounded(items.clone(), &request, |item| item.0.clone(), |item| item.1);
        assert_eq!(first.len(), 2, "two halves fill a page");
        let next = page_request(LIST, 10, &token).expect("the token works");
        assert_eq!(next.after.as_deref(), Some("k1"));
        let huge = vec![("only".to_owned(), MAX_PAGE_BYTES * 3), ("next".to_owned(), 1)];
        let (first, token) = page_bounded(huge, &request, |item| item.0.clone(), |item| item.1);
        assert_eq!((first.len(), token.is_empty()), (1, false), "one item even when it alone is heavier");
        let light: Vec<(String, usize)> = (0..3).map(|index| (format!("k{index}"), 10)).collect();
        let (all, token) = page_bounded(light, &request, |item| item.0.clone(), |item| item.1);
        assert_eq!((all.len(), token.as_str()), (3, ""), "a light list is one page");
    }

    const LIST: &str = "routing.ListQueues tenants/acme";

    #[test]
    fn pages_chain_until_exhausted() {
        let request = page_request(LIST, 2, "").expect("request");
        let (items, token) = page(vec!["a", "b", "c"], &request, |item| (*item).to_owned());
        assert_eq!(items, vec!["a", "b"]);
        let next = page_request(LIST, 2, &token).expect("next");
        assert_eq!(next.after.as_deref(), Some("b"));
        let (items, token) = page(vec!["c"], &next, |item| (*item).to_owned());
        assert_eq!((items, token.as_str()), (vec!["c"], ""));
    }

    #[test]
    fn a_token_is_refused_by_any_other_list() {
        let request = page_request(LIST, 1, "").expect("request");
        let (_, token) = page(vec!["a", "b"], &request, |item| (*item).to_owned());
        for other in ["routing.ListQueues tenants/globex", "presence.ListAgents tenants/acme"] {
            let refused = page_request(other, 1, &token).expect_err("another list's token");
            assert_eq!(refused.field_violations[0].field, "page_token");
        }
        assert_ne!(token, hex::encode("a"), "not the bare key");
        let bytes = hex::decode(&token).expect("hex");
        for index in 0..bytes.len() {
            let mut altered = bytes.clone();
            altered[index] ^= 1;
            assert!(page_request(LIST, 1, &hex::encode(altered)).is_err(), "byte {index} altered is refused");
        }
        let mut other_key = bytes[..1 + LIST_TAG_BYTES + MAC_BYTES].to_vec();
        other_key.extend_from_slice(b"a' OR 1=1 --");
        assert!(page_request(LIST, 1, &hex::encode(other_key)).is_err(), "a key put in by hand is refused");
        assert!(page_request(LIST, 1, &hex::encode("a")).is_err(), "a bare key (the old format) is refused");
    }

    #[test]
    fn bad_page_arguments_name_the_field() {
        assert_eq!(page_request(LIST, -1, "").expect_err("neg").field_violations[0].field, "page_size");
        assert_eq!(page_request(LIST, 5, "zz").expect_err("tok").field_violations[0].field, "page_token");
        assert_eq!(page_request(LIST, 5000, "").expect("big").size, MAX_PAGE_SIZE);
    }
}
