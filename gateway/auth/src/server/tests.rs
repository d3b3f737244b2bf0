//! Tests of the SCRAM server, including full exchanges against the
//! `postgres-protocol` client (the one tokio-postgres uses).

use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use super::*;

/// Cheap iteration count so debug-mode tests stay fast.
const FAST: u32 = 16;

fn server_for(password: &str) -> ScramServer {
    ScramServer::new(ScramVerifier::with_salt(
        password,
        b"0123456789abcdef",
        FAST,
    ))
}

/// Runs the whole exchange with the postgres-protocol client; returns the server's
/// result and whether the client accepted the server signature.
fn exchange(
    server: &mut ScramServer,
    password: &str,
    binding: ChannelBinding,
) -> Result<bool, AuthError> {
    let mut client = ScramSha256::new(password.as_bytes(), binding);
    let server_first = server.client_first(SCRAM_SHA_256, client.message())?;
    client
        .update(&server_first)
        .expect("client accepts server-first");
    let server_final = server.client_final(client.message())?;
    Ok(client.finish(&server_final).is_ok())
}

/// A client-final-message computed by hand, for cases the library client cannot
/// produce (extensions, odd GS2 headers, tampered server-first).
fn hand_made_final(
    password: &str,
    client_first_bare: &str,
    server_first: &str,
    without_proof: &str,
) -> String {
    let fields: Vec<&str> = server_first.split(',').collect();
    let salt = STANDARD.decode(&fields[1][2..]).unwrap();
    let iterations: u32 = fields[2][2..].parse().unwrap();
    let mut salted = [0u8; KEY_LEN];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iterations, &mut salted);
    let client_key = hmac_sha256(&salted, &[b"Client Key"]);
    let stored_key: [u8; KEY_LEN] = Sha256::digest(client_key).into();
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let signature = hmac_sha256(&stored_key, &[auth_message.as_bytes()]);
    let proof = xor(&client_key, &signature);
    format!("{without_proof},p={}", STANDARD.encode(proof))
}

fn server_nonce(server_first: &[u8]) -> String {
    let text = std::str::from_utf8(server_first).unwrap();
    text.split(',').next().unwrap()[2..].to_string()
}

#[test]
fn mechanisms_are_scram_sha_256_only() {
    assert_eq!(ScramServer::mechanisms(), &["SCRAM-SHA-256"]);
}

/// The exchange that postgres-protocol recorded between psql and a PostgreSQL server
/// (password "foobar"), replayed against our server with the same salt and nonces.
#[test]
fn replays_recorded_postgres_exchange() {
    let salt = STANDARD.decode("fs3IXBy7U7+IvVjZ").unwrap();
    let mut server = ScramServer::new(ScramVerifier::with_salt("foobar", &salt, 4096));
    let server_first = server
        .client_first_with_nonce(
            SCRAM_SHA_256,
            b"n,,n=,r=9IZ2O01zb9IgiIZ1WJ/zgpJB",
            "jx/oIRLs02gGSHcw1KEty3eY",
        )
        .unwrap();
    assert_eq!(
        server_first,
        b"r=9IZ2O01zb9IgiIZ1WJ/zgpJBjx/oIRLs02gGSHcw1KEty3eY,s=fs3IXBy7U7+IvVjZ,i=4096"
    );
    let server_final = server
        .client_final(
            b"c=biws,r=9IZ2O01zb9IgiIZ1WJ/zgpJBjx/oIRLs02gGSHcw1KEty3eY,\
              p=AmNKosjJzS31NTlQYNs5BTeQjdHdk7lOflDo5re2an8=",
        )
        .unwrap();
    assert_eq!(
        server_final,
        b"v=U+ppxD5XUKtradnv8e2MkeupiA8FU87Sg8CXzXHDAzw="
    );
    assert!(server.is_authenticated());
}

#[test]
fn correct_password_succeeds_and_client_accepts_signature() {
    let mut server = server_for("s3cr3t");
    assert!(!server.is_authenticated());
    assert_eq!(
        exchange(&mut server, "s3cr3t", ChannelBinding::unsupported()),
        Ok(true)
    );
    assert!(server.is_authenticated());
}

#[test]
fn default_iterations_exchange_succeeds() {
    let mut server = ScramServer::new(ScramVerifier::generate("pw", DEFAULT_ITERATIONS));
    assert_eq!(
        exchange(&mut server, "pw", ChannelBinding::unsupported()),
        Ok(true)
    );
}

#[test]
fn y_flag_is_accepted_since_plus_is_not_advertised() {
    let mut server = server_for("s3cr3t");
    assert_eq!(
        exchange(&mut server, "s3cr3t", ChannelBinding::unrequested()),
        Ok(true)
    );
}

#[test]
fn saslprep_applies_on_both_sides() {
    let mut server = server_for("pass\u{ad}word");
    assert_eq!(
        exchange(&mut server, "password", ChannelBinding::unsupported()),
        Ok(true)
    );
}

#[test]
fn wrong_password_is_invalid_password() {
    let mut server = server_for("s3cr3t");
    assert_eq!(
        exchange(&mut server, "guess", ChannelBinding::unsupported()),
        Err(AuthError::InvalidPassword)
    );
    assert!(!server.is_authenticated());
    // The exchange is over.
    assert!(matches!(
        server.client_final(b"c=biws,r=x,p=y"),
        Err(AuthError::Protocol(_))
    ));
}

#[test]
fn mock_looks_normal_then_fails() {
    let secret = b"0123456789abcdef0123456789abcdef";
    let mut client = ScramSha256::new(b"anything", ChannelBinding::unsupported());
    let mut server = ScramServer::mock("ghost", secret);
    let server_first = server
        .client_first(SCRAM_SHA_256, client.message())
        .unwrap();

    // Same shape as a real server-first: r=<client nonce + 24>, s=<16 bytes>, i=4096.
    let text = std::str::from_utf8(&server_first).unwrap();
    let fields: Vec<&str> = text.split(',').collect();
    assert_eq!(fields.len(), 3);
    let client_nonce = &std::str::from_utf8(client.message()).unwrap()[8..];
    assert_eq!(fields[0].len(), 2 + client_nonce.len() + 24);
    assert!(fields[0][2..].starts_with(client_nonce));
    assert_eq!(STANDARD.decode(&fields[1][2..]).unwrap().len(), 16);
    assert_eq!(fields[2], "i=4096");

    client.update(&server_first).unwrap();
    assert_eq!(
        server.client_final(client.message()),
        Err(AuthError::InvalidPassword)
    );
    assert!(!server.is_authenticated());
}

#[test]
fn mock_salt_is_deterministic_per_user_and_secret() {
    let salt_of = |user: &str, secret: &[u8]| {
        let mut server = ScramServer::mock(user, secret);
        let first = server.client_first(SCRAM_SHA_256, b"n,,n=,r=abc").unwrap();
        String::from_utf8(first)
            .unwrap()
            .split(',')
            .nth(1)
            .unwrap()
            .to_string()
    };
    assert_eq!(salt_of("ghost", b"k1"), salt_of("ghost", b"k1"));
    assert_ne!(salt_of("ghost", b"k1"), salt_of("spook", b"k1"));
    assert_ne!(salt_of("ghost", b"k1"), salt_of("ghost", b"k2"));
}

#[test]
fn mock_with_iterations_advertises_that_count() {
    let mut server = ScramServer::mock_with_iterations("ghost", b"k", 10_000);
    let first = server.client_first(SCRAM_SHA_256, b"n,,n=,r=abc").unwrap();
    assert!(first.ends_with(b",i=10000"));
}

#[test]
fn doomed_exchange_fails_even_with_the_right_password() {
    let mut server = server_for("s3cr3t");
    server.doomed = true;
    assert_eq!(
        exchange(&mut server, "s3cr3t", ChannelBinding::unsupported()),
        Err(AuthError::InvalidPassword)
    );
}

#[test]
fn username_in_client_first_is_ignored_and_extensions_skipped() {
    let mut server = server_for("pw");
    let bare = "n=mallory,r=clientnonce,x=optional";
    let first = server
        .client_first(SCRAM_SHA_256, format!("n,,{bare}").as_bytes())
        .unwrap();
    let first = String::from_utf8(first).unwrap();
    let nonce = server_nonce(first.as_bytes());
    let last = hand_made_final("pw", bare, &first, &format!("c=biws,r={nonce},z=ext"));
    let server_final = server.client_final(last.as_bytes()).unwrap();
    assert!(server_final.starts_with(b"v="));
    assert!(server.is_authenticated());
}

#[test]
fn unsupported_mechanisms_are_refused() {
    for mech in [
        "SCRAM-SHA-256-PLUS",
        "SCRAM-SHA-1",
        "PLAIN",
        "",
        "scram-sha-256",
    ] {
        let mut server = server_for("pw");
        let err = server.client_first(mech, b"n,,n=,r=abc").unwrap_err();
        assert!(matches!(err, AuthError::UnsupportedMechanism(_)), "{mech}");
        assert_eq!(err.sqlstate(), "08P01");
    }
    let mut server = server_for("pw");
    let long = "\u{7}".repeat(1000);
    let AuthError::UnsupportedMechanism(shown) = server.client_first(&long, b"").unwrap_err()
    else {
        panic!("wrong error")
    };
    assert_eq!(shown, "?".repeat(64));
}

#[test]
fn channel_binding_data_is_refused() {
    let mut server = server_for("pw");
    let client = ScramSha256::new(b"pw", ChannelBinding::tls_server_end_point(vec![1, 2, 3]));
    let err = server
        .client_first(SCRAM_SHA_256, client.message())
        .unwrap_err();
    assert!(matches!(&err, AuthError::Protocol(m) if m.contains("channel binding")));
    // And the exchange cannot continue.
    assert!(server.client_final(b"c=biws,r=abc,p=x").is_err());
}

#[test]
fn channel_binding_attribute_must_match_gs2_header() {
    for (header, binding) in [("n,,", "eSws"), ("y,,", "biws"), ("n,,", "cD10bHMsLA==")] {
        let mut server = server_for("pw");
        let bare = "n=,r=abc";
        let first = server
            .client_first(SCRAM_SHA_256, format!("{header}{bare}").as_bytes())
            .unwrap();
        let first = String::from_utf8(first).unwrap();
        let nonce = server_nonce(first.as_bytes());
        let last = hand_made_final("pw", bare, &first, &format!("c={binding},r={nonce}"));
        let err = server.client_final(last.as_bytes()).unwrap_err();
        assert!(
            matches!(&err, AuthError::Protocol(m) if m.contains("channel-binding")),
            "{header} {binding}: {err:?}"
        );
    }
}

#[test]
fn wrong_nonce_is_refused() {
    let bare = "n=,r=abc";
    let server_part = "SERVERNONCESERVERNONCE12";
    let nonce = format!("abc{server_part}");
    for bad in [
        "abc".to_string(),
        format!("{nonce}x"),
        nonce[..nonce.len() - 1].to_string(),
        format!("xbc{server_part}"),
        String::new(),
    ] {
        let mut server = server_for("pw");
        let first = server
            .client_first_with_nonce(SCRAM_SHA_256, format!("n,,{bare}").as_bytes(), server_part)
            .unwrap();
        let first = String::from_utf8(first).unwrap();
        let last = hand_made_final("pw", bare, &first, &format!("c=biws,r={bad}"));
        assert_eq!(
            server.client_final(last.as_bytes()),
            Err(AuthError::protocol("SCRAM nonce mismatch")),
            "{bad}"
        );
    }
}

/// A man in the middle lowering the iteration count (or changing the salt) in
/// server-first makes the client prove a different password and a different
/// AuthMessage: the server refuses it.
#[test]
fn tampered_server_first_is_refused() {
    for tamper in [
        |s: &str| s.replace(",i=16", ",i=1"),
        |s: &str| s.replace(",i=16", ",i=17"),
        |s: &str| s.replace(",s=MDEy", ",s=MDEz"),
    ] {
        let mut server = server_for("pw");
        let mut client = ScramSha256::new(b"pw", ChannelBinding::unsupported());
        let first = server
            .client_first(SCRAM_SHA_256, client.message())
            .unwrap();
        let tampered = tamper(std::str::from_utf8(&first).unwrap());
        assert_ne!(tampered.as_bytes(), first.as_slice());
        client.update(tampered.as_bytes()).unwrap();
        assert_eq!(
            server.client_final(client.message()),
            Err(AuthError::InvalidPassword)
        );
    }
}

#[test]
fn out_of_order_calls_are_protocol_errors() {
    let mut server = server_for("pw");
    assert!(matches!(
        server.client_final(b"c=biws,r=abc,p=x"),
        Err(AuthError::Protocol(_))
    ));

    let mut server = server_for("pw");
    server.client_first(SCRAM_SHA_256, b"n,,n=,r=abc").unwrap();
    assert!(matches!(
        server.client_first(SCRAM_SHA_256, b"n,,n=,r=abc"),
        Err(AuthError::Protocol(_))
    ));
    // The duplicate ended the exchange.
    assert!(matches!(
        server.client_final(b"c=biws,r=abc,p=x"),
        Err(AuthError::Protocol(_))
    ));

    let mut server = server_for("pw");
    assert_eq!(
        exchange(&mut server, "pw", ChannelBinding::unsupported()),
        Ok(true)
    );
    assert!(matches!(
        server.client_final(b"c=biws,r=abc,p=x"),
        Err(AuthError::Protocol(_))
    ));
    assert!(matches!(
        server.client_first(SCRAM_SHA_256, b"n,,n=,r=abc"),
        Err(AuthError::Protocol(_))
    ));
    // A failed call does not leave the server authenticated.
    assert!(!server.is_authenticated());
}

/// Every strict prefix and every single-byte change of a valid client-final fails.
#[test]
fn truncated_or_mutated_client_final_never_authenticates() {
    let mut template = server_for("pw");
    let bare = "n=,r=abc";
    let nonce = "SERVERNONCESERVERNONCE12";
    let first = template
        .client_first_with_nonce(SCRAM_SHA_256, format!("n,,{bare}").as_bytes(), nonce)
        .unwrap();
    let first = String::from_utf8(first).unwrap();
    let last = hand_made_final("pw", bare, &first, &format!("c=biws,r=abc{nonce}"));
    let last = last.as_bytes();

    let fresh = || {
        let mut server = server_for("pw");
        server
            .client_first_with_nonce(SCRAM_SHA_256, format!("n,,{bare}").as_bytes(), nonce)
            .unwrap();
        server
    };
    assert!(fresh().client_final(last).is_ok());
    for cut in 0..last.len() {
        assert!(fresh().client_final(&last[..cut]).is_err(), "prefix {cut}");
    }
    for i in 0..last.len() {
        for flip in [0x01u8, 0x20, 0x80] {
            let mut mutated = last.to_vec();
            mutated[i] ^= flip;
            let mut server = fresh();
            assert!(
                server.client_final(&mutated).is_err(),
                "byte {i} ^ {flip:#x}"
            );
            assert!(!server.is_authenticated());
        }
    }
}

#[test]
fn truncated_client_first_never_panics() {
    let full = b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL,x=ext";
    for cut in 0..=full.len() {
        let mut server = server_for("pw");
        let _ = server.client_first(SCRAM_SHA_256, &full[..cut]);
    }
}

/// Random and random-ish inputs: no panic, never authenticated.
#[test]
fn random_inputs_never_panic_or_authenticate() {
    let mut rng = StdRng::seed_from_u64(0x5c7a_11ed);
    let alphabet = b"nypcrsima=,,,=biwsAZaz09+/\0\xff\xc3";
    for round in 0..3000 {
        let len = rng.random_range(0..160);
        let random_bytes = |rng: &mut StdRng| -> Vec<u8> {
            (0..len)
                .map(|_| {
                    if round % 2 == 0 {
                        rng.random()
                    } else {
                        alphabet[rng.random_range(0..alphabet.len())]
                    }
                })
                .collect()
        };
        let mut server = server_for("pw");
        let _ = server.client_first(SCRAM_SHA_256, &random_bytes(&mut rng));
        assert!(!server.is_authenticated());

        let mut server = server_for("pw");
        server.client_first(SCRAM_SHA_256, b"n,,n=,r=abc").unwrap();
        let mut data = b"c=biws,r=".to_vec();
        data.extend(random_bytes(&mut rng));
        let _ = server.client_final(&data);
        assert!(!server.is_authenticated());
        let _ = server_for("pw").client_final(&random_bytes(&mut rng));
    }
}

#[test]
fn oversized_messages_are_refused() {
    let mut server = server_for("pw");
    let big = vec![b'a'; 1 << 20];
    assert!(matches!(
        server.client_first(SCRAM_SHA_256, &big),
        Err(AuthError::Protocol(_))
    ));
    let mut server = server_for("pw");
    server.client_first(SCRAM_SHA_256, b"n,,n=,r=abc").unwrap();
    assert!(matches!(
        server.client_final(&big),
        Err(AuthError::Protocol(_))
    ));
}

#[test]
fn debug_shows_no_key_material() {
    let server = server_for("pw");
    let text = format!("{server:?}");
    assert!(text.contains("initial"));
    assert!(!text.contains(&STANDARD.encode(server.verifier.stored_key)));
}
