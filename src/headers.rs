//! A request's headers, as the decision reads them: one block of text and
//! the (name, value) spans in it.
//!
//! Every request reads the whole header map (certbound must see every copy
//! of a token header). Kept as one string rather than a `String` per name
//! and value, the map costs two allocations instead of two per header.

/// Request headers in the order the host gave them; names lowercase as
/// Envoy gives them.
#[derive(Debug, Clone, Default)]
pub struct RequestHeaders {
    text: String,
    /// Per header: the start and end of its name, then of its value.
    spans: Vec<[usize; 4]>,
}

/// Equal when they hold the same headers in the same order.
impl PartialEq for RequestHeaders {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for RequestHeaders {}

impl RequestHeaders {
    /// `(name, value)` of each header.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.spans.iter().map(|&[name, name_end, value, end]| {
            (
                self.text.get(name..name_end).unwrap_or(""),
                self.text.get(value..end).unwrap_or(""),
            )
        })
    }

    /// The values of every header named `name` (ASCII case-insensitive),
    /// in order: a repeated header yields each copy.
    ///
    /// Every request looks its token headers up this way: lengths are
    /// compared first, from the spans, and only the matches are sliced.
    pub fn values<'s, 'n>(&'s self, name: &'n str) -> impl Iterator<Item = &'s str> + use<'s, 'n> {
        self.spans
            .iter()
            .filter(move |&&[start, end, _, _]| {
                end.wrapping_sub(start) == name.len()
                    && self
                        .text
                        .get(start..end)
                        .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
            .map(|&[_, _, value, end]| self.text.get(value..end).unwrap_or(""))
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    fn push(&mut self, name: &str, value: &str) {
        let start = self.text.len();
        self.text.push_str(name);
        let mid = self.text.len();
        self.text.push_str(value);
        self.spans.push([start, mid, mid, self.text.len()]);
    }

    /// Parses the proxy-wasm ABI's header map form: a u32 count, then a
    /// (name length, value length) u32 pair per entry, then each name and
    /// each value followed by a NUL; integers little-endian. Read without
    /// trusting the lengths: `None` if they do not fit. Values may hold
    /// obs-text (non-UTF-8 octets): decoded lossily, so such a value can
    /// never pass as a token.
    ///
    /// The host's buffer becomes the text: once the spans are read, the
    /// binary count and lengths are overwritten with NULs, and if the whole
    /// buffer is then UTF-8 (one pass of the fast validator) it is kept as
    /// is, with no copy. Every span starts and ends next to a NUL, so each
    /// is on a character boundary.
    pub fn from_abi(mut bytes: Vec<u8>) -> Option<RequestHeaders> {
        let word = |bytes: &[u8], at: usize| -> Option<usize> {
            let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
            usize::try_from(u32::from_le_bytes(b)).ok()
        };
        let count = word(&bytes, 0)?;
        let table_end = count.checked_mul(8)?.checked_add(4)?;
        if table_end > bytes.len() {
            return None;
        }
        let mut spans = Vec::with_capacity(count);
        let mut at = table_end;
        for i in 0..count {
            let name_len = word(&bytes, 4 + i * 8)?;
            let value_len = word(&bytes, 8 + i * 8)?;
            let name = at;
            let value = name.checked_add(name_len)?.checked_add(1)?;
            let end = value.checked_add(value_len)?;
            // Each name and value is followed by its NUL; the last NUL may be
            // missing.
            if end > bytes.len() {
                return None;
            }
            spans.push([name, name + name_len, value, end]);
            at = end.checked_add(1)?;
        }
        bytes.get_mut(..table_end)?.fill(0);
        RequestHeaders::from_spans(bytes, spans)
    }

    /// Copies a host's header pairs (as Envoy's dynamic-module ABI lends
    /// them) into one block, each name and value followed by a NUL as in
    /// the ABI form: the headers [`RequestHeaders::from_abi`] reads from
    /// that form, with no length table to write and skip.
    pub fn from_pairs<'p, I>(pairs: I) -> RequestHeaders
    where
        I: ExactSizeIterator<Item = (&'p [u8], &'p [u8])> + Clone,
    {
        let size = pairs.clone().map(|(k, v)| k.len() + v.len() + 2).sum();
        let mut bytes = Vec::with_capacity(size);
        let mut spans = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            let name = bytes.len();
            bytes.extend_from_slice(k);
            bytes.push(0);
            let value = bytes.len();
            bytes.extend_from_slice(v);
            bytes.push(0);
            spans.push([name, name + k.len(), value, value + v.len()]);
        }
        RequestHeaders::from_spans(bytes, spans).unwrap_or_default()
    }

    /// The headers at `spans` of `bytes`, where every span starts and ends
    /// next to a NUL (or at an end), so that no character straddles two:
    /// if the whole buffer is UTF-8 (one pass of the fast validator) it is
    /// kept as the text, with no copy; else (obs-text somewhere) a compact
    /// copy, decoded per header.
    fn from_spans(bytes: Vec<u8>, spans: Vec<[usize; 4]>) -> Option<RequestHeaders> {
        match String::from_utf8(bytes) {
            Ok(text) => Some(RequestHeaders { text, spans }),
            Err(e) => {
                let bytes = e.into_bytes();
                let mut headers = RequestHeaders {
                    text: String::with_capacity(bytes.len()),
                    spans: Vec::with_capacity(spans.len()),
                };
                for [n, ne, v, e] in spans {
                    headers.push(&text(bytes.get(n..ne)?), &text(bytes.get(v..e)?));
                }
                Some(headers)
            }
        }
    }
}

/// The proxy-wasm ABI's header map form of `pairs`, as a host writes it:
/// the inverse of [`RequestHeaders::from_abi`] (for fake hosts and tests).
pub fn encode_abi<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Vec<u8> {
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    let mut out = len(pairs.len()).to_vec();
    for (k, v) in pairs {
        out.extend_from_slice(&len(k.as_ref().len()));
        out.extend_from_slice(&len(v.as_ref().len()));
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_ref());
        out.push(0);
        out.extend_from_slice(v.as_ref());
        out.push(0);
    }
    out
}

/// UTF-8 as is (the common case, checked by the fast validator), else
/// decoded lossily.
fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match core::str::from_utf8(bytes) {
        Ok(s) => s.into(),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for RequestHeaders {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut headers = RequestHeaders::default();
        for (k, v) in iter {
            headers.push(k.as_ref(), v.as_ref());
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::RequestHeaders;

    fn serialize(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        super::encode_abi(pairs)
    }

    fn pairs(h: &RequestHeaders) -> Vec<(&str, &str)> {
        h.iter().collect()
    }

    #[test]
    fn header_pairs_round_trip_with_repeats_and_empty_values() {
        let bytes = serialize(&[
            (b":path", b"/api?x=1"),
            (b"authorization", b"Bearer a.b.c"),
            (b"authorization", b"Bearer d.e.f"),
            (b"x-empty", b""),
            (b"", b"empty-name"),
        ]);
        let h = RequestHeaders::from_abi(bytes).unwrap();
        let want = [
            (":path", "/api?x=1"),
            ("authorization", "Bearer a.b.c"),
            ("authorization", "Bearer d.e.f"),
            ("x-empty", ""),
            ("", "empty-name"),
        ];
        assert_eq!(pairs(&h), want);
        assert_eq!(h, want.into_iter().collect());
        assert!(RequestHeaders::from_abi(serialize(&[])).unwrap().is_empty());
    }

    /// The dynamic module's direct copy reads what the proxy-wasm form of
    /// the same pairs reads, obs-text included.
    #[test]
    fn pairs_read_as_their_abi_form() {
        let cases: [&[(&[u8], &[u8])]; 4] = [
            &[],
            &[
                (b":path", b"/a?b"),
                (b"authorization", b"Bearer x"),
                (b"x-empty", b""),
            ],
            &[(b"x", b"caf\xe9"), (b"y\xff", b"ok"), (b"", b"")],
            // Halves of one character in a name and the next value.
            &[(b"n\xc3", b"\xa9v")],
        ];
        for case in cases {
            let direct = RequestHeaders::from_pairs(case.iter().copied());
            let abi = RequestHeaders::from_abi(serialize(case)).unwrap();
            assert_eq!(direct, abi, "{case:?}");
            assert_eq!(pairs(&direct), pairs(&abi));
        }
    }

    #[test]
    fn obs_text_is_decoded_lossily() {
        let h = RequestHeaders::from_abi(serialize(&[(b"x", b"caf\xe9"), (b"y", b"ok")])).unwrap();
        assert_eq!(pairs(&h), [("x", "caf\u{fffd}"), ("y", "ok")]);
    }

    #[test]
    fn lying_lengths_and_truncation_are_refused() {
        let good = serialize(&[(b"name", b"value"), (b"n2", b"v2")]);
        for cut in 0..good.len() - 1 {
            assert_eq!(
                RequestHeaders::from_abi(good[..cut].to_vec()),
                None,
                "cut at {cut}"
            );
        }
        assert!(RequestHeaders::from_abi(good[..good.len() - 1].to_vec()).is_some());
        for at in [0, 4, 8, 12, 16] {
            let mut huge = good.clone();
            huge[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
            assert_eq!(RequestHeaders::from_abi(huge), None, "u32::MAX at {at}");
        }
        // Lengths that overlap the next entry still parse into spans of
        // the buffer (the host owns the layout); they never panic.
        let mut longer = good.clone();
        longer[8..12].copy_from_slice(&7u32.to_le_bytes());
        let _ = RequestHeaders::from_abi(longer);
    }

    /// Lengths whose bytes are not UTF-8 (200 = 0xC8) do not matter: the
    /// table is overwritten before the text is validated.
    #[test]
    fn binary_lengths_do_not_force_the_lossy_path() {
        let long = "v".repeat(200);
        let h = RequestHeaders::from_abi(serialize(&[(b"x", long.as_bytes())])).unwrap();
        assert_eq!(pairs(&h), [("x", long.as_str())]);
    }
}
