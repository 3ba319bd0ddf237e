//! The text form of `explain`.

use crate::explain::{Explanation, Outcome};

fn lines(out: &mut String, label: &str, items: &[(String, String)]) {
    out.push_str(&format!("  {label}:\n"));
    if items.is_empty() {
        out.push_str("    (none)\n");
    }
    for (name, value) in items {
        out.push_str(&format!("    {name}: {value}\n"));
    }
}

pub fn explanation(explanation: &Explanation) -> String {
    let mut out = format!("configuration: {} ({})\n", explanation.configuration, explanation.mode);
    match &explanation.outcome {
        Outcome::Refused { status, reason, body } => {
            out.push_str(&format!("the filter REFUSES the request: {status} {reason}\n  body: {body}\n"));
            out.push_str("Kiali and the API server never see it.\n");
        }
        Outcome::LoggedOut { status, location, set_cookie } => {
            out.push_str(&format!("the filter answers the logout path: {status} to {location}\n"));
            for cookie in set_cookie {
                out.push_str(&format!("  set-cookie: {cookie}\n"));
            }
            out.push_str("Kiali and the API server never see it.\n");
        }
        Outcome::Forwarded { remove, add, authorization, impersonation, .. } => {
            out.push_str("the filter forwards the request to Kiali\n");
            out.push_str(&format!(
                "  removes: {}\n",
                if remove.is_empty() { "(nothing)".to_string() } else { remove.join(", ") }
            ));
            lines(&mut out, "adds", add);
            if let Some(value) = authorization {
                out.push_str(&format!("  sets authorization: {value}\n"));
            }
            lines(&mut out, "Impersonate-* Kiali receives", impersonation);
        }
    }
    if let Some(belief) = &explanation.cluster {
        if let Some(auth) = &belief.kiali {
            out.push_str(&format!(
                "Kiali's header strategy reads: user {:?}, groups {:?}, extras {:?} (Impersonate-Uid is not read)\n",
                auth.impersonate, auth.impersonate_groups, auth.impersonate_user_extra
            ));
        }
        match &belief.user {
            Some(user) => {
                out.push_str(&format!("the API server authenticates {} and believes:\n", belief.requester));
                out.push_str(&format!("  user: {}\n", user.name));
                if !user.uid.is_empty() {
                    out.push_str(&format!("  uid: {}\n", user.uid));
                }
                out.push_str(&format!("  groups: {:?}\n", user.groups));
                for (key, values) in &user.extra {
                    out.push_str(&format!("  extra {key}: {values:?}\n"));
                }
            }
            None => out.push_str(&format!("the request FAILS with {}: {}\n", belief.status, belief.message)),
        }
    }
    for note in &explanation.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    out
}
