//! Identity-provider tokens (OIDC ID or access tokens, any signed JWT) sent as the
//! password: signature (RS256, ES256, EdDSA, ...; never `none`; HS* only with a
//! configured secret), issuer, audience, expiry and not-before with leeway, then claims
//! to user and groups. An RFC 8693 `act` claim makes the token an agent's, acting for
//! the token's subject.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::jwks::Jwks;
use crate::config::{JwtConfig, OnExpiry};

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    /// The user logging in: the actor of an `act` claim, else the subject.
    pub user: String,
    /// Groups from the groups claim (the subject's).
    pub groups: Vec<String>,
    /// With an `act` claim: the subject the actor acts for.
    pub subject_of_actor: Option<String>,
    /// `exp`.
    pub expires_at: Option<SystemTime>,
}

/// Verifies tokens against `[auth.jwt]`.
pub struct JwtVerifier {
    cfg: JwtConfig,
    algorithms: Vec<Algorithm>,
    keys: Option<Jwks>,
    hmac: Option<DecodingKey>,
}

fn is_hmac(a: Algorithm) -> bool {
    matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

fn parse_alg(name: &str) -> Result<Algorithm, String> {
    if name.eq_ignore_ascii_case("none") {
        return Err("`none` (unsigned tokens) can never be accepted".into());
    }
    name.parse::<Algorithm>()
        .map_err(|_| format!("unknown algorithm {name:?}"))
}

/// Checks `[auth.jwt]`; returns the key and the message.
pub fn validate(j: &JwtConfig) -> Result<(), (String, String)> {
    let err = |k: &str, m: String| Err((format!("auth.jwt.{k}"), m));
    if j.issuer.is_empty() {
        return err("issuer", "must not be empty".into());
    }
    if j.audience.is_empty() {
        return err("audience", "name at least one audience".into());
    }
    if j.algorithms.is_empty() {
        return err("algorithms", "name at least one algorithm".into());
    }
    let mut asymmetric = false;
    for a in &j.algorithms {
        let alg = parse_alg(a).map_err(|m| ("auth.jwt.algorithms".to_owned(), m))?;
        if is_hmac(alg) && j.hmac_secret_env.is_none() {
            return err(
                "algorithms",
                format!("{a} needs a shared secret: set auth.jwt.hmac_secret_env"),
            );
        }
        asymmetric |= !is_hmac(alg);
    }
    if j.jwks_file.is_some() && j.jwks_url.is_some() {
        return err("jwks_url", "set jwks_file or jwks_url, not both".into());
    }
    if asymmetric && j.jwks_file.is_none() && j.jwks_url.is_none() {
        return err("jwks_file", "set jwks_file or jwks_url".into());
    }
    if j.user_claim.is_empty() {
        return err("user_claim", "must not be empty".into());
    }
    Ok(())
}

impl JwtVerifier {
    /// A verifier for a validated `[auth.jwt]`.
    pub fn new(cfg: &JwtConfig) -> anyhow::Result<Self> {
        let algorithms = cfg
            .algorithms
            .iter()
            .map(|a| parse_alg(a).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let hmac = match &cfg.hmac_secret_env {
            Some(var) if algorithms.iter().any(|a| is_hmac(*a)) => {
                let secret = std::env::var(var)
                    .map_err(|_| anyhow::anyhow!("auth.jwt.hmac_secret_env: ${var} is not set"))?;
                Some(DecodingKey::from_secret(secret.as_bytes()))
            }
            _ => None,
        };
        let keys = if cfg.jwks_file.is_some() || cfg.jwks_url.is_some() {
            Some(Jwks::new(cfg)?)
        } else {
            None
        };
        Ok(JwtVerifier {
            cfg: cfg.clone(),
            algorithms,
            keys,
            hmac,
        })
    }

    /// Whether SCRAM identities are asked for a cleartext password over TLS too.
    pub fn tokens_for_password_users(&self) -> bool {
        self.cfg.tokens_for_password_users
    }

    /// The configured expiry handling.
    pub fn on_expiry(&self) -> OnExpiry {
        self.cfg.on_expiry
    }

    /// Loads the keys now (a failure is logged; tokens retry).
    pub async fn prime(&self) {
        if let Some(k) = &self.keys {
            k.prime().await;
        }
    }

    /// Verifies a token; the error says why it was refused.
    pub async fn verify(&self, token: &str) -> Result<TokenClaims, String> {
        let token = token.trim();
        let header = jsonwebtoken::decode_header(token).map_err(|e| {
            if raw_alg(token).is_some_and(|a| a.eq_ignore_ascii_case("none")) {
                "unsigned tokens (alg \"none\") are not accepted".to_owned()
            } else {
                format!("not a valid JWT ({e})")
            }
        })?;
        if !self.algorithms.contains(&header.alg) {
            return Err(format!(
                "signature algorithm {:?} is not accepted",
                header.alg
            ));
        }
        let key = if is_hmac(header.alg) {
            self.hmac
                .clone()
                .ok_or("no shared secret configured for HS* tokens")?
        } else {
            let keys = self.keys.as_ref().ok_or("no JWKS configured")?;
            keys.key(header.kid.as_deref(), header.alg).await?
        };
        let mut v = Validation::new(header.alg);
        v.algorithms = vec![header.alg];
        v.set_issuer(&[&self.cfg.issuer]);
        v.set_audience(&self.cfg.audience);
        v.leeway = self.cfg.leeway_secs;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<Value>(token, &key, &v).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => "the token has expired".to_owned(),
            ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".to_owned(),
            ErrorKind::InvalidAudience => "the token is not for this audience".to_owned(),
            ErrorKind::InvalidIssuer => "the token is from an untrusted issuer".to_owned(),
            ErrorKind::InvalidSignature => "the token's signature is invalid".to_owned(),
            ErrorKind::MissingRequiredClaim(c) => format!("the token has no \"{c}\" claim"),
            _ => format!("the token is invalid ({e})"),
        })?;
        self.claims(&data.claims)
    }

    fn claims(&self, c: &Value) -> Result<TokenClaims, String> {
        let uc = &self.cfg.user_claim;
        let subject = string_claim(c, uc)?;
        let groups = match c.get(&self.cfg.groups_claim) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|g| g.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    format!(
                        "claim \"{}\" is not a list of strings",
                        self.cfg.groups_claim
                    )
                })?,
            Some(_) => {
                return Err(format!(
                    "claim \"{}\" is not a list of strings",
                    self.cfg.groups_claim
                ));
            }
        };
        let expires_at = c
            .get("exp")
            .and_then(Value::as_u64)
            .map(|s| UNIX_EPOCH + Duration::from_secs(s));
        let (user, subject_of_actor) = match c.get("act") {
            None | Some(Value::Null) => (subject, None),
            Some(act @ Value::Object(_)) => {
                // RFC 8693: `act.sub` is the actor; with a custom user claim, that claim
                // of the actor when present.
                let actor = string_claim(act, uc)
                    .or_else(|_| string_claim(act, "sub"))
                    .map_err(|_| "claim \"act\" names no actor".to_owned())?;
                (actor, Some(subject))
            }
            Some(_) => return Err("claim \"act\" is not an object".into()),
        };
        Ok(TokenClaims {
            user,
            groups,
            subject_of_actor,
            expires_at,
        })
    }
}

fn string_claim(c: &Value, name: &str) -> Result<String, String> {
    match c.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(format!("claim \"{name}\" is not a non-empty string")),
        None => Err(format!("the token has no \"{name}\" claim")),
    }
}

/// True when a password has the shape of a JWT (three base64url parts, a JSON header).
pub fn looks_like_jwt(s: &str) -> bool {
    let s = s.trim();
    s.starts_with("eyJ") && s.split('.').count() == 3
}

/// The `alg` of a token header, read without trusting anything else in it.
fn raw_alg(token: &str) -> Option<String> {
    let head = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head.trim_end_matches('='))
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("alg")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> JwtConfig {
        toml::from_str(
            "issuer = \"https://idp\"\naudience = [\"portcullis\"]\njwks_file = \"/nonexistent\"\n",
        )
        .unwrap()
    }

    #[test]
    fn none_and_unconfigured_hmac_are_refused_in_config() {
        let mut c = cfg();
        c.algorithms = vec!["none".into()];
        assert!(validate(&c).unwrap_err().1.contains("never"));
        c.algorithms = vec!["HS256".into()];
        assert!(validate(&c).unwrap_err().1.contains("hmac_secret_env"));
        assert!(validate(&cfg()).is_ok());
    }

    #[tokio::test]
    async fn unsigned_tokens_are_refused() {
        let v = JwtVerifier::new(&cfg()).unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let t = format!(
            "{}.{}.",
            b64(r#"{"alg":"none"}"#),
            b64(r#"{"sub":"alice"}"#)
        );
        assert!(v.verify(&t).await.unwrap_err().contains("alg \"none\""));
        let t = format!(
            "{}.{}.x",
            b64(r#"{"alg":"HS256"}"#),
            b64(r#"{"sub":"alice"}"#)
        );
        assert!(v.verify(&t).await.unwrap_err().contains("not accepted"));
    }

    #[test]
    fn act_claim_makes_the_actor_the_user() {
        let v = JwtVerifier::new(&cfg()).unwrap();
        let c = v
            .claims(&serde_json::json!({"sub": "alice", "groups": ["analysts"], "act": {"sub": "etl-agent"}, "exp": 10}))
            .unwrap();
        assert_eq!(c.user, "etl-agent");
        assert_eq!(c.subject_of_actor.as_deref(), Some("alice"));
        assert_eq!(c.groups, vec!["analysts"]);
    }
}
