//! The Kiali and API server stand-ins (`harness::kiali`, `harness::apiserver`) pinned to the
//! behaviours of the real systems that the filter's tests rely on, first as functions, then
//! over real sockets (no Envoy needed).

use harness::apiserver::{self, ApiServerStandIn, ImpersonationRules, PolicyRule, UserInfo, IMPERSONATOR};
use harness::client::{self, ClientRequest};
use harness::kiali::{self, client_go_headers, header_strategy, GoHeader, KialiStandIn};
use std::collections::BTreeMap;
use std::sync::Arc;

fn everything() -> ImpersonationRules {
    ImpersonationRules::from_rules(vec![PolicyRule::impersonate(&["*"], &["*"])])
}

fn requester() -> UserInfo {
    UserInfo::service_account("kiali-auth", "kiali-impersonator")
}

/// What the API server believes for header lines that go through Kiali and client-go.
fn through_kiali(lines: &[(&str, &str)], rules: &ImpersonationRules) -> Result<UserInfo, apiserver::Denial> {
    let auth = header_strategy(&GoHeader::read(lines).unwrap());
    let sent = client_go_headers(&auth);
    apiserver::impersonate(&GoHeader::read(&sent).unwrap(), &requester(), rules)
}

/// What the API server believes for header lines sent to it directly.
fn direct(lines: &[(&str, &str)], rules: &ImpersonationRules) -> Result<UserInfo, apiserver::Denial> {
    apiserver::impersonate(&GoHeader::read(lines).unwrap(), &requester(), rules)
}

fn extra_keys(user: &UserInfo) -> Vec<&str> {
    user.extra.keys().map(String::as_str).collect()
}

#[test]
fn extra_keys_are_decoded_once_directly_and_double_encoded_through_kiali() {
    let deployed = ImpersonationRules::deployed().unwrap();
    let cases: [(&str, &str, &str); 3] = [
        // (key as the filter sends it, key the API server sees through Kiali, key it sees directly)
        ("impersonate-extra-acme.com%2Fteam", "acme.com%2fteam", "acme.com/team"),
        ("impersonate-extra-email", "email", "email"),
        ("impersonate-extra-Client-Address", "client-address", "client-address"),
    ];
    for (name, via_kiali, sent_directly) in cases {
        let lines = [("authorization", "Bearer tok"), ("impersonate-user", "alice"), (name, "v")];
        assert_eq!(extra_keys(&through_kiali(&lines, &everything()).unwrap()), [via_kiali], "{name}");
        assert_eq!(extra_keys(&direct(&lines, &everything()).unwrap()), [sent_directly], "{name}");
    }
    // With the shipped ClusterRole the double-encoded key is refused, named as RBAC saw it.
    let lines = [("impersonate-user", "alice"), ("impersonate-extra-acme.com%2Fteam", "eng")];
    let denial = through_kiali(&lines, &deployed).unwrap_err();
    assert_eq!((denial.code(), denial.attribute().as_deref()), (403, Some("userextras/acme.com%2fteam")));
    let allowed = [("impersonate-user", "alice"), ("impersonate-extra-email", "a@b")];
    assert_eq!(through_kiali(&allowed, &deployed).unwrap().extra, BTreeMap::from([("email".to_string(), vec!["a@b".to_string()])]));
}

#[test]
fn what_the_api_server_believes_through_kiali() {
    let deployed = ImpersonationRules::deployed().unwrap();
    let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    type Case<'a> = (&'a [(&'a str, &'a str)], Result<(&'a str, &'a [&'a str], &'a str), &'a str>);
    let cases: &[Case] = &[
        // Go trims the space: the cluster sees system:masters.
        (&[("impersonate-user", "alice"), ("impersonate-group", " system:masters")], Ok(("alice", &["system:masters", "system:authenticated"], ""))),
        // A comma-joined line is one group.
        (&[("impersonate-user", "alice"), ("impersonate-group", "a,b")], Ok(("alice", &["a,b", "system:authenticated"], ""))),
        // Kiali drops Impersonate-Uid.
        (&[("impersonate-user", "alice"), ("impersonate-uid", "42")], Ok(("alice", &["system:authenticated"], ""))),
        // Kiali ignores groups without a user: the API server sees the impersonator itself.
        (
            &[("impersonate-group", "system:masters")],
            Ok((IMPERSONATOR, &["system:serviceaccounts", "system:serviceaccounts:kiali-auth", "system:authenticated"], "")),
        ),
        // An extra the shipped ClusterRole does not grant.
        (&[("impersonate-user", "alice"), ("impersonate-extra-team", "eng")], Err("userextras/team")),
    ];
    for (lines, expected) in cases {
        let mut with_bearer = vec![("authorization", "Bearer tok")];
        with_bearer.extend_from_slice(lines);
        let got = through_kiali(&with_bearer, &deployed).map_err(|d| d.attribute().unwrap_or_default());
        let expected = expected
            .map(|(name, groups, uid)| UserInfo { name: name.into(), uid: uid.into(), groups: strings(groups), extra: BTreeMap::new() })
            .map_err(str::to_string);
        assert_eq!(got, expected, "{lines:?}");
    }
}

fn request(lines: &[(&str, &str)]) -> ClientRequest {
    lines.iter().fold(ClientRequest::get("/kiali/api/namespaces"), |r, (n, v)| r.header(n, v))
}

#[test]
fn kiali_and_api_server_stand_ins_end_to_end_over_sockets() {
    let kiali = KialiStandIn::start();
    let apiserver = kiali.apiserver().unwrap();
    let bearer = ("Authorization", "Bearer tok");
    type Case<'a> = (&'a [(&'a str, &'a str)], u16, Option<u16>, Option<&'a str>);
    let cases: &[Case] = &[
        // (request headers, Kiali status, API server status, expected in the API server's body)
        (&[bearer, ("Impersonate-User", "alice"), ("Impersonate-Group", " system:masters"), ("Impersonate-Extra-Email", "a@b")], 200, Some(201), None),
        (&[bearer, ("Impersonate-User", "alice"), ("Impersonate-Extra-Team", "eng")], 200, Some(403), Some("userextras/team")),
        (&[bearer, ("Impersonate-User", "alice"), ("Impersonate-Extra-acme.com%2Fteam", "eng")], 200, Some(403), Some("userextras/acme.com%2fteam")),
        (&[("Impersonate-User", "alice")], 401, None, Some("Token is missing")),
    ];
    for (lines, kiali_status, apiserver_status, mentioned) in cases {
        let before = apiserver.count();
        let response = client::send(kiali.addr(), &request(lines)).unwrap();
        assert_eq!(response.status, *kiali_status, "{lines:?}: {}", response.text());
        let exchange = kiali.last_exchange().unwrap();
        assert_eq!(exchange.apiserver_status, *apiserver_status, "{lines:?}");
        assert_eq!(apiserver.count(), before + usize::from(apiserver_status.is_some()));
        if let Some(text) = mentioned {
            assert!(response.text().contains(text), "{lines:?}: {}", response.text());
        }
        // What the API server believed, three ways: Kiali's body (as a test behind Envoy reads
        // it), Kiali's record, and the API server's own.
        assert_eq!(kiali::believed_user_in(&response.body), kiali.believed_user(), "{lines:?}");
        if apiserver_status.is_some() {
            assert_eq!(kiali.believed_user(), apiserver.believed_user());
        }
    }
    let first = &kiali.exchanges()[0];
    let believed = first.believed_user().unwrap();
    assert_eq!((believed.name.as_str(), believed.groups.as_slice()), ("alice", &["system:masters".to_string(), "system:authenticated".to_string()][..]));
    assert_eq!(believed.extra, BTreeMap::from([("email".to_string(), vec!["a@b".to_string()])]));
    let sent = &apiserver.exchanges()[0].request;
    assert_eq!(sent.headers_named("impersonate-group"), vec![b"system:masters".to_vec()]);
    assert_eq!(sent.header_str("authorization").as_deref(), Some("Bearer tok"));
    assert_eq!(kiali.count(), cases.len());
    assert_eq!(kiali.last().unwrap().path, "/kiali/api/namespaces");

    // Stopped on drop.
    let addr = kiali.addr();
    drop(kiali);
    assert!(client::get(addr, "/").is_err());
}

#[test]
fn api_server_stand_in_over_a_socket() {
    let only_tok: apiserver::Authenticator = Arc::new(|token: &str| (token == "tok").then(requester));
    let apiserver = ApiServerStandIn::start_with(everything(), only_tok).unwrap();
    let cases: &[(&[(&str, &str)], u16)] = &[
        (&[("Authorization", "Bearer tok"), ("Impersonate-User", "alice"), ("Impersonate-Extra-acme.com%2Fteam", "eng")], 201),
        (&[("Authorization", "Bearer tok"), ("Impersonate-Group", "admins")], 400),
        (&[("Authorization", "Bearer other"), ("Impersonate-User", "alice")], 401),
        (&[("Impersonate-User", "alice")], 401),
    ];
    for (lines, status) in cases {
        let response = client::send(apiserver.addr(), &request(lines)).unwrap();
        assert_eq!(response.status, *status, "{lines:?}: {}", response.text());
    }
    let first = &apiserver.exchanges()[0];
    // Sent directly, the key is decoded once.
    assert_eq!(extra_keys(first.believed.as_ref().unwrap()), ["acme.com/team"]);
    assert_eq!(first.body["status"]["userInfo"]["username"], "alice");
    assert_eq!(first.body["kind"], "SelfSubjectReview");
    assert_eq!(apiserver.exchanges()[1].body["reason"], "BadRequest");
}
