//! `rbac`: the ClusterRole the configurations need, from `kiali_header_auth::rbac::needed_permissions`
//! (the table the RBAC self-check asks the API server about), as YAML ready to apply.

use kiali_header_auth::config::{FilterConfig, TokenSourceKind};
use kiali_header_auth::rbac::needed_permissions;

pub const ROLE_NAME: &str = "kiali-header-auth-impersonate";

/// The ClusterRole (and its binding, for a `kubernetes_token_request` source) that grants every
/// permission the `configs` need. `origins` are named in the header comment.
pub fn cluster_role_yaml(configs: &[(String, FilterConfig)]) -> String {
    // (apiGroup, resources) in first-needed order; resources deduplicated.
    let mut groups: Vec<(&'static str, Vec<String>)> = Vec::new();
    let mut subjects: Vec<(String, String)> = Vec::new();
    let mut other_sources = false;
    for (_, config) in configs {
        let Some(identity) = &config.identity else { continue };
        for permission in needed_permissions(identity) {
            let resource = permission.rbac_resource();
            match groups.iter_mut().find(|(group, _)| *group == permission.group) {
                Some((_, resources)) if resources.contains(&resource) => {}
                Some((_, resources)) => resources.push(resource),
                None => groups.push((permission.group, vec![resource])),
            }
        }
        match config.token_source.as_ref().map(|source| &source.kind) {
            Some(TokenSourceKind::KubernetesTokenRequest { namespace, service_account, .. }) => {
                let subject = (namespace.clone(), service_account.clone());
                if !subjects.contains(&subject) {
                    subjects.push(subject);
                }
            }
            Some(_) => other_sources = true,
            None => {}
        }
    }
    let mut out = String::from("# The impersonation kiali-header-auth needs for:\n");
    for (origin, _) in configs {
        out.push_str(&format!("#   {origin}\n"));
    }
    if groups.is_empty() {
        out.push_str("# Strip-only: the filter impersonates no one, so no ClusterRole is needed.\n");
        return out;
    }
    out.push_str(
        "# The rules are the permissions the RBAC self-check asks about (rbac::needed_permissions).\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n",
    );
    out.push_str(&format!("  name: {ROLE_NAME}\n  labels:\n    app.kubernetes.io/part-of: kiali-header-auth\nrules:\n"));
    for (group, resources) in &groups {
        out.push_str(&format!("- apiGroups: [{}]\n", quoted(group)));
        let list: Vec<String> = resources.iter().map(|r| quoted(r)).collect();
        out.push_str(&format!("  resources: [{}]\n  verbs: [\"impersonate\"]\n", list.join(", ")));
    }
    if !subjects.is_empty() {
        out.push_str(&format!(
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: {ROLE_NAME}\n  \
             labels:\n    app.kubernetes.io/part-of: kiali-header-auth\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  \
             kind: ClusterRole\n  name: {ROLE_NAME}\nsubjects:\n"
        ));
        for (namespace, name) in &subjects {
            out.push_str(&format!("- kind: ServiceAccount\n  name: {name}\n  namespace: {namespace}\n"));
        }
    }
    if other_sources {
        out.push_str("# Bind the ClusterRole to the identity of the OAuth2 token source's tokens as well.\n");
    }
    out
}

/// A YAML (and JSON) double-quoted string.
fn quoted(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}
