//! How the two Kiali installers really build Kiali's pod, from their source (kiali/helm-charts at
//! c7b6cf98, 2026-07; kiali/kiali-operator at f64e75eb, 2026-07): the ServiceAccount it runs as,
//! the labels its pods carry, and the operator's default pod annotations. The deploy/ files are
//! checked against this, not against our reading of them.

#![allow(dead_code)]

use serde_json::{json, Map, Value};

/// `deployment.instance_name`, the same default in both installers (helm-charts
/// kiali-server/values.yaml; kiali-operator roles/default/kiali-deploy/defaults/main.yml).
pub const DEFAULT_INSTANCE: &str = "kiali";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installer {
    /// The kiali-server Helm chart.
    Helm,
    /// The Kiali operator (a Kiali CR).
    Operator,
}

pub const INSTALLERS: [Installer; 2] = [Installer::Helm, Installer::Operator];

impl Installer {
    pub fn name(self) -> &'static str {
        match self {
            Installer::Helm => "helm",
            Installer::Operator => "operator",
        }
    }

    /// The ServiceAccount Kiali's pod runs as.
    /// - Helm: kiali-server/templates/serviceaccount.yaml and deployment.yaml
    ///   (`serviceAccountName: {{ include "kiali-server.fullname" . }}`), where _helpers.tpl
    ///   defines fullname as `.Values.deployment.instance_name`: `kiali`.
    /// - Operator: roles/default/kiali-deploy/templates/kubernetes/serviceaccount.yaml and
    ///   deployment.yaml (`serviceAccount: {{ instance_name }}-service-account`):
    ///   `kiali-service-account`.
    pub fn service_account(self, instance: &str) -> String {
        match self {
            Installer::Helm => instance.to_string(),
            Installer::Operator => format!("{instance}-service-account"),
        }
    }

    /// The labels on Kiali's pods (without user pod_labels or extra_labels).
    /// - Helm: _helpers.tpl `kiali-server.labels` (app: kiali, version, app.kubernetes.io/version,
    ///   app.kubernetes.io/part-of: kiali, helm.sh/chart) plus `kiali-server.selectorLabels`
    ///   (app.kubernetes.io/name: kiali, app.kubernetes.io/instance: <fullname>).
    /// - Operator: roles/default/kiali-deploy/tasks/main.yml `kiali_resource_metadata_labels`
    ///   (app: kiali, version, app.kubernetes.io/name: kiali, app.kubernetes.io/version,
    ///   app.kubernetes.io/instance: <instance_name>, app.kubernetes.io/part-of: kiali), used as
    ///   the pod template's labels in templates/kubernetes/deployment.yaml.
    pub fn pod_labels(self, instance: &str) -> Map<String, Value> {
        let mut labels = json!({
            "app": "kiali",
            "version": "v2.x",
            "app.kubernetes.io/name": "kiali",
            "app.kubernetes.io/version": "v2.x",
            "app.kubernetes.io/instance": instance,
            "app.kubernetes.io/part-of": "kiali",
        });
        if self == Installer::Helm {
            labels["helm.sh/chart"] = json!("kiali-server-2.x");
        }
        labels.as_object().cloned().unwrap_or_default()
    }

    /// The pod annotations the installer sets by default, which a user's own
    /// `deployment.pod_annotations` REPLACES in the operator (roles/default/kiali-deploy/tasks/
    /// snake_camel_case.yaml pops the default and combines the CR's value) and MERGES WITH in Helm
    /// (values are coalesced map by map). Both defaults: defaults/main.yml and values.yaml
    /// `pod_annotations: proxy.istio.io/config: '{ "holdApplicationUntilProxyStarts": true }'`.
    pub fn default_pod_annotations(self) -> Map<String, Value> {
        json!({ "proxy.istio.io/config": "{ \"holdApplicationUntilProxyStarts\": true }" })
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    /// The pod annotations Kiali ends up with when the user sets `pod_annotations`.
    pub fn effective_pod_annotations(self, user: &Map<String, Value>) -> Map<String, Value> {
        match self {
            Installer::Operator if !user.is_empty() => user.clone(),
            _ => {
                let mut merged = self.default_pod_annotations();
                merged.extend(user.iter().map(|(k, v)| (k.clone(), v.clone())));
                merged
            }
        }
    }
}

/// The settings keys (dotted paths) kiali-header-auth sets, which both installers read under the
/// same names: helm-charts kiali-server/values.yaml (`auth.strategy`, `deployment.pod_labels`,
/// `deployment.pod_annotations`, `deployment.network_policy.enabled`) and the operator's
/// roles/default/kiali-deploy/defaults/main.yml (the same keys under the CR's `spec`).
pub const SETTINGS: &[&str] = &[
    "auth.strategy",
    "deployment.pod_labels",
    "deployment.pod_annotations",
    "deployment.network_policy.enabled",
];

/// The labels of a pod that is NOT this Kiali but carries `app: kiali`: another Kiali instance in
/// another namespace (a second operator-managed CR, a team's own Kiali), which Istio's root
/// namespace would also reach.
pub fn another_kiali_pod() -> Map<String, Value> {
    Installer::Operator.pod_labels("kiali-team-a")
}

/// Whether a label selector (matchLabels) selects a pod with these labels.
pub fn selects(match_labels: &Value, pod: &Map<String, Value>) -> bool {
    match match_labels.as_object() {
        Some(wanted) if !wanted.is_empty() => wanted.iter().all(|(k, v)| pod.get(k) == Some(v)),
        _ => true,
    }
}
