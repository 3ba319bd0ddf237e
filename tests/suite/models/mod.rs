//! Models of how Istio and the Kiali installers build what the manifests meet, shared by the
//! manifest checks and the rotation test.

pub mod istio_ambient;
pub mod istio_cluster;
pub mod istio_releases;
pub mod kiali_installers;
