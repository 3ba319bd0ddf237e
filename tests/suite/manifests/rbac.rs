//! RBAC least privilege and the cross-references between `deploy/*.yaml` and the plugin:
//! the token Role, the impersonation ClusterRole, bindings, the Kiali CR patch, the
//! DestinationRule and the NetworkPolicy.

use std::collections::BTreeSet;

use kiali_header_auth::config::FilterConfig;
use serde_json::{json, Value};

use crate::manifests::envoy_files::envoy_plugin_configs;
use crate::manifests::crds::embedded_plugin_configs;
use crate::manifests::files::{
    all_deploy_manifests, find, manifests_in, one, strings, top_level_deploy_manifests, Manifest,
};
use crate::manifests::kubernetes::{check_documents, is_dns_label, is_dns_subdomain};
use crate::manifests::{token_source, wasmplugin, wasmplugin_config, SERVICE_ACCOUNT_CA, WASMPLUGIN};

/// No `*` anywhere in a rule, and no non-resource URLs.
fn check_rbac_wildcards(manifests: &[Manifest]) -> Vec<String> {
    let mut errors = Vec::new();
    for role in manifests
        .iter()
        .filter(|m| m.kind() == "Role" || m.kind() == "ClusterRole")
    {
        let rules = role.doc["rules"].as_array().cloned().unwrap_or_default();
        if rules.is_empty() {
            errors.push(format!("{}: no rules", role.describe()));
        }
        if role.doc.get("aggregationRule").is_some() {
            errors.push(format!(
                "{}: aggregationRule pulls in rules from elsewhere",
                role.describe()
            ));
        }
        for (index, rule) in rules.iter().enumerate() {
            for field in ["verbs", "resources", "apiGroups", "resourceNames"] {
                for entry in strings(&rule[field]) {
                    if entry.contains('*') {
                        errors.push(format!(
                            "{} rules[{index}].{field}: wildcard {entry:?}",
                            role.describe()
                        ));
                    }
                }
            }
            if rule.get("nonResourceURLs").is_some() {
                errors.push(format!(
                    "{} rules[{index}]: nonResourceURLs",
                    role.describe()
                ));
            }
            if strings(&rule["verbs"]).is_empty() || strings(&rule["resources"]).is_empty() {
                errors.push(format!(
                    "{} rules[{index}]: verbs and resources must be listed",
                    role.describe()
                ));
            }
        }
    }
    errors
}

/// RoleBindings and ClusterRoleBindings point at roles defined in deploy/ and name
/// ServiceAccounts only; every role defined is bound.
fn check_bindings(manifests: &[Manifest]) -> Vec<String> {
    let mut errors = Vec::new();
    let mut bound = BTreeSet::new();
    for binding in manifests
        .iter()
        .filter(|m| m.kind() == "RoleBinding" || m.kind() == "ClusterRoleBinding")
    {
        let role_ref = &binding.doc["roleRef"];
        let role_kind = role_ref["kind"].as_str().unwrap_or("");
        let role_name = role_ref["name"].as_str().unwrap_or("");
        if role_ref["apiGroup"] != "rbac.authorization.k8s.io" {
            errors.push(format!(
                "{}: roleRef.apiGroup must be rbac.authorization.k8s.io",
                binding.describe()
            ));
        }
        let role_namespace = if role_kind == "Role" {
            binding.namespace()
        } else {
            ""
        };
        if binding.kind() == "ClusterRoleBinding" && role_kind != "ClusterRole" {
            errors.push(format!(
                "{}: a ClusterRoleBinding can only reference a ClusterRole",
                binding.describe()
            ));
        }
        let defined = manifests.iter().any(|m| {
            m.kind() == role_kind && m.name() == role_name && m.namespace() == role_namespace
        });
        if !defined {
            errors.push(format!(
                "{}: roleRef {role_kind} {role_namespace}/{role_name} is not defined in deploy/",
                binding.describe()
            ));
        }
        bound.insert((
            role_kind.to_string(),
            role_namespace.to_string(),
            role_name.to_string(),
        ));
        let subjects = binding.doc["subjects"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if subjects.is_empty() {
            errors.push(format!("{}: no subjects", binding.describe()));
        }
        for subject in subjects {
            let complete = subject["name"].as_str().is_some_and(is_dns_subdomain)
                && subject["namespace"].as_str().is_some_and(is_dns_label);
            if subject["kind"] != "ServiceAccount" || !complete {
                errors.push(format!(
                    "{}: subject {subject} must be a ServiceAccount with name and namespace",
                    binding.describe()
                ));
            }
        }
    }
    for role in manifests
        .iter()
        .filter(|m| m.kind() == "Role" || m.kind() == "ClusterRole")
    {
        let key = (
            role.kind().to_string(),
            role.namespace().to_string(),
            role.name().to_string(),
        );
        if !bound.contains(&key) {
            errors.push(format!("{}: defined but never bound", role.describe()));
        }
    }
    errors
}

fn subjects_of(binding: &Manifest) -> Vec<(String, String)> {
    binding.doc["subjects"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| {
            (
                s["namespace"].as_str().unwrap_or("").to_string(),
                s["name"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn bindings_to<'a>(manifests: &'a [Manifest], role: &Manifest) -> Vec<&'a Manifest> {
    let binding_kind = if role.kind() == "Role" {
        "RoleBinding"
    } else {
        "ClusterRoleBinding"
    };
    manifests
        .iter()
        .filter(|m| {
            m.kind() == binding_kind
                && m.namespace() == role.namespace()
                && m.doc["roleRef"]["kind"] == role.kind()
                && m.doc["roleRef"]["name"] == role.name()
        })
        .collect()
}

#[test]
fn deploy_rbac_has_no_wildcards() {
    let errors = check_rbac_wildcards(&top_level_deploy_manifests());
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn deploy_bindings_reference_defined_roles_and_service_accounts() {
    let manifests = top_level_deploy_manifests();
    let errors = check_bindings(&manifests);
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn deploy_token_role_only_creates_tokens_for_the_impersonator() {
    let manifests = top_level_deploy_manifests();
    let (namespace, service_account, _) = token_source(&wasmplugin_config());
    let role = one(&manifests, "Role");
    assert_eq!(
        role.namespace(),
        namespace,
        "{}: must live where the ServiceAccount does",
        role.describe()
    );
    assert_eq!(
        role.doc["rules"],
        json!([{
            "apiGroups": [""],
            "resources": ["serviceaccounts/token"],
            "resourceNames": [service_account],
            "verbs": ["create"]
        }]),
        "{}: exactly `create` on serviceaccounts/token for {service_account}",
        role.describe()
    );

    // Bound to the requester: Kiali's ServiceAccount, in the namespace the WasmPlugin runs in.
    let bindings = bindings_to(&manifests, role);
    assert_eq!(
        bindings.len(),
        1,
        "{}: expected one RoleBinding",
        role.describe()
    );
    let plugin_namespace = wasmplugin()["metadata"]["namespace"]
        .as_str()
        .unwrap()
        .to_string();
    // The operator's ServiceAccount (deploy/ is the operator install; overlays/helm renames it:
    // tests/suite/manifests/installers.rs).
    let operator = crate::manifests::kiali_installers::Installer::Operator
        .service_account(crate::manifests::kiali_installers::DEFAULT_INSTANCE);
    assert_eq!(subjects_of(bindings[0]), vec![(plugin_namespace, operator)]);
}

#[test]
fn deploy_impersonator_exists_where_the_plugin_asks_for_it() {
    let manifests = top_level_deploy_manifests();
    let (namespace, service_account, _) = token_source(&wasmplugin_config());
    let namespaces: Vec<&str> = find(&manifests, "Namespace")
        .iter()
        .map(|m| m.name())
        .collect();
    assert!(
        namespaces.contains(&namespace.as_str()),
        "namespace {namespace} not defined in deploy/"
    );
    let account = find(&manifests, "ServiceAccount")
        .into_iter()
        .find(|m| m.namespace() == namespace && m.name() == service_account)
        .unwrap_or_else(|| {
            panic!("ServiceAccount {namespace}/{service_account} not defined in deploy/")
        });
    assert_eq!(
        account.doc["automountServiceAccountToken"],
        json!(false),
        "no pod should carry the impersonator's token"
    );
}

/// Which impersonation resources a configuration needs: users always, groups if it can send a
/// group (mapped or static), uids if it maps a uid, one userextras/<key> per extra key it can send
/// (mapped from headers or JWT claims, or an audit extra).
fn impersonation_needed(config: &FilterConfig) -> BTreeSet<(String, String)> {
    let identity = config.identity.as_ref().expect("identity");
    let mut needed = BTreeSet::from([(String::new(), "users".to_string())]);
    if identity.may_send_groups() {
        needed.insert((String::new(), "groups".to_string()));
    }
    if identity.may_send_uid() {
        needed.insert(("authentication.k8s.io".to_string(), "uids".to_string()));
    }
    for key in identity.extra_keys() {
        needed.insert((
            "authentication.k8s.io".to_string(),
            format!("userextras/{key}"),
        ));
    }
    needed
}

fn check_impersonation_role(role: &Manifest) -> Vec<String> {
    let mut errors = Vec::new();
    for (index, rule) in role.doc["rules"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if strings(&rule["verbs"]) != ["impersonate"] {
            errors.push(format!(
                "{} rules[{index}]: verbs must be exactly [impersonate]",
                role.describe()
            ));
        }
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                let allowed = match group.as_str() {
                    "" => resource == "users" || resource == "groups",
                    "authentication.k8s.io" => {
                        resource == "uids" || resource.starts_with("userextras/")
                    }
                    _ => false,
                };
                if !allowed {
                    errors.push(format!(
                        "{} rules[{index}]: {resource:?} in group {group:?} is not an impersonation resource this filter uses",
                        role.describe()
                    ));
                }
            }
        }
    }
    errors
}

fn granted(role: &Manifest) -> BTreeSet<(String, String)> {
    let mut granted = BTreeSet::new();
    for rule in role.doc["rules"].as_array().cloned().unwrap_or_default() {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                granted.insert((group.clone(), resource));
            }
        }
    }
    granted
}

#[test]
fn deploy_impersonation_role_grants_only_impersonate_and_what_configs_send() {
    let manifests = top_level_deploy_manifests();
    let role = one(&manifests, "ClusterRole");
    let errors = check_impersonation_role(role);
    assert!(errors.is_empty(), "{errors:#?}");

    // Bound to the impersonator only.
    let (namespace, service_account, _) = token_source(&wasmplugin_config());
    let bindings = bindings_to(&manifests, role);
    assert_eq!(
        bindings.len(),
        1,
        "{}: expected one ClusterRoleBinding",
        role.describe()
    );
    assert_eq!(subjects_of(bindings[0]), vec![(namespace, service_account)]);

    // Every impersonation header the shipped production configurations can send is allowed;
    // otherwise the API server answers 403 to every request.
    let granted = granted(role);
    let mut shipped: Vec<(String, FilterConfig)> = vec![(WASMPLUGIN.to_string(), wasmplugin_config())];
    for manifest in all_deploy_manifests() {
        for (origin, config) in embedded_plugin_configs(&manifest) {
            shipped.push((origin, config.expect("valid plugin configuration")));
        }
    }
    for file in ["deploy/envoy/envoy.yaml", "deploy/envoy/envoy-jwt.yaml"] {
        for (_, config) in envoy_plugin_configs(file) {
            shipped.push((file.to_string(), config));
        }
    }
    for (origin, config) in shipped.into_iter().filter(|(_, c)| c.identity.is_some()) {
        let missing: Vec<_> = impersonation_needed(&config)
            .difference(&granted)
            .cloned()
            .collect();
        assert!(
            missing.is_empty(),
            "{origin} sends impersonation headers {} does not allow: {missing:?}",
            role.describe()
        );
    }
}

#[test]
fn rbac_checks_catch_wildcards_broad_grants_and_dangling_references() {
    let parse = |text: &str| -> Vec<Manifest> { manifests_in(text, "inline") };
    let manifests = parse(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: broad }
rules:
- { apiGroups: [""], resources: ["users", "serviceaccounts"], verbs: ["impersonate", "get"] }
- { apiGroups: ["authentication.k8s.io"], resources: ["userextras/*"], verbs: ["impersonate"] }
- { apiGroups: ["*"], resources: ["pods"], verbs: ["*"], resourceNames: ["*"] }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: dangling, namespace: kiali-auth }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: Role, name: missing }
subjects:
- { kind: User, name: alice }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: orphan }
rules:
- { apiGroups: [""], resources: ["serviceaccounts/token"], verbs: ["create"] }
"#,
    );
    let wildcards = check_rbac_wildcards(&manifests);
    for needle in [
        "rules[1].resources: wildcard \"userextras/*\"",
        "rules[2].verbs: wildcard \"*\"",
        "rules[2].apiGroups: wildcard \"*\"",
        "rules[2].resourceNames: wildcard \"*\"",
    ] {
        assert!(
            wildcards.iter().any(|e| e.contains(needle)),
            "{needle}: {wildcards:#?}"
        );
    }
    let broad = check_impersonation_role(&manifests[0]);
    for needle in [
        "rules[0]: verbs must be exactly [impersonate]",
        "\"serviceaccounts\" in group \"\"",
        "\"pods\" in group \"*\"",
    ] {
        assert!(
            broad.iter().any(|e| e.contains(needle)),
            "{needle}: {broad:#?}"
        );
    }
    let bindings = check_bindings(&manifests);
    for needle in [
        "roleRef Role kiali-auth/missing is not defined",
        "must be a ServiceAccount with name and namespace",
        "ClusterRole /broad (inline): defined but never bound",
    ] {
        assert!(
            bindings.iter().any(|e| e.contains(needle)),
            "{needle}: {bindings:#?}"
        );
    }
    let documents = check_documents(&manifests);
    assert!(
        documents
            .iter()
            .any(|e| e.contains("Role /orphan (inline): metadata.namespace: a namespaced resource should say its namespace")),
        "{documents:#?}"
    );
}

#[test]
fn deploy_kiali_patch_sets_header_strategy_and_the_sidecar_credential() {
    let manifests = top_level_deploy_manifests();
    let kiali = one(&manifests, "Kiali");
    assert_eq!(kiali.doc["apiVersion"], "kiali.io/v1alpha1");
    assert_eq!(kiali.doc["spec"]["auth"]["strategy"], "header");
    let plugin = wasmplugin();
    assert_eq!(kiali.namespace(), plugin["metadata"]["namespace"]);
    let deployment = &kiali.doc["spec"]["deployment"];
    assert_eq!(
        deployment["pod_labels"]["sidecar.istio.io/inject"], "true",
        "the filter needs Kiali's sidecar"
    );
    assert_eq!(
        deployment["pod_annotations"]["traffic.sidecar.istio.io/excludeOutboundPorts"], "443",
        "Kiali's own HTTPS to the API server must not go through the TLS-originating cluster"
    );

    // The bootstrap credential: a projected, audience-less, one-hour token of Kiali's own
    // ServiceAccount (the token Role's subject) next to the SDS resource, mounted into
    // istio-proxy where the credential injector reads it. No long-lived Secret.
    let annotations = &deployment["pod_annotations"];
    let json_annotation = |name: &str| -> Value {
        serde_json::from_str(annotations[name].as_str().unwrap_or_else(|| panic!("{name} is set")))
            .unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
    };
    let volumes = json_annotation("sidecar.istio.io/userVolume");
    let mounts = json_annotation("sidecar.istio.io/userVolumeMount");
    let (volume_name, volume) = volumes.as_object().unwrap().iter().next().expect("one volume");
    assert_eq!(mounts[volume_name.as_str()]["mountPath"], crate::manifests::BOOTSTRAP_DIR);
    assert_eq!(mounts[volume_name.as_str()]["readOnly"], true);
    let sources = volume["projected"]["sources"].as_array().expect("a projected volume");
    let token = sources
        .iter()
        .find_map(|s| s.get("serviceAccountToken"))
        .expect("a serviceAccountToken source");
    assert_eq!(token["path"], "token");
    assert_eq!(token["expirationSeconds"], 3600);
    assert!(token.get("audience").is_none(), "the API server's default audience");
    let config_map = sources
        .iter()
        .find_map(|s| s.get("configMap"))
        .expect("the SDS resource from a ConfigMap");
    let defined = find(&manifests, "ConfigMap")
        .into_iter()
        .find(|m| m.name() == config_map["name"] && m.namespace() == kiali.namespace())
        .unwrap_or_else(|| panic!("ConfigMap {} not defined in deploy/", config_map["name"]));
    let sds = defined.doc["data"]["sds.yaml"].as_str().unwrap_or("");
    assert!(sds.contains(&format!("filename: {}/token", crate::manifests::BOOTSTRAP_DIR)), "{sds}");
    assert!(find(&manifests, "Secret").is_empty(), "no long-lived token Secret in deploy/");
    let role = one(&manifests, "Role");
    let requester = subjects_of(bindings_to(&manifests, role)[0]).remove(0);
    assert_eq!(requester.0, kiali.namespace(), "the requester is Kiali's ServiceAccount");
}

#[test]
fn deploy_destination_rule_gives_the_token_cluster_tls() {
    let manifests = top_level_deploy_manifests();
    let config = wasmplugin_config();
    let source = config.token_source.as_ref().unwrap();
    let plugin = wasmplugin();
    let rule = one(&manifests, "DestinationRule");
    let host = rule.doc["spec"]["host"].as_str().unwrap();
    assert_eq!(
        source.cluster,
        format!("outbound|443||{host}"),
        "the plugin's cluster is Istio's cluster for {host}"
    );
    assert_eq!(rule.namespace(), plugin["metadata"]["namespace"]);
    assert_eq!(
        rule.doc["spec"]["workloadSelector"], plugin["spec"]["selector"],
        "only Kiali's sidecar"
    );
    assert_eq!(rule.doc["spec"]["exportTo"], json!(["."]));
    let tls = &rule.doc["spec"]["trafficPolicy"]["tls"];
    assert_eq!(tls["mode"], "SIMPLE");
    assert_eq!(tls["sni"], source.authority.as_str());
    assert_eq!(tls["subjectAltNames"], json!([source.authority]));
    assert_eq!(tls["caCertificates"], SERVICE_ACCOUNT_CA);
}

#[test]
fn deploy_network_policy_admits_only_the_authenticating_proxy() {
    let manifests = top_level_deploy_manifests();
    let plugin = wasmplugin();
    let policy = one(&manifests, "NetworkPolicy");
    assert_eq!(policy.namespace(), plugin["metadata"]["namespace"]);
    assert_eq!(
        policy.doc["spec"]["podSelector"], plugin["spec"]["selector"],
        "must select Kiali's pods"
    );
    assert!(strings(&policy.doc["spec"]["policyTypes"]).contains(&"Ingress".to_string()));
    let rules = policy.doc["spec"]["ingress"]
        .as_array()
        .expect("ingress rules");
    assert!(!rules.is_empty());
    let kiali_port = plugin["spec"]["match"][0]["ports"][0]["number"].clone();
    for (index, rule) in rules.iter().enumerate() {
        let from = rule["from"].as_array().cloned().unwrap_or_default();
        assert!(!from.is_empty(), "ingress[{index}] admits every source");
        for peer in &from {
            let selects_something = peer["podSelector"]["matchLabels"]
                .as_object()
                .is_some_and(|m| !m.is_empty())
                || peer["namespaceSelector"]["matchLabels"]
                    .as_object()
                    .is_some_and(|m| !m.is_empty());
            assert!(
                selects_something && peer.get("ipBlock").is_none(),
                "ingress[{index}]: {peer} is too broad"
            );
        }
        let ports: Vec<Value> = rule["ports"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|p| p["port"].clone())
            .collect();
        assert_eq!(
            ports,
            vec![kiali_port.clone()],
            "ingress[{index}] must admit Kiali's HTTP port only"
        );
    }
}
