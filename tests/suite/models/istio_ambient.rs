//! What running the filter in ambient mode (a waypoint instead of Kiali's sidecar) would need,
//! from istio/istio source (master of 2026-08, commit 86c9f01f). docs/deployment.md's "Ambient
//! mode" says ambient is not supported; tests/suite/manifests/installers.rs keeps that section naming
//! every one of these, so the reason stays true to Istio.

#![allow(dead_code)]

/// (what is needed, a phrase the ambient section of docs/deployment.md must contain, the source).
pub const REQUIREMENTS: &[(&str, &str, &str)] = &[
    (
        "ztunnel delivers traffic to the waypoint and to Kiali over HBONE, port 15008, which the \
         NetworkPolicy must admit",
        "15008",
        "pilot/pkg/model/listener.go HBoneInboundListenPort = 15008",
    ),
    (
        "the ingress gateway sends traffic through the Service's waypoint only when the Service \
         is labelled istio.io/ingress-use-waypoint: \"true\"",
        "istio.io/ingress-use-waypoint",
        "pilot/pkg/serviceregistry/ambient/ambientindex.go IngressUseWaypoint",
    ),
    (
        "a waypoint builds outbound clusters only for services its routes reference, mesh \
         extension providers, JWKS hosts and services an EnvoyFilter names in the annotation \
         envoyfilter.istio.io/referenced-services: the API-server cluster must be asked for",
        "envoyfilter.istio.io/referenced-services",
        "pilot/pkg/networking/core/cluster.go (case model.Waypoint), \
         pilot/pkg/model/push_context.go extraServicesForProxy, pilot/pkg/model/envoyfilter.go",
    ),
    (
        "the projected token, the SDS ConfigMap and the credential injector in the waypoint's \
         Deployment, and the token RoleBinding for the waypoint's ServiceAccount",
        "waypoint's ServiceAccount",
        "the Gateway's spec.infrastructure.parametersRef (pilot/pkg/config/kube/gateway)",
    ),
    (
        "a waypoint that serves Kiali alone: the filter sets the impersonator's token on every \
         request it handles",
        "serves Kiali alone",
        "the filter's full-impersonation mode",
    ),
];
