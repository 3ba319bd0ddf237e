//! The header planner: from the request headers Envoy holds (and, when configured, the verified
//! JWT payload and connection facts) to the edits the filter makes, or a refusal. Pure: no host
//! calls, so it is unit- and property-tested natively.

pub mod claims;
pub mod metadata;

use std::borrow::Cow;

use smallvec::SmallVec;

use crate::config::{AuditExtra, ConnectionFact, FilterConfig, IdentityConfig, JwtSource};
use crate::refusal::{quote_for_log, Reason, Refusal};

const IMPERSONATE_PREFIX: &[u8] = b"impersonate-";
pub const IMPERSONATE_USER: &str = "impersonate-user";
pub const IMPERSONATE_GROUP: &str = "impersonate-group";
pub const IMPERSONATE_UID: &str = "impersonate-uid";

/// One request header as Envoy hands it over: name and raw value bytes (values may hold any
/// byte Envoy lets through, including obs-text that is not UTF-8).
pub type Header<'h> = (&'h [u8], &'h [u8]);

/// Header names to remove. Inline capacity for a typical request (identity source headers and
/// a few client `impersonate-*` names): no heap allocation per request, which costs far more in
/// Envoy's V8 than natively.
pub type Removals<'h> = SmallVec<[&'h [u8]; 8]>;

/// Headers to add: (name, value). A value borrows the request header (or the configuration) it
/// came from unless a prefix had to be prepended; the inline capacity fits user, a handful of
/// groups, uid and extras without a heap allocation.
pub type Additions<'h, 'c> = SmallVec<[(&'c str, Cow<'h, str>); 8]>;

/// The edits for one request, in the order they must be applied: removals first.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan<'h, 'c> {
    /// Distinct header names to remove, every copy (client `impersonate-*`, and the identity
    /// source headers when configured).
    pub remove: Removals<'h>,
    /// Headers to add, in order: user, groups (one header each), uid, extras.
    pub add: Additions<'h, 'c>,
    /// How many client-supplied `impersonate-*` header lines were found (every copy counts).
    pub stripped_impersonation_headers: u32,
}

impl Plan<'_, '_> {
    /// The impersonated user, for logs and access logs: the value of the `Impersonate-User`
    /// edit (kept once, in `add`, rather than copied).
    pub fn user(&self) -> Option<&str> {
        self.add
            .iter()
            .find(|(name, _)| *name == IMPERSONATE_USER)
            .map(|(_, value)| value.as_ref())
    }
}

pub fn is_impersonation_header(name: &[u8]) -> bool {
    name.len() >= IMPERSONATE_PREFIX.len()
        && name[..IMPERSONATE_PREFIX.len()].eq_ignore_ascii_case(IMPERSONATE_PREFIX)
}

/// Adds each distinct `impersonate-*` name among `headers` to `names` (its first spelling: a
/// removal takes every copy in any letter case); returns how many lines carry one.
pub fn collect_impersonation_headers<'h>(
    headers: &[Header<'h>],
    names: &mut Removals<'h>,
) -> u32 {
    let mut lines = 0;
    for &(name, _) in headers {
        if is_impersonation_header(name) {
            lines += 1;
            push_distinct(names, name);
        }
    }
    lines
}

/// `system:` identities (system:masters, system:admin, system:serviceaccount:...) are the keys to
/// the cluster. Compared without regard to letter case to fail closed.
pub fn is_system_identity(value: &str) -> bool {
    value
        .as_bytes()
        .get(..7)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(b"system:"))
}

/// The mTLS peer's identity (with Istio, its SPIFFE ID): the first URI SAN of the client
/// certificate. Envoy has no `source.principal` property (measured with Envoy 1.40: reading it
/// finds nothing even on an mTLS connection); this is where the principal is.
pub const PEER_PRINCIPAL_PROPERTY: &[&str] = &["connection", "uri_san_peer_certificate"];
/// The filter-state object that holds the direct TCP peer's address, `ip:port` or `ip`.
///
/// Not `source.address`: Envoy's `source.address` is the downstream remote address *after*
/// `X-Forwarded-For` processing (`filters/common/expr/context.cc`, `PeerWrapper`, reads
/// `downstreamAddressProvider().remoteAddress()`), which with the connection manager's default
/// `use_remote_address: false` is the last address the *client* wrote in `X-Forwarded-For`. No
/// property the Wasm host offers holds the direct peer (`common/wasm/context.cc`,
/// `findValue`), but `filter_state` does hold what the `envoy.filters.http.set_filter_state`
/// filter stored, and that filter can store `%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%`, which no
/// header changes. A client cannot write filter state, so without that filter the property is
/// missing and the filter refuses rather than guesses.
pub const DIRECT_PEER_FILTER_STATE: &str = "kiali_header_auth.direct_remote_address";
pub const DIRECT_PEER_PROPERTY: &[&str] = &["filter_state", DIRECT_PEER_FILTER_STATE];

/// What Envoy knows about a request beyond its headers. The filter reads each one only when the
/// configuration uses it, so the header-only modes make no extra host call.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RequestProperties {
    /// `["metadata"]`: the dynamic metadata, protobuf-encoded (see `metadata`). JWT mode only.
    pub dynamic_metadata: Option<Vec<u8>>,
    /// `PEER_PRINCIPAL_PROPERTY`, for an audit extra.
    pub source_principal: Option<Vec<u8>>,
    /// `DIRECT_PEER_PROPERTY`, for an audit extra.
    pub source_address: Option<Vec<u8>>,
}

impl RequestProperties {
    /// Reads, through `get_property` (the host call in the filter), the properties `config` uses.
    pub fn read(
        config: &FilterConfig,
        mut get_property: impl FnMut(&[&str]) -> Option<Vec<u8>>,
    ) -> RequestProperties {
        let mut properties = RequestProperties::default();
        let Some(identity) = &config.identity else {
            return properties;
        };
        if identity.jwt.is_some() {
            properties.dynamic_metadata = get_property(&["metadata"]);
        }
        let uses = |fact| identity.audit_extras.iter().any(|extra| extra.fact == fact);
        if uses(ConnectionFact::SourcePrincipal) {
            properties.source_principal = get_property(PEER_PRINCIPAL_PROPERTY);
        }
        if uses(ConnectionFact::SourceAddress) {
            properties.source_address = get_property(DIRECT_PEER_PROPERTY);
        }
        properties
    }

    fn fact(&self, fact: ConnectionFact) -> Option<&[u8]> {
        match fact {
            ConnectionFact::SourcePrincipal => self.source_principal.as_deref(),
            ConnectionFact::SourceAddress => self.source_address.as_deref(),
        }
    }
}

/// The plan for a request when no request property is configured (header modes without audit
/// extras); in JWT mode it refuses, as a request without a verified token.
pub fn plan<'h, 'c: 'h>(
    config: &'c FilterConfig,
    headers: &[Header<'h>],
) -> Result<Plan<'h, 'c>, Refusal> {
    plan_with_properties(config, headers, &RequestProperties::default())
}

/// Values taken from `properties` (JWT claims, connection facts) are copied into the plan, so the
/// properties need not outlive it; header values are borrowed.
pub fn plan_with_properties<'h, 'c: 'h>(
    config: &'c FilterConfig,
    headers: &[Header<'h>],
    properties: &RequestProperties,
) -> Result<Plan<'h, 'c>, Refusal> {
    let mut plan = Plan::default();
    let Some(identity) = &config.identity else {
        plan.stripped_impersonation_headers =
            collect_impersonation_headers(headers, &mut plan.remove);
        return Ok(plan);
    };

    if let Some(jwt) = &identity.jwt {
        // Only `impersonate-*` is removed; headers such as X-Forwarded-User are not identity here.
        plan.stripped_impersonation_headers =
            collect_impersonation_headers(headers, &mut plan.remove);
        let claims = claims::extract(jwt, properties.dynamic_metadata.as_deref())?;
        map_claims(identity, jwt, &claims, &mut plan)?;
        add_audit_extras(identity, properties, &mut plan)?;
        return Ok(plan);
    }

    let mut sources = Sources::default();
    for (name, value) in headers {
        if is_impersonation_header(name) {
            plan.stripped_impersonation_headers += 1;
            push_distinct(&mut plan.remove, name);
        } else if let Some(role) = identity_role(identity, name) {
            sources.record(role, value);
            if identity.remove_identity_headers {
                push_distinct(&mut plan.remove, name);
            }
        }
    }
    map_identity(identity, &sources, &mut plan)?;
    add_audit_extras(identity, properties, &mut plan)?;
    Ok(plan)
}

#[derive(Clone, Copy)]
enum Role {
    User,
    Groups,
    Uid,
    Extra(usize),
}

fn identity_role(identity: &IdentityConfig, name: &[u8]) -> Option<Role> {
    if name.eq_ignore_ascii_case(identity.user_header.as_bytes()) {
        return Some(Role::User);
    }
    if let Some(groups) = &identity.groups_header {
        if name.eq_ignore_ascii_case(groups.as_bytes()) {
            return Some(Role::Groups);
        }
    }
    if let Some(uid) = &identity.uid_header {
        if name.eq_ignore_ascii_case(uid.as_bytes()) {
            return Some(Role::Uid);
        }
    }
    identity
        .extras
        .iter()
        .position(|extra| name.eq_ignore_ascii_case(extra.source_header.as_bytes()))
        .map(Role::Extra)
}

/// The identity source header values of one request, without heap allocation for the usual
/// shapes (one user line, a couple of group lines, a few extras).
#[derive(Default)]
struct Sources<'h> {
    user: SingleValue<'h>,
    groups: SmallVec<[&'h [u8]; 4]>,
    uid: SingleValue<'h>,
    extras: SmallVec<[(usize, &'h [u8]); 4]>,
}

/// A header that must appear at most once: its first value and how many lines carried it.
#[derive(Default)]
struct SingleValue<'h> {
    first: Option<&'h [u8]>,
    lines: usize,
}

impl<'h> SingleValue<'h> {
    fn record(&mut self, value: &'h [u8]) {
        self.first.get_or_insert(value);
        self.lines += 1;
    }
}

impl<'h> Sources<'h> {
    fn record(&mut self, role: Role, value: &'h [u8]) {
        match role {
            Role::User => self.user.record(value),
            Role::Groups => self.groups.push(value),
            Role::Uid => self.uid.record(value),
            Role::Extra(index) => self.extras.push((index, value)),
        }
    }
}

fn map_identity<'h, 'c: 'h>(
    identity: &'c IdentityConfig,
    sources: &Sources<'h>,
    plan: &mut Plan<'h, 'c>,
) -> Result<(), Refusal> {
    let user_header = &identity.user_header;
    let raw_user = match (sources.user.first, sources.user.lines) {
        (Some(one), 1) => one,
        (None, _) => {
            return Err(Refusal::new(
                Reason::IdentityMissing,
                format!("no user identity: the {user_header} header is missing"),
            ))
        }
        (Some(_), lines) => {
            return Err(Refusal::new(
                Reason::IdentityMalformed,
                format!(
                    "the {user_header} header appears {lines} times; exactly one user is allowed"
                ),
            ))
        }
    };
    let user = clean_value(identity, user_header, raw_user)?;
    if user.is_empty() {
        return Err(Refusal::new(
            Reason::IdentityMissing,
            format!("no user identity: the {user_header} header is empty"),
        ));
    }
    add_user(identity, prefixed(&identity.user_prefix, user), plan)?;

    let first_group = plan.add.len();
    if let Some(groups_header) = &identity.groups_header {
        let source = GroupSource::Header(groups_header);
        for raw in &sources.groups {
            let text = clean_list(identity, groups_header, raw)?;
            for_each_item(text, &identity.groups_separator, |item| {
                let item = trim_like_go(item);
                if item.is_empty() {
                    return Ok(());
                }
                check_length(identity, groups_header, item.as_bytes())?;
                add_group(identity, plan, first_group, Cow::Borrowed(item), source)
            })?;
        }
    }
    check_allowed(identity, plan, first_group)?;
    add_static_groups(identity, plan, first_group);

    if let Some(uid_header) = &identity.uid_header {
        match (sources.uid.first, sources.uid.lines) {
            (None, _) => {}
            (Some(one), 1) => {
                let uid = clean_value(identity, uid_header, one)?;
                if !uid.is_empty() {
                    plan.add.push((IMPERSONATE_UID, Cow::Borrowed(uid)));
                }
            }
            (Some(_), lines) => {
                return Err(Refusal::new(
                    Reason::IdentityMalformed,
                    format!(
                        "the {uid_header} header appears {lines} times; exactly one uid is allowed"
                    ),
                ))
            }
        }
    }

    for (index, raw) in &sources.extras {
        let Some(extra) = identity.extras.get(*index) else {
            continue;
        };
        let value = clean_value(identity, &extra.source_header, raw)?;
        if !value.is_empty() {
            plan.add
                .push((extra.output_header.as_str(), Cow::Borrowed(value)));
        }
    }
    Ok(())
}

/// Calls `each` for every item of `text` split at `separator`. A one-character separator (the
/// usual `,`) splits by `char`, which skips the substring searcher's setup; the items are the
/// same either way.
fn for_each_item<'t>(
    text: &'t str,
    separator: &str,
    mut each: impl FnMut(&'t str) -> Result<(), Refusal>,
) -> Result<(), Refusal> {
    let mut chars = separator.chars();
    match (chars.next(), chars.next()) {
        (Some(only), None) => text.split(only).try_for_each(&mut each),
        _ => text.split(separator).try_for_each(&mut each),
    }
}

/// `value` with `prefix` prepended; borrowed (no allocation) when there is no prefix.
fn prefixed<'v>(prefix: &str, value: &'v str) -> Cow<'v, str> {
    if prefix.is_empty() {
        return Cow::Borrowed(value);
    }
    let mut joined = String::with_capacity(prefix.len() + value.len());
    joined.push_str(prefix);
    joined.push_str(value);
    Cow::Owned(joined)
}

/// Adds `Impersonate-User` (already prefixed) unless it is a `system:` identity.
fn add_user<'h, 'c>(
    identity: &IdentityConfig,
    user: Cow<'h, str>,
    plan: &mut Plan<'h, 'c>,
) -> Result<(), Refusal> {
    if !identity.allow_system_identities && is_system_identity(&user) {
        return Err(Refusal::new(
            Reason::IdentityForbidden,
            format!(
                "user {} is a Kubernetes system identity and cannot be impersonated",
                quote_for_log(user.as_bytes())
            ),
        ));
    }
    plan.add.push((IMPERSONATE_USER, user));
    Ok(())
}

/// `allowed_users`/`allowed_groups`: the user (at `first_group - 1`) or one of the groups mapped
/// from the source (from `first_group` on; `static_groups` are not added yet, so they never
/// admit anyone) must be listed.
fn check_allowed(identity: &IdentityConfig, plan: &Plan<'_, '_>, first_group: usize) -> Result<(), Refusal> {
    let Some(allowed) = &identity.allowed else {
        return Ok(());
    };
    let user = plan.user().unwrap_or_default();
    let groups = plan.add[first_group..].iter().map(|(_, group)| group.as_ref());
    if allowed.admits(user, groups) {
        return Ok(());
    }
    Err(Refusal::new(
        Reason::IdentityNotAllowed,
        format!(
            "user {} is neither in identity.allowed_users nor a member of identity.allowed_groups",
            quote_for_log(user.as_bytes())
        ),
    ))
}

/// `static_groups` after the mapped ones, each once.
fn add_static_groups<'h, 'c: 'h>(
    identity: &'c IdentityConfig,
    plan: &mut Plan<'h, 'c>,
    first_group: usize,
) {
    for group in &identity.static_groups {
        if !plan.add[first_group..]
            .iter()
            .any(|(_, added)| added == group)
        {
            plan.add
                .push((IMPERSONATE_GROUP, Cow::Borrowed(group.as_str())));
        }
    }
}

/// Where groups came from, for refusal messages (formatted only when refusing: no allocation per
/// group on the request path).
#[derive(Clone, Copy)]
enum GroupSource<'n> {
    Header(&'n str),
    Claim(&'n str),
}

impl std::fmt::Display for GroupSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GroupSource::Header(name) => write!(f, "the {name} header"),
            GroupSource::Claim(name) => write!(f, "the `{name}` claim"),
        }
    }
}

/// Prefixes a group and adds it (as `Impersonate-Group`, after the groups from `first_group` on)
/// unless already there; refuses past `max_groups` and `system:` groups. The duplicate check
/// compares without building the prefixed value, so a repeated group allocates nothing.
fn add_group<'h>(
    identity: &IdentityConfig,
    plan: &mut Plan<'h, '_>,
    first_group: usize,
    item: Cow<'h, str>,
    source: GroupSource<'_>,
) -> Result<(), Refusal> {
    let prefix = identity.group_prefix.as_str();
    let groups = &plan.add[first_group..];
    let already_added = groups
        .iter()
        .any(|(_, group)| group.strip_prefix(prefix) == Some(item.as_ref()));
    if already_added {
        return Ok(());
    }
    if groups.len() == identity.max_groups {
        return Err(Refusal::new(
            Reason::IdentityMalformed,
            format!("{source} lists more than {} groups", identity.max_groups),
        ));
    }
    let group = match item {
        Cow::Borrowed(item) => prefixed(prefix, item),
        Cow::Owned(item) if prefix.is_empty() => Cow::Owned(item),
        Cow::Owned(item) => Cow::Owned(format!("{prefix}{item}")),
    };
    if !identity.allow_system_identities && is_system_identity(&group) {
        return Err(Refusal::new(
            Reason::IdentityForbidden,
            format!(
                "group {} is a Kubernetes system group and cannot be impersonated",
                quote_for_log(group.as_bytes())
            ),
        ));
    }
    plan.add.push((IMPERSONATE_GROUP, group));
    Ok(())
}

/// The verified claims through the same rules as header values: prefixes, `static_groups`, the
/// `system:` guard, `max_groups`, `max_value_bytes`, no control characters. Claim values are
/// trimmed only as Go will trim the header (`trim_like_go`), and a group is never split; a blank
/// user is missing and a blank group is skipped. The claims borrow the request's metadata, not the headers, so their
/// values are copied into the plan.
fn map_claims<'h, 'c: 'h>(
    identity: &'c IdentityConfig,
    jwt: &'c JwtSource,
    claims: &claims::Claims<'_>,
    plan: &mut Plan<'h, 'c>,
) -> Result<(), Refusal> {
    let user_claim = &jwt.user_claim.display;
    let user = clean_claim(identity, user_claim, claims.user)?;
    if user.is_empty() {
        return Err(Refusal::new(
            Reason::IdentityMissing,
            format!("no user identity: the `{user_claim}` claim is empty"),
        ));
    }
    let user = Cow::Owned(prefixed(&identity.user_prefix, user).into_owned());
    add_user(identity, user, plan)?;

    let first_group = plan.add.len();
    if let Some(groups_claim) = &jwt.groups_claim {
        let source = GroupSource::Claim(&groups_claim.display);
        for item in &claims.groups {
            let item = clean_claim(identity, &groups_claim.display, item)?;
            if !item.is_empty() {
                add_group(
                    identity,
                    plan,
                    first_group,
                    Cow::Owned(item.to_string()),
                    source,
                )?;
            }
        }
    }
    check_allowed(identity, plan, first_group)?;
    add_static_groups(identity, plan, first_group);

    if let (Some(uid_claim), Some(uid)) = (&jwt.uid_claim, claims.uid) {
        let uid = clean_claim(identity, &uid_claim.display, uid)?;
        if !uid.is_empty() {
            plan.add.push((IMPERSONATE_UID, Cow::Owned(uid.to_string())));
        }
    }

    for (index, values) in &claims.extras {
        let Some(extra) = jwt.extra_claims.get(*index) else {
            continue;
        };
        if values.len() > identity.max_groups {
            return Err(Refusal::new(
                Reason::IdentityMalformed,
                format!(
                    "the `{}` claim lists more than {} values",
                    extra.claim.display, identity.max_groups
                ),
            ));
        }
        for value in values {
            let value = clean_claim(identity, &extra.claim.display, value)?;
            if !value.is_empty() {
                plan.add
                    .push((extra.output_header.as_str(), Cow::Owned(value.to_string())));
            }
        }
    }
    Ok(())
}

/// One claim value: no control characters, within the length limit, trimmed as Go will trim it.
fn clean_claim<'v>(identity: &IdentityConfig, claim: &str, value: &'v str) -> Result<&'v str, Refusal> {
    if has_control_characters(value) {
        return Err(Refusal::new(
            Reason::IdentityMalformed,
            format!("the `{claim}` claim contains control characters"),
        ));
    }
    if value.len() > identity.max_value_bytes {
        return Err(Refusal::new(
            Reason::IdentityMalformed,
            format!(
                "a value of the `{claim}` claim is longer than {} bytes",
                identity.max_value_bytes
            ),
        ));
    }
    Ok(trim_like_go(value))
}

/// Whether `text` holds a Unicode control character (general category Cc, what
/// `char::is_control` tests: U+0000-U+001F and U+007F-U+009F), checked on the bytes without
/// decoding characters. In UTF-8 the C0 controls and DEL are single bytes, and the C1 controls
/// U+0080-U+009F are exactly the pairs 0xC2 0x80-0x9F; 0xC2 is only ever a lead byte in valid
/// UTF-8, so no other character matches.
fn has_control_characters(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().any(|(index, &byte)| {
        byte.is_ascii_control()
            || (byte == 0xC2 && matches!(bytes.get(index + 1), Some(0x80..=0x9F)))
    })
}

/// `Impersonate-Extra-<key>` with the connection facts the configuration asks for. No mTLS peer
/// (so no principal) adds nothing; the source address is the direct peer's IP address, without
/// the port (a port would make every connection look like a new identity to caches keyed by
/// identity), and a request whose direct peer Envoy did not record is refused: the filter does
/// not fall back to an address the client can choose.
fn add_audit_extras<'c>(
    identity: &'c IdentityConfig,
    properties: &RequestProperties,
    plan: &mut Plan<'_, 'c>,
) -> Result<(), Refusal> {
    for AuditExtra {
        output_header,
        fact,
        ..
    } in &identity.audit_extras
    {
        let raw = properties.fact(*fact).filter(|raw| !raw.is_empty());
        let value = match (fact, raw) {
            (ConnectionFact::SourcePrincipal, None) => continue,
            (ConnectionFact::SourcePrincipal, Some(raw)) => {
                clean_value(identity, output_header, raw)?.to_string()
            }
            (ConnectionFact::SourceAddress, raw) => {
                let Some(ip) = raw.and_then(crate::peer::parse_peer_ip) else {
                    return Err(direct_peer_unknown());
                };
                ip.to_string()
            }
        };
        if !value.is_empty() {
            plan.add.push((output_header.as_str(), Cow::Owned(value)));
        }
    }
    Ok(())
}

/// The refusal when the direct peer's address is needed and Envoy did not record it.
pub fn direct_peer_unknown() -> Refusal {
    Refusal::new(
        Reason::UntrustedPeer,
        format!(
            "the direct peer's address is unknown: Envoy must run the \
             envoy.filters.http.set_filter_state filter before this one, storing \
             %DOWNSTREAM_DIRECT_REMOTE_ADDRESS% as {DIRECT_PEER_FILTER_STATE} (docs/configuration.md: \
             \"trusted_peers\"); the filter does not use addresses from X-Forwarded-For"
        ),
    )
}

/// A single identity value: UTF-8, no control characters, trimmed as Go will trim it, within the
/// length limit.
fn clean_value<'v>(
    identity: &IdentityConfig,
    header: &str,
    raw: &'v [u8],
) -> Result<&'v str, Refusal> {
    let text = clean_list(identity, header, raw)?;
    check_length(identity, header, text.as_bytes())?;
    Ok(text)
}

/// A header that may hold a list: UTF-8 and no control characters; its length is bounded by
/// `max_groups` items of `max_value_bytes` each.
fn clean_list<'v>(
    identity: &IdentityConfig,
    header: &str,
    raw: &'v [u8],
) -> Result<&'v str, Refusal> {
    let Ok(text) = std::str::from_utf8(raw) else {
        return Err(Refusal::new(
            Reason::IdentityMalformed,
            format!("the {header} header is not valid UTF-8"),
        ));
    };
    if has_control_characters(text) {
        return Err(Refusal::new(
            Reason::IdentityMalformed,
            format!("the {header} header contains control characters"),
        ));
    }
    let list_limit = identity
        .max_groups
        .saturating_mul(identity.max_value_bytes + identity.groups_separator.len() + 2);
    if text.len() > list_limit {
        return Err(Refusal::new(
            Reason::IdentityMalformed,
            format!("the {header} header is longer than {list_limit} bytes"),
        ));
    }
    Ok(trim_like_go(text))
}

fn check_length(identity: &IdentityConfig, header: &str, value: &[u8]) -> Result<(), Refusal> {
    if value.len() > identity.max_value_bytes {
        return Err(Refusal::new(
            Reason::IdentityMalformed,
            format!(
                "a value in the {header} header is longer than {} bytes",
                identity.max_value_bytes
            ),
        ));
    }
    Ok(())
}

/// `value` without the spaces and horizontal tabs Go's header reader trims from both ends of a
/// value (`net/textproto` `ReadMIMEHeader`: `bytes.TrimLeft(v, " \t")` and `trim` on the line),
/// which Kiali and the API server both use. Every value the filter forwards goes through this
/// before any check, so `" system:masters"` is checked as `system:masters`, the identity the API
/// server would see. Only these two characters: trimming more (Rust's `str::trim` also removes
/// U+00A0 and other Unicode spaces) would merge identities that Go keeps apart.
pub fn trim_like_go(value: &str) -> &str {
    value.trim_matches([' ', '\t'])
}

/// Distinct names only: the list is a handful of names, so a scan beats hashing.
fn push_distinct<'h>(names: &mut Removals<'h>, name: &'h [u8]) {
    if !names.iter().any(|seen| seen.eq_ignore_ascii_case(name)) {
        names.push(name);
    }
}

#[cfg(test)]
mod tests;
