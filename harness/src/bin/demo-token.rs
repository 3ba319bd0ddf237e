//! Prints a JWT signed with the demo issuer's key (`harness::jwt::TestIssuer::demo`), which
//! `envoy-jwt.yaml`'s `jwt_authn` accepts. Optional argument: the claims as JSON (default
//! `harness::jwt::demo_claims()`); `--jwks` prints the public key set instead. For `make run`'s
//! JWT mode:
//!
//!   curl -H "Authorization: Bearer $(cargo run -q -p harness --bin demo-token)" localhost:10000/api/namespaces

fn main() {
    let argument = std::env::args().nth(1);
    if argument.as_deref() == Some("--jwks") {
        println!("{}", harness::jwt::TestIssuer::demo().jwks());
        return;
    }
    let claims = match argument {
        None => harness::jwt::demo_claims(),
        Some(text) => match serde_json::from_str(&text) {
            Ok(claims) => claims,
            Err(error) => {
                eprintln!("demo-token: the argument must be a JSON object of claims: {error}");
                std::process::exit(2);
            }
        },
    };
    println!("{}", harness::jwt::TestIssuer::demo().demo_token(claims));
}
