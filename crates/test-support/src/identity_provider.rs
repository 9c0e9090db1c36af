//! An OIDC identity provider for tests: it serves its JWKS over HTTP on a
//! loopback port and signs tokens with an RS256 key (a fixture made for
//! these tests) and an ES256 key (made per run), and can rotate the ES256
//! key to see that verifiers fetch the new one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A 2048-bit RSA key (PKCS#1 DER), generated for these tests only.
const RSA_KEY_DER: &[u8] = include_bytes!("../fixtures/oidc-rsa-2048.der");

pub const TEST_ISSUER: &str = "https://idp.test.switchboard";
pub const TEST_AUDIENCE: &str = "switchboard";

/// Which key signs a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    Rs256,
    Es256,
}

struct Keys {
    es256: EcdsaKeyPair,
    es256_kid: String,
    /// Also published: the keys rotated out, still valid for old tokens.
    retired_es256: Vec<(String, Vec<u8>)>,
}

pub struct TestIdentityProvider {
    rsa: RsaKeyPair,
    keys: Arc<Mutex<Keys>>,
    random: SystemRandom,
    /// `http://127.0.0.1:{port}/jwks`.
    pub jwks_url: String,
    fetches: Arc<AtomicUsize>,
    stop: CancellationToken,
}

fn new_es256(random: &SystemRandom) -> EcdsaKeyPair {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, random).expect("an ES256 key");
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), random).expect("the ES256 key")
}

fn es256_jwk(kid: &str, point: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
    })
}

impl TestIdentityProvider {
    /// Starts serving the JWKS; stops when dropped.
    pub async fn start() -> TestIdentityProvider {
        let random = SystemRandom::new();
        let rsa = RsaKeyPair::from_der(RSA_KEY_DER).expect("the RSA fixture");
        let keys = Arc::new(Mutex::new(Keys {
            es256: new_es256(&random),
            es256_kid: "es-1".to_owned(),
            retired_es256: Vec::new(),
        }));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let jwks_url = format!("http://{}/jwks", listener.local_addr().expect("bound"));
        let provider = TestIdentityProvider {
            rsa,
            keys,
            random,
            jwks_url,
            fetches: Arc::new(AtomicUsize::new(0)),
            stop: CancellationToken::new(),
        };
        let rsa_jwk = provider.rsa_jwk();
        let (keys, fetches, stop) = (Arc::clone(&provider.keys), Arc::clone(&provider.fetches), provider.stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = stop.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((mut stream, _)) = accepted else { continue };
                let body = {
                    let keys = switchboard_core::sync::lock_unpoisoned(&keys);
                    let mut published =
                        vec![rsa_jwk.clone(), es256_jwk(&keys.es256_kid, keys.es256.public_key().as_ref())];
                    published.extend(keys.retired_es256.iter().map(|(kid, point)| es256_jwk(kid, point)));
                    serde_json::json!({ "keys": published }).to_string()
                };
                fetches.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut request = [0_u8; 4096];
                    let _ = stream.read(&mut request).await;
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        provider
    }

    fn rsa_jwk(&self) -> serde_json::Value {
        let public: ring::rsa::PublicKeyComponents<Vec<u8>> = self.rsa.public().into();
        serde_json::json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": "rsa-1",
            "n": URL_SAFE_NO_PAD.encode(&public.n),
            "e": URL_SAFE_NO_PAD.encode(&public.e),
        })
    }

    /// How many times the JWKS was fetched.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// A new ES256 key signs from now on, under a new key id; the old one
    /// stays published.
    pub fn rotate_es256(&self) {
        let mut keys = switchboard_core::sync::lock_unpoisoned(&self.keys);
        let next = keys.retired_es256.len() + 2;
        let old_kid = std::mem::replace(&mut keys.es256_kid, format!("es-{next}"));
        let old_point = keys.es256.public_key().as_ref().to_vec();
        keys.retired_es256.push((old_kid, old_point));
        keys.es256 = new_es256(&self.random);
    }

    /// Claims of a token from this provider for `subject` valid for the
    /// next `valid_for_secs` (negative: expired), with `extra` claims.
    pub fn claims(subject: &str, valid_for_secs: i64, extra: serde_json::Value) -> serde_json::Value {
        let now = switchboard_core::time::now_millis() / 1000;
        let mut claims = serde_json::json!({
            "iss": TEST_ISSUER, "aud": [TEST_AUDIENCE, "another-api"], "sub": subject,
            "iat": now, "nbf": now - 5, "exp": now + valid_for_secs,
        });
        if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
            claims.extend(extra.clone());
        }
        claims
    }

    /// `claims` signed by `signer`'s current key.
    pub fn token(&self, signer: Signer, claims: &serde_json::Value) -> String {
        let kid = match signer {
            Signer::Rs256 => "rsa-1".to_owned(),
            Signer::Es256 => switchboard_core::sync::lock_unpoisoned(&self.keys).es256_kid.clone(),
        };
        let alg = match signer {
            Signer::Rs256 => "RS256",
            Signer::Es256 => "ES256",
        };
        self.signed(&serde_json::json!({"alg": alg, "typ": "JWT", "kid": kid}), claims, signer)
    }

    /// `claims` under any `header`, signed by `signer`'s current key (for
    /// tokens that lie about their algorithm or key).
    pub fn signed(&self, header: &serde_json::Value, claims: &serde_json::Value, signer: Signer) -> String {
        let signing_input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signature = match signer {
            Signer::Rs256 => {
                let mut signature = vec![0_u8; self.rsa.public().modulus_len()];
                self.rsa
                    .sign(&RSA_PKCS1_SHA256, &self.random, signing_input.as_bytes(), &mut signature)
                    .expect("RS256 signature");
                signature
            }
            Signer::Es256 => switchboard_core::sync::lock_unpoisoned(&self.keys)
                .es256
                .sign(&self.random, signing_input.as_bytes())
                .expect("ES256 signature")
                .as_ref()
                .to_vec(),
        };
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// The `[auth.oidc]` that trusts this provider.
    pub fn config(&self) -> switchboard_platform::config::OidcConfig {
        switchboard_platform::config::OidcConfig {
            issuer: TEST_ISSUER.to_owned(),
            audience: TEST_AUDIENCE.to_owned(),
            jwks_url: self.jwks_url.clone(),
            ..switchboard_platform::config::OidcConfig::default()
        }
    }
}

impl Drop for TestIdentityProvider {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
