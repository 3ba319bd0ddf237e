//! What the stand-in servers record ([`RawRequest`]) and what the raw client returns
//! ([`Response`]): header values as raw bytes (they may be non-UTF-8), duplicates kept.

/// The values of the header lines named `name` (case-insensitive), in order.
fn values<'a, N: AsRef<[u8]>>(headers: &'a [(N, Vec<u8>)], name: &'a str) -> impl Iterator<Item = &'a Vec<u8>> {
    headers.iter().filter(move |(n, _)| n.as_ref().eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| v)
}

/// A request as received by a server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawRequest {
    pub method: String,
    /// The request target as sent (path plus query), lossily decoded.
    pub path: String,
    /// Header (name, value) pairs, values as raw bytes. Names are lowercase (hyper's
    /// `HeaderMap`); the values of one name keep their order, and names come in the order
    /// of their first appearance (a name's repeated lines are grouped after its first).
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
    /// When the whole request had been read.
    pub received_at: std::time::SystemTime,
}

impl Default for RawRequest {
    fn default() -> Self {
        RawRequest {
            method: String::new(),
            path: String::new(),
            headers: Vec::new(),
            body: Vec::new(),
            received_at: std::time::UNIX_EPOCH,
        }
    }
}

impl RawRequest {
    /// First value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<Vec<u8>> {
        values(&self.headers, name).next().cloned()
    }

    /// First value of a header, lossily decoded as UTF-8.
    pub fn header_str(&self, name: &str) -> Option<String> {
        self.header(name).map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    /// All values of a header (case-insensitive name), in order.
    pub fn headers_named(&self, name: &str) -> Vec<Vec<u8>> {
        values(&self.headers, name).cloned().collect()
    }

    /// The path without the query string.
    pub fn path_only(&self) -> &str {
        self.path.split(['?', '#']).next().unwrap_or("")
    }
}

/// A response as received by the client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Header (name, value) pairs in order, names as received (lossily decoded).
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Response {
    /// First value of a header (case-insensitive), lossily decoded.
    pub fn header(&self, name: &str) -> Option<String> {
        values(&self.headers, name).next().map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// All raw values of a header (case-insensitive), in order.
    pub fn headers_named(&self, name: &str) -> Vec<Vec<u8>> {
        values(&self.headers, name).cloned().collect()
    }

    /// The body parsed as JSON. Panics (with the status and body) if it is not JSON:
    /// this is a test helper; use [`Response::try_json`] to handle the error.
    pub fn json(&self) -> serde_json::Value {
        match self.try_json() {
            Ok(v) => v,
            Err(e) => panic!(
                "response body is not JSON ({e}): status {} body {:?}",
                self.status,
                self.text()
            ),
        }
    }

    pub fn try_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The body lossily decoded as UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}
