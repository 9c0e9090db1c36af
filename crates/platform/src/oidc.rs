//! Sign-in with the operator's identity provider (OIDC): a bearer JWT
//! signed with RS256 or ES256 by a key of the provider's JWKS is checked for
//! its issuer, audience and validity window, and its claims become the
//! [`Principal`]: role, tenant (tenant roles) and agent (agents). The JWKS
//! is fetched at start, every `jwks_refresh_secs`, and soon after a token
//! names a key id not seen yet (the provider rotated its keys).
//!
//! Never accepted: `alg` `none` or any HMAC algorithm, a key whose type
//! does not match `alg`, a token without `exp` or `sub`, the `service` role.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;
use switchboard_core::{AgentId, Error, Principal, Role, TenantId};
use tokio::sync::Notify;

use crate::config::OidcConfig;

/// The longest bearer token taken as a JWT; longer ones are refused unread.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// The largest JWKS document read.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// How long one JWKS fetch may take.
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The shortest time between two fetches when unknown key ids ask for
/// them, so a flood of forged key ids cannot flood the provider.
const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(2);

/// A public key of the provider, by the algorithm it verifies.
#[derive(Debug, Clone, PartialEq, Eq)]
enum VerificationKey {
    Rs256 {
        modulus: Vec<u8>,
        exponent: Vec<u8>,
    },
    /// The uncompressed P-256 point: `0x04 || x || y`.
    Es256 {
        point: Vec<u8>,
    },
}

impl VerificationKey {
    fn algorithm(&self) -> &'static str {
        match self {
            VerificationKey::Rs256 { .. } => "RS256",
            VerificationKey::Es256 { .. } => "ES256",
        }
    }

    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            VerificationKey::Rs256 { modulus, exponent } => RsaPublicKeyComponents { n: modulus, e: exponent }
                .verify(&RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
            VerificationKey::Es256 { point } => {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).verify(message, signature).is_ok()
            }
        }
    }
}

/// One entry of a JWKS document, as far as it is read.
#[derive(Debug, Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    key_use: Option<String>,
    alg: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

#[derive(Debug, Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

fn base64url(value: Option<&String>) -> Option<Vec<u8>> {
    value.and_then(|value| URL_SAFE_NO_PAD.decode(value.trim_end_matches('=')).ok())
}

/// The signing keys of a JWKS document by key id; keys for encryption, of
/// other types or curves, or without a key id are left out.
fn parse_jwks(document: &[u8]) -> Result<HashMap<String, VerificationKey>, Error> {
    let set: JwkSet =
        serde_json::from_slice(document).map_err(|error| Error::unavailable(format!("JWKS is not JSON: {error}")))?;
    let mut keys = HashMap::new();
    for jwk in set.keys {
        if jwk.key_use.as_deref().is_some_and(|key_use| key_use != "sig") {
            continue;
        }
        let Some(kid) = jwk.kid.clone() else { continue };
        let key = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("RSA", _) => match (base64url(jwk.n.as_ref()), base64url(jwk.e.as_ref())) {
                (Some(modulus), Some(exponent)) => VerificationKey::Rs256 { modulus, exponent },
                _ => continue,
            },
            ("EC", Some("P-256")) => match (base64url(jwk.x.as_ref()), base64url(jwk.y.as_ref())) {
                (Some(x), Some(y)) if x.len() == 32 && y.len() == 32 => {
                    let mut point = Vec::with_capacity(65);
                    point.push(0x04);
                    point.extend_from_slice(&x);
                    point.extend_from_slice(&y);
                    VerificationKey::Es256 { point }
                }
                _ => continue,
            },
            _ => continue,
        };
        // A key published for one algorithm is never used for another.
        if jwk.alg.as_deref().is_some_and(|alg| alg != key.algorithm()) {
            continue;
        }
        keys.insert(kid, key);
    }
    Ok(keys)
}

#[derive(Debug, Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
}

/// `aud` is one string or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::One(one) => one == audience,
            Audience::Many(many) => many.iter().any(|one| one == audience),
        }
    }
}

#[derive(Debug, Deserialize)]
struct RegisteredClaims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Audience>,
    exp: Option<i64>,
    nbf: Option<i64>,
}

fn refused(reason: &'static str, message: impl Into<String>) -> Error {
    Error::unauthenticated(message).with_reason(reason)
}

/// Whether a bearer credential is a JWT (three base64url parts, the first a
/// JSON object) rather than an API key.
pub fn looks_like_jwt(credential: &str) -> bool {
    credential.starts_with("eyJ") && credential.split('.').count() == 3
}

/// Verifies the provider's tokens with the keys of its JWKS.
pub struct OidcVerifier {
    config: OidcConfig,
    http: reqwest::Client,
    keys: RwLock<Arc<HashMap<String, VerificationKey>>>,
    /// Woken when a token names a key id the last JWKS did not have.
    unknown_key_seen: Notify,
}

impl OidcVerifier {
    pub fn new(config: &OidcConfig) -> anyhow::Result<OidcVerifier> {
        config.validate()?;
        // No redirects: one could lead the fetch to plain http.
        let http = reqwest::Client::builder()
            .timeout(JWKS_FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(OidcVerifier {
            config: config.clone(),
            http,
            keys: RwLock::new(Arc::new(HashMap::new())),
            unknown_key_seen: Notify::new(),
        })
    }

    fn keys(&self) -> Arc<HashMap<String, VerificationKey>> {
        Arc::clone(&self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Fetches the JWKS again; the keys in force are kept if it fails.
    pub async fn refresh(&self) -> Result<(), Error> {
        let fetch_failed = |error: reqwest::Error| Error::unavailable(format!("JWKS not fetched: {error}"));
        let response = self.http.get(&self.config.jwks_url).send().await.map_err(fetch_failed)?;
        let response = response.error_for_status().map_err(fetch_failed)?;
        if response.content_length().is_some_and(|length| length > MAX_JWKS_BYTES as u64) {
            return Err(Error::unavailable("JWKS is larger than 1 MiB"));
        }
        let document = response.bytes().await.map_err(fetch_failed)?;
        if document.len() > MAX_JWKS_BYTES {
            return Err(Error::unavailable("JWKS is larger than 1 MiB"));
        }
        let keys = parse_jwks(&document)?;
        tracing::debug!(keys = keys.len(), "jwks fetched");
        *self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
        Ok(())
    }

    /// Fetches the JWKS now, every `jwks_refresh_secs`, and after a token
    /// names an unknown key id (at most every 2 s), until `shutdown`.
    pub async fn keep_fresh(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let period = Duration::from_secs(self.config.jwks_refresh_secs.max(1));
        loop {
            let fetched_at = tokio::time::Instant::now();
            if let Err(error) = self.refresh().await {
                tracing::warn!(error = %error, "jwks not refreshed, the keys in force stay");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(period) => {}
                () = self.unknown_key_seen.notified() => {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep_until(fetched_at + MIN_REFETCH_INTERVAL) => {}
                    }
                }
            }
        }
    }

    /// The principal `token` stands for at `now_ms`, or UNAUTHENTICATED
    /// with the reason (`TOKEN_INVALID`, `TOKEN_EXPIRED`,
    /// `TOKEN_NOT_YET_VALID`, `WRONG_ISSUER`, `WRONG_AUDIENCE`,
    /// `UNKNOWN_SIGNING_KEY`, `NO_ROLE`, `ROLE_NOT_ALLOWED`).
    pub fn verify(&self, token: &str, now_ms: i64) -> Result<Principal, Error> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(refused("TOKEN_INVALID", "the token is longer than 16 KiB"));
        }
        let mut parts = token.split('.');
        let (Some(header_part), Some(claims_part), Some(signature_part), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(refused("TOKEN_INVALID", "a JWT has three parts"));
        };
        let decode = |part: &str, what: &str| {
            URL_SAFE_NO_PAD.decode(part).map_err(|_| refused("TOKEN_INVALID", format!("the {what} is not base64url")))
        };
        let header: Header = serde_json::from_slice(&decode(header_part, "header")?)
            .map_err(|_| refused("TOKEN_INVALID", "the header is not a JWT header"))?;
        if header.alg != "RS256" && header.alg != "ES256" {
            return Err(refused("TOKEN_INVALID", format!("algorithm `{}` is not accepted (RS256, ES256)", header.alg)));
        }
        let keys = self.keys();
        let key = match &header.kid {
            Some(kid) => keys.get(kid),
            // Without a key id, only a provider with one key is unambiguous.
            None if keys.len() == 1 => keys.values().next(),
            None => None,
        };
        let Some(key) = key else {
            self.unknown_key_seen.notify_one();
            return Err(refused("UNKNOWN_SIGNING_KEY", "the token is signed with a key the provider does not list"));
        };
        if key.algorithm() != header.alg {
            return Err(refused("TOKEN_INVALID", "the token's algorithm is not its key's"));
        }
        let signature = decode(signature_part, "signature")?;
        let signed = &token[..header_part.len() + 1 + claims_part.len()];
        if !key.verifies(signed.as_bytes(), &signature) {
            return Err(refused("TOKEN_INVALID", "the token's signature does not verify"));
        }
        let claims_json = decode(claims_part, "claims")?;
        let registered: RegisteredClaims = serde_json::from_slice(&claims_json)
            .map_err(|_| refused("TOKEN_INVALID", "the claims are not a JSON object of JWT claims"))?;
        let claims: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&claims_json)
            .map_err(|_| refused("TOKEN_INVALID", "the claims are not a JSON object"))?;
        self.check_registered(&registered, now_ms)?;
        self.principal(&registered, &claims)
    }

    fn check_registered(&self, claims: &RegisteredClaims, now_ms: i64) -> Result<(), Error> {
        if claims.iss.as_deref() != Some(self.config.issuer.as_str()) {
            return Err(refused("WRONG_ISSUER", "the token is not from the configured issuer"));
        }
        if !claims.aud.as_ref().is_some_and(|audience| audience.contains(&self.config.audience)) {
            return Err(refused("WRONG_AUDIENCE", "the token is not for this audience"));
        }
        let now_seconds = now_ms.div_euclid(1000);
        let leeway = i64::try_from(self.config.leeway_secs).unwrap_or(i64::MAX);
        let Some(expires) = claims.exp else {
            return Err(refused("TOKEN_INVALID", "the token has no `exp`"));
        };
        if now_seconds >= expires.saturating_add(leeway) {
            return Err(refused("TOKEN_EXPIRED", "the token has expired"));
        }
        if claims.nbf.is_some_and(|not_before| now_seconds < not_before.saturating_sub(leeway)) {
            return Err(refused("TOKEN_NOT_YET_VALID", "the token is not valid yet (`nbf`)"));
        }
        Ok(())
    }

    fn principal(
        &self,
        registered: &RegisteredClaims,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Principal, Error> {
        let text = |claim: &str| claims.get(claim).and_then(serde_json::Value::as_str);
        let subject = registered.sub.as_deref().filter(|subject| !subject.is_empty() && subject.len() <= 255);
        let Some(subject) = subject else {
            return Err(refused("TOKEN_INVALID", "the token has no `sub`"));
        };
        let role = text(&self.config.role_claim).and_then(Role::parse);
        let role = match role {
            Some(Role::Service) | None => {
                return Err(refused("NO_ROLE", format!("claim `{}` names no role", self.config.role_claim)));
            }
            Some(role) => role,
        };
        if !self.config.allowed_roles.iter().any(|allowed| Role::parse(allowed) == Some(role)) {
            return Err(refused(
                "ROLE_NOT_ALLOWED",
                format!("role `{}` may not sign in through the identity provider", role.as_str()),
            ));
        }
        let mut principal = Principal {
            // Audit records and rate limits name the person, never the token.
            key_name: format!("oidc:{}", subject.escape_default()),
            role,
            tenant: None,
            agent: None,
            expires_at_ms: registered.exp.map(|expires| {
                let leeway = i64::try_from(self.config.leeway_secs).unwrap_or(i64::MAX);
                expires.saturating_add(leeway).saturating_mul(1000)
            }),
        };
        match role {
            Role::TenantAdmin | Role::TenantReader | Role::Integration | Role::Supervisor => {
                let tenant = text(&self.config.tenant_claim).map(|tenant| TenantId::parse(tenant, "tenant"));
                let Some(Ok(tenant)) = tenant else {
                    return Err(refused("NO_ROLE", format!("claim `{}` names no tenant", self.config.tenant_claim)));
                };
                principal.tenant = Some(tenant);
            }
            Role::Agent => {
                let agent = text(&self.config.agent_claim).map(|agent| AgentId::parse(agent, "agent"));
                let Some(Ok(agent)) = agent else {
                    return Err(refused("NO_ROLE", format!("claim `{}` names no agent", self.config.agent_claim)));
                };
                principal.agent = Some(agent);
            }
            Role::OperatorAdmin | Role::Service => {}
        }
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_signing_keys_of_known_types_with_an_id_are_read() {
        let x = URL_SAFE_NO_PAD.encode([1_u8; 32]);
        let document = serde_json::json!({"keys": [
            {"kty": "EC", "crv": "P-256", "kid": "ec", "x": x, "y": x},
            {"kty": "EC", "crv": "P-384", "kid": "p384", "x": x, "y": x},
            {"kty": "EC", "crv": "P-256", "kid": "enc", "use": "enc", "x": x, "y": x},
            {"kty": "EC", "crv": "P-256", "kid": "mislabelled", "alg": "RS256", "x": x, "y": x},
            {"kty": "EC", "crv": "P-256", "x": x, "y": x},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "rsa", "n": "AQAB", "e": "AQAB"},
        ]});
        let keys = parse_jwks(document.to_string().as_bytes()).expect("a JWKS");
        let mut ids: Vec<&str> = keys.keys().map(String::as_str).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["ec", "rsa"]);
        assert!(parse_jwks(b"not json").is_err());
    }

    #[test]
    fn only_three_part_tokens_starting_as_json_are_taken_for_jwts() {
        assert!(looks_like_jwt("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"));
        assert!(!looks_like_jwt("sbk_0123456789abcdef"));
        assert!(!looks_like_jwt("eyJ.only-two"));
    }
}
