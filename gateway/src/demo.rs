//! `portcullis demo`: a throwaway PostgreSQL with demo data, and the gateway in front.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use portcullis_cluster::{Cluster, ClusterOptions};

use crate::server::GatewayHandle;

/// A demo identity: name, kind, groups.
pub const DEMO_IDENTITIES: &[(&str, &str, &[&str])] = &[
    ("alice", "person", &["analysts"]),
    ("bob", "person", &["dba", "pii-readers"]),
    ("etl-agent", "agent", &["pipelines"]),
];

/// The standard policy the demo enforces, by file name in the policies directory.
pub const DEMO_POLICY_FILE: &str = "guardrails.wasm";
/// Where the policies are built (`bash policies-rs/build.sh`), relative to the repository.
pub const DEFAULT_POLICIES_DIR: &str = "target/policies";
/// The demo's settings for the guardrails policy, relative to the repository.
pub const DEMO_SETTINGS_FILE: &str = "policies-rs/guardrails/demo-settings.toml";
/// The masking policy the demo enforces, by file name in the policies directory.
pub const DEMO_MASK_POLICY_FILE: &str = "pii-mask.wasm";
/// The demo's settings for the pii-mask policy, relative to the repository.
pub const DEMO_MASK_SETTINGS_FILE: &str = "policies-rs/pii-mask/demo-settings.toml";

/// The approvals policy the demo enforces, by file name in the policies directory.
pub const DEMO_APPROVALS_POLICY_FILE: &str = "approvals.wasm";
/// The demo's settings for the approvals policy, relative to the repository.
pub const DEMO_APPROVALS_SETTINGS_FILE: &str = "policies-rs/approvals/demo-settings.toml";

/// A running demo: the cluster, the gateway and the identities' passwords.
pub struct Demo {
    /// The throwaway cluster (stopped and removed on drop).
    pub cluster: Cluster,
    /// The gateway.
    pub gateway: GatewayHandle,
    /// (identity, password) pairs.
    pub passwords: Vec<(String, String)>,
    /// The policy component the gateway enforces.
    pub policy_path: PathBuf,
    /// The masking policy component.
    pub mask_policy_path: PathBuf,
    /// The approvals policy component.
    pub approvals_policy_path: PathBuf,
    /// A token of the demo's identity provider: `etl-agent` acting for `alice`.
    pub delegation_token: String,
    /// The demo's TLS certificate and identity-provider keys (removed on drop).
    pub auth_dir: tempfile::TempDir,
}

/// The demo identity provider's issuer and audience.
pub const DEMO_ISSUER: &str = "https://idp.portcullis.demo";
/// The audience of demo tokens.
pub const DEMO_AUDIENCE: &str = "portcullis";

/// A throwaway identity provider for the demo: an Ed25519 key, its JWKS written to
/// `dir/jwks.json`, and a token (valid 12 hours) for `etl-agent` acting for `alice`
/// (RFC 8693 `act`). Returns the JWKS path and the token.
fn demo_idp(dir: &Path) -> anyhow::Result<(PathBuf, String)> {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let key = ed25519_dalek::SigningKey::from_bytes(&rand::random());
    // PKCS#8 v1 for Ed25519: a fixed prefix, then the 32-byte seed.
    let mut der = hex::decode("302e020100300506032b657004220420")?;
    der.extend_from_slice(key.as_bytes());
    let jwks = serde_json::json!({"keys": [{
        "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": "demo",
        "x": b64(key.verifying_key().as_bytes()),
    }]});
    let path = dir.join("jwks.json");
    std::fs::write(&path, jwks.to_string())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let claims = serde_json::json!({
        "iss": DEMO_ISSUER, "aud": DEMO_AUDIENCE, "sub": "alice", "groups": ["analysts", "etl-owners"],
        "act": {"sub": "etl-agent"}, "iat": now, "exp": now + 12 * 3600,
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some("demo".into());
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_der(&der),
    )?;
    Ok((path, token))
}

/// Finds a repository file: relative to the working directory, else to the source
/// checkout this binary was built from.
fn repo_file(relative: &str) -> PathBuf {
    let here = PathBuf::from(relative);
    if here.exists() {
        return here;
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative);
    if built_from.exists() {
        return built_from;
    }
    here
}

/// The demo's policy entry: `guardrails.wasm` from `policies_dir` (default
/// `target/policies`) with `policies-rs/guardrails/demo-settings.toml`. Fails with
/// instructions when the component has not been built.
pub fn demo_policy(policies_dir: Option<&Path>) -> anyhow::Result<crate::config::PolicyConfig> {
    policy_entry(
        policies_dir,
        "guardrails",
        DEMO_POLICY_FILE,
        DEMO_SETTINGS_FILE,
    )
}

/// The demo's masking policy entry: `pii-mask.wasm` from `policies_dir` (default
/// `target/policies`) with `policies-rs/pii-mask/demo-settings.toml`.
pub fn demo_mask_policy(
    policies_dir: Option<&Path>,
) -> anyhow::Result<crate::config::PolicyConfig> {
    policy_entry(
        policies_dir,
        "pii-mask",
        DEMO_MASK_POLICY_FILE,
        DEMO_MASK_SETTINGS_FILE,
    )
}

/// The demo's approvals policy entry: `approvals.wasm` from `policies_dir` (default
/// `target/policies`) with `policies-rs/approvals/demo-settings.toml`.
pub fn demo_approvals_policy(
    policies_dir: Option<&Path>,
) -> anyhow::Result<crate::config::PolicyConfig> {
    policy_entry(
        policies_dir,
        "approvals",
        DEMO_APPROVALS_POLICY_FILE,
        DEMO_APPROVALS_SETTINGS_FILE,
    )
}

fn policy_entry(
    policies_dir: Option<&Path>,
    id: &str,
    file: &str,
    settings_file: &str,
) -> anyhow::Result<crate::config::PolicyConfig> {
    let path = match policies_dir {
        Some(dir) => dir.join(file),
        // build.sh writes to cargo's target directory, which CARGO_TARGET_DIR moves.
        None => match std::env::var_os("CARGO_TARGET_DIR") {
            Some(target) => PathBuf::from(target).join("policies"),
            None => repo_file(DEFAULT_POLICIES_DIR),
        }
        .join(file),
    };
    anyhow::ensure!(
        path.is_file(),
        "the demo policy {} is missing: run `bash policies-rs/build.sh` (it builds target/policies/*.wasm), or pass --policies DIR",
        path.display()
    );
    let settings_path = repo_file(settings_file);
    let text = std::fs::read_to_string(&settings_path).with_context(|| {
        format!(
            "cannot read the demo policy settings {}",
            settings_path.display()
        )
    })?;
    let settings: toml::Table = toml::from_str(&text)
        .with_context(|| format!("{}: invalid TOML", settings_path.display()))?;
    let mut policy = crate::config::PolicyConfig::new(id, path);
    policy.settings = settings;
    // The standard policies decide on the literal-free request only.
    policy.decision_cache = true;
    policy
        .settings_json()
        .map_err(|e| anyhow::anyhow!("{}: {e}", settings_path.display()))?;
    Ok(policy)
}

fn random_password() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Builds the gateway configuration for a demo cluster.
pub fn demo_config(
    cluster: &Cluster,
    listen: SocketAddr,
    admin: SocketAddr,
    passwords: &[(String, String)],
) -> String {
    let mut toml = format!(
        "[server]\nlisten = \"{listen}\"\n\n[admin]\nlisten = \"{admin}\"\n\n[upstream]\nhost = \"{}\"\nport = {}\nuser = \"{}\"\npassword = \"{}\"\n\n[databases.demo]\n[databases.postgres]\n",
        cluster.host(),
        cluster.port(),
        cluster.superuser(),
        cluster.superuser_password(),
    );
    for ((name, kind, groups), (_, password)) in DEMO_IDENTITIES.iter().zip(passwords) {
        let groups: Vec<String> = groups.iter().map(|g| format!("\"{g}\"")).collect();
        let _ = write!(
            toml,
            "\n[[identities]]\nname = \"{name}\"\nkind = \"{kind}\"\ngroups = [{}]\nscram = \"{}\"\n",
            groups.join(", "),
            portcullis_auth::verifier_for(password)
        );
    }
    toml
}

/// Starts the demo, enforcing the guardrails and pii-mask policies from
/// `policies_dir` (default `target/policies`).
pub async fn start(
    listen: SocketAddr,
    admin: SocketAddr,
    policies_dir: Option<&Path>,
) -> anyhow::Result<Demo> {
    // Checked first: no point starting PostgreSQL when the policy is missing.
    let policy = demo_policy(policies_dir)?;
    let mask_policy = demo_mask_policy(policies_dir)?;
    let approvals_policy = demo_approvals_policy(policies_dir)?;
    let approvals_policy_path = approvals_policy.path.clone();
    let policy_path = policy.path.clone();
    let mask_policy_path = mask_policy.path.clone();
    let cluster = tokio::task::spawn_blocking(|| -> anyhow::Result<Cluster> {
        let cluster = Cluster::start(ClusterOptions::default())?;
        portcullis_cluster::seed_demo(&cluster, portcullis_cluster::DEMO_DB)?;
        Ok(cluster)
    })
    .await??;
    let passwords: Vec<(String, String)> = DEMO_IDENTITIES
        .iter()
        .map(|(n, _, _)| (n.to_string(), random_password()))
        .collect();
    // TLS and an identity provider, so agents can log in with a delegation token.
    let auth_dir = tempfile::Builder::new()
        .prefix("portcullis-demo-auth-")
        .tempdir()?;
    let pki = portcullis_cluster::generate_test_pki(
        &auth_dir.path().join("pki"),
        &["localhost", "127.0.0.1"],
    )?;
    let (jwks, delegation_token) = demo_idp(auth_dir.path())?;
    let mut text = demo_config(&cluster, listen, admin, &passwords);
    let _ = write!(
        text,
        "\n[server.tls]\ncert = {:?}\nkey = {:?}\n\n[auth.jwt]\nissuer = {DEMO_ISSUER:?}\naudience = [{DEMO_AUDIENCE:?}]\njwks_file = {:?}\ntokens_for_password_users = true\n",
        pki.server_cert.display().to_string(),
        pki.server_key.display().to_string(),
        jwks.display().to_string(),
    );
    // Approval requests live beside the throwaway cluster (and go with it).
    let store = cluster.data_dir().with_extension("approvals.json");
    let _ = write!(
        text,
        "\n[approvals]\nmode = \"hold\"\nhold_timeout_ms = 600000\npath = \"{}\"\n",
        store
            .display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    );
    let mut config = crate::config::parse(Path::new("<demo>"), &text)?;
    config.policies.push(policy);
    config.policies.push(approvals_policy);
    config.policies.push(mask_policy);
    // Pseudonyms stay stable for the demo's lifetime.
    config.masking.pseudonym_key = Some(format!("{:032x}", rand::random::<u128>()));
    let gateway = crate::server::start(config).await?;
    Ok(Demo {
        cluster,
        gateway,
        passwords,
        policy_path,
        mask_policy_path,
        approvals_policy_path,
        delegation_token,
        auth_dir,
    })
}

/// The text printed for a newcomer.
pub fn banner(demo: &Demo) -> String {
    let addr = demo.gateway.addr();
    let mut s = String::new();
    let _ = writeln!(s, "Portcullis demo is running.\n");
    let _ = writeln!(
        s,
        "  PostgreSQL (throwaway): 127.0.0.1:{}  data: {}",
        demo.cluster.port(),
        demo.cluster.data_dir().display()
    );
    let _ = writeln!(s, "  Gateway:                {addr}");
    let _ = writeln!(
        s,
        "  Policy:                 guardrails ({})",
        demo.policy_path.display()
    );
    let _ = writeln!(
        s,
        "  Masking:                pii-mask ({}): alice sees masked email, phone, ssn and card_number; bob sees them whole; etl-agent sees pseudonyms",
        demo.mask_policy_path.display()
    );
    let _ = writeln!(
        s,
        "  Approvals:              approvals ({}): etl-agent's writes to customers wait for a DBA or data owner (bob)",
        demo.approvals_policy_path.display()
    );
    if let Some(a) = demo.gateway.admin_addr() {
        let _ = writeln!(s, "  Metrics:                http://{a}/metrics");
        let _ = writeln!(s, "  Approvals page:         http://{a}/approvals/ui\n");
    }
    for ((name, kind, groups), (_, pw)) in DEMO_IDENTITIES.iter().zip(&demo.passwords) {
        let uri = format!(
            "postgresql://{name}:{pw}@{}:{}/demo",
            addr.ip(),
            addr.port()
        );
        let _ = writeln!(s, "  {name} ({kind}; groups: {})", groups.join(", "));
        let _ = writeln!(s, "    {uri}");
        let _ = writeln!(
            s,
            "    psql '{uri}' -c 'SELECT name, email FROM customers LIMIT 3'\n"
        );
    }
    if let Some(((name, _, _), (_, pw))) = DEMO_IDENTITIES.iter().zip(&demo.passwords).next() {
        let uri = format!(
            "postgresql://{name}:{pw}@{}:{}/demo",
            addr.ip(),
            addr.port()
        );
        let _ = writeln!(s, "  Denied by the guardrails policy, for example:");
        let _ = writeln!(s, "    psql '{uri}' -c 'DELETE FROM orders'\n");
    }
    let pw = |who: &str| {
        demo.passwords
            .iter()
            .find(|(n, _)| n == who)
            .map(|(_, p)| p.as_str())
            .unwrap_or("")
    };
    if let Some(a) = demo.gateway.admin_addr() {
        let etl = format!(
            "postgresql://etl-agent:{}@{}:{}/demo",
            pw("etl-agent"),
            addr.ip(),
            addr.port()
        );
        let _ = writeln!(s, "  Held for approval, for example (it waits):");
        let _ = writeln!(
            s,
            "    psql '{etl}' -c \"UPDATE customers SET name = 'Ada' WHERE id = 1\""
        );
        let _ = writeln!(s, "  then, in another terminal, bob approves it:");
        let _ = writeln!(
            s,
            "    PORTCULLIS_PASSWORD={} portcullis approvals list --as bob --admin http://{a}",
            pw("bob")
        );
        let _ = writeln!(
            s,
            "    PORTCULLIS_PASSWORD={} portcullis approvals approve apr-... --as bob --admin http://{a} --reason 'fix typo'\n",
            pw("bob")
        );
    }
    let uri = format!(
        "postgresql://etl-agent:{}@{}:{}/demo?sslmode=require",
        demo.delegation_token,
        addr.ip(),
        addr.port()
    );
    let _ = writeln!(
        s,
        "  etl-agent acting for alice (an identity-provider token, over TLS): reads, but its writes need approval"
    );
    let _ = writeln!(s, "    psql '{uri}' -c 'SHOW portcullis.identity'");
    let _ = writeln!(
        s,
        "    psql '{uri}' -c \"INSERT INTO orders (customer_id, amount, status) VALUES (1, 10, 'pending')\"\n"
    );
    let _ = writeln!(s, "Press Ctrl-C to stop; the throwaway cluster is removed.");
    s
}
