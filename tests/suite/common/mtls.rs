//! An Envoy whose listener requires a client certificate, and `curl` as the mTLS client: the
//! peer principal Envoy reports is the client certificate's URI SAN (a SPIFFE ID, as in Istio).
//! Certificates are made with `openssl` in a temporary directory.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use harness::{Envoy, EnvoyConfig};

pub struct MtlsEnvoy {
    pub envoy: Envoy,
    pub port: u16,
    dir: tempfile::TempDir,
}

fn openssl(dir: &tempfile::TempDir, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir.path())
        .output()
        .expect("openssl");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl MtlsEnvoy {
    /// Starts `config` with TLS on its listener, requiring a client certificate signed by a fresh
    /// CA; the client certificate carries `client_uri` as its URI SAN.
    pub fn start(config: &EnvoyConfig, client_uri: &str) -> MtlsEnvoy {
        let dir = tempfile::tempdir().unwrap();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"];
        let signed = ["req", "-x509", "-CA", "ca.crt", "-CAkey", "ca.key"];
        openssl(&dir, &[&["req", "-x509"][..], &ec, &["-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=test-ca"]].concat());
        openssl(&dir, &[&signed[..], &ec, &[
            "-keyout", "server.key", "-out", "server.crt", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ]].concat());
        let san = format!("subjectAltName=URI:{client_uri}");
        openssl(&dir, &[&signed[..], &ec, &[
            "-keyout", "client.key", "-out", "client.crt", "-subj", "/CN=client", "-addext", &san,
        ]].concat());
        let file = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
        let tls = format!(
            "    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_certificates:
            - certificate_chain: {{ filename: {} }}
              private_key: {{ filename: {} }}
            validation_context:
              trusted_ca: {{ filename: {} }}
      filters:
",
            file("server.crt"),
            file("server.key"),
            file("ca.crt")
        );
        let bootstrap = config.render().replacen("    - filters:\n", &tls, 1);
        std::fs::write(dir.path().join("envoy.yaml"), bootstrap).unwrap();
        let launch = harness::envoy::Launch::new(dir.path().join("envoy.yaml"), config.listener_port, config.admin_port);
        let envoy = Envoy::spawn(launch).unwrap();
        envoy.wait_ready(Duration::from_secs(30), None).unwrap();
        MtlsEnvoy {
            envoy,
            port: config.listener_port,
            dir,
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// GET `path` with `headers` through curl; with or without the client certificate. Returns
    /// the status code curl printed ("000" when the handshake failed).
    pub fn get(&self, path: &str, headers: &[(&str, &str)], with_client_certificate: bool) -> String {
        let mut command = Command::new("curl");
        command.args(["-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}"]);
        command.arg("--cacert").arg(self.file("ca.crt"));
        if with_client_certificate {
            command.arg("--cert").arg(self.file("client.crt"));
            command.arg("--key").arg(self.file("client.key"));
        }
        for (name, value) in headers {
            command.arg("-H").arg(format!("{name}: {value}"));
        }
        command.arg(format!("https://127.0.0.1:{}{path}", self.port));
        let output = command.output().expect("curl");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}
