//! Tests of the upstream authenticator, including loops against our own ScramServer.

use super::*;
use crate::{ScramServer, ScramVerifier};

/// Builds the body of an `Authentication*` message.
fn body(code: i32, data: &[u8]) -> Vec<u8> {
    let mut out = code.to_be_bytes().to_vec();
    out.extend_from_slice(data);
    out
}

fn scram_server(password: &str) -> ScramServer {
    ScramServer::new(ScramVerifier::with_salt(password, b"0123456789abcdef", 16))
}

/// Drives an authenticator against a ScramServer, going through the message bodies
/// both ways as the wire layer would. Returns the first error from either side.
fn scram_loop(auth: &mut UpstreamAuthenticator, server: &mut ScramServer) -> Result<(), AuthError> {
    let offer = body(10, b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0");
    let initial = auth.step(UpstreamAuthRequest::parse(&offer)?)?;
    let UpstreamAuthResponse::SaslInitial { mechanism, data } = &initial else {
        panic!("expected SaslInitial, got {initial:?}");
    };
    // The payload carries the same mechanism and data.
    let payload = initial.message_payload().unwrap();
    assert!(payload.starts_with(b"SCRAM-SHA-256\0"));
    assert_eq!(&payload[18..], data.as_slice());

    let server_first = server.client_first(mechanism, data)?;
    let continue_body = body(11, &server_first);
    let response = auth.step(UpstreamAuthRequest::parse(&continue_body)?)?;
    let UpstreamAuthResponse::SaslResponse(data) = response else {
        panic!("expected SaslResponse, got {response:?}");
    };
    let server_final = server.client_final(&data)?;
    let final_body = body(12, &server_final);
    assert_eq!(
        auth.step(UpstreamAuthRequest::parse(&final_body)?)?,
        UpstreamAuthResponse::None
    );
    assert!(!auth.is_done());
    assert_eq!(
        auth.step(UpstreamAuthRequest::parse(&body(0, b""))?)?,
        UpstreamAuthResponse::None
    );
    Ok(())
}

#[test]
fn parses_authentication_requests() {
    use UpstreamAuthRequest as R;
    assert_eq!(R::parse(&body(0, b"")), Ok(R::Ok));
    assert_eq!(R::parse(&body(3, b"")), Ok(R::Cleartext));
    assert_eq!(
        R::parse(&body(5, &[1, 2, 3, 4])),
        Ok(R::Md5 { salt: [1, 2, 3, 4] })
    );
    assert_eq!(
        R::parse(&body(10, b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0")),
        Ok(R::Sasl {
            mechanisms: vec!["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]
        })
    );
    assert_eq!(
        R::parse(&body(10, b"\0")),
        Ok(R::Sasl { mechanisms: vec![] })
    );
    assert_eq!(R::parse(&body(11, b"r=x")), Ok(R::SaslContinue(b"r=x")));
    assert_eq!(R::parse(&body(12, b"v=x")), Ok(R::SaslFinal(b"v=x")));
    assert_eq!(R::parse(&body(7, b"")), Ok(R::Other(7)));
    assert_eq!(R::parse(&body(-1, b"zz")), Ok(R::Other(-1)));
}

#[test]
fn rejects_malformed_authentication_requests() {
    use UpstreamAuthRequest as R;
    for bad in [
        vec![],
        vec![0, 0, 0],
        body(0, b"x"),
        body(3, b"\0"),
        body(5, &[1, 2, 3]),
        body(5, &[1, 2, 3, 4, 5]),
        body(10, b""),
        body(10, b"SCRAM-SHA-256"),
        body(10, b"SCRAM-SHA-256\0"),
        body(10, b"SCRAM-SHA-256\0\0junk"),
        body(10, b"\xff\xfe\0\0"),
    ] {
        assert!(
            matches!(R::parse(&bad), Err(AuthError::Upstream(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn parse_never_panics_on_prefixes() {
    let full = body(10, b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0");
    for cut in 0..=full.len() {
        let _ = UpstreamAuthRequest::parse(&full[..cut]);
    }
}

#[test]
fn payloads_match_the_protocol() {
    assert_eq!(UpstreamAuthResponse::None.message_payload(), None);
    assert_eq!(
        UpstreamAuthResponse::Password(b"pw\0".to_vec()).message_payload(),
        Some(b"pw\0".to_vec())
    );
    assert_eq!(
        UpstreamAuthResponse::SaslInitial {
            mechanism: "SCRAM-SHA-256".into(),
            data: b"n,,n=,r=abc".to_vec()
        }
        .message_payload(),
        Some(b"SCRAM-SHA-256\0\0\0\0\x0bn,,n=,r=abc".to_vec())
    );
    assert_eq!(
        UpstreamAuthResponse::SaslResponse(b"c=biws".to_vec()).message_payload(),
        Some(b"c=biws".to_vec())
    );
}

#[test]
fn trust_needs_no_password() {
    let mut auth = UpstreamAuthenticator::new("gw", None);
    assert_eq!(
        auth.step(UpstreamAuthRequest::Ok),
        Ok(UpstreamAuthResponse::None)
    );
    assert!(auth.is_done());
    // Nothing is accepted afterwards.
    assert!(auth.step(UpstreamAuthRequest::Cleartext).is_err());
}

#[test]
fn cleartext_sends_nul_terminated_password() {
    let mut auth = UpstreamAuthenticator::new("gw", Some("pw"));
    assert_eq!(
        auth.step(UpstreamAuthRequest::Cleartext),
        Ok(UpstreamAuthResponse::Password(b"pw\0".to_vec()))
    );
    assert_eq!(
        auth.step(UpstreamAuthRequest::Ok),
        Ok(UpstreamAuthResponse::None)
    );
    assert!(auth.is_done());
}

#[test]
fn md5_matches_known_answer() {
    let mut auth = UpstreamAuthenticator::new("md5_user", Some("password"));
    assert_eq!(
        auth.step(UpstreamAuthRequest::Md5 {
            salt: [0x2a, 0x3d, 0x8f, 0xe0]
        }),
        Ok(UpstreamAuthResponse::Password(
            b"md562af4dd09bbb41884907a838a3233294\0".to_vec()
        ))
    );
}

#[test]
fn password_requests_without_a_password_fail_clearly() {
    for req in [
        UpstreamAuthRequest::Cleartext,
        UpstreamAuthRequest::Md5 { salt: [0; 4] },
        UpstreamAuthRequest::Sasl {
            mechanisms: vec!["SCRAM-SHA-256"],
        },
    ] {
        let mut auth = UpstreamAuthenticator::new("gw", None);
        let err = auth.step(req).unwrap_err();
        assert!(
            matches!(&err, AuthError::Upstream(m) if m.contains("no upstream password is configured")),
            "{err:?}"
        );
    }
}

#[test]
fn nul_in_password_is_refused() {
    let mut auth = UpstreamAuthenticator::new("gw", Some("p\0w"));
    assert!(matches!(
        auth.step(UpstreamAuthRequest::Cleartext),
        Err(AuthError::Upstream(m)) if m.contains("NUL")
    ));
}

#[test]
fn unsupported_methods_are_named() {
    for (code, name) in [
        (7, "GSSAPI"),
        (9, "SSPI"),
        (2, "Kerberos"),
        (6, "SCM"),
        (42, "unknown"),
    ] {
        let mut auth = UpstreamAuthenticator::new("gw", Some("pw"));
        let err = auth.step(UpstreamAuthRequest::Other(code)).unwrap_err();
        assert!(
            matches!(&err, AuthError::Upstream(m) if m.contains(name)),
            "{code}: {err:?}"
        );
    }
}

#[test]
fn sasl_without_scram_sha_256_is_refused() {
    let mut auth = UpstreamAuthenticator::new("gw", Some("pw"));
    let err = auth
        .step(UpstreamAuthRequest::Sasl {
            mechanisms: vec!["SCRAM-SHA-256-PLUS"],
        })
        .unwrap_err();
    assert!(matches!(&err, AuthError::Upstream(m) if m.contains("channel binding")));

    let mut auth = UpstreamAuthenticator::new("gw", Some("pw"));
    let err = auth
        .step(UpstreamAuthRequest::Sasl {
            mechanisms: vec!["OAUTHBEARER", "X\u{7}"],
        })
        .unwrap_err();
    assert!(matches!(&err, AuthError::Upstream(m) if m.contains("[OAUTHBEARER, X?]")));
}

#[test]
fn scram_loop_against_our_server_succeeds() {
    let mut auth = UpstreamAuthenticator::new("gw", Some("s3cr3t"));
    let mut server = scram_server("s3cr3t");
    assert_eq!(scram_loop(&mut auth, &mut server), Ok(()));
    assert!(server.is_authenticated());
    assert!(auth.is_done());
}

#[test]
fn scram_loop_with_wrong_password_fails_on_the_server() {
    let mut auth = UpstreamAuthenticator::new("gw", Some("guess"));
    let mut server = scram_server("s3cr3t");
    assert_eq!(
        scram_loop(&mut auth, &mut server),
        Err(AuthError::InvalidPassword)
    );
    assert!(!auth.is_done());
}

#[test]
fn scram_loop_with_require_scram_succeeds() {
    let mut auth = UpstreamAuthenticator::new("gw", Some("s3cr3t")).require_scram(true);
    let mut server = scram_server("s3cr3t");
    assert_eq!(scram_loop(&mut auth, &mut server), Ok(()));
}

#[test]
fn require_scram_refuses_weaker_methods() {
    for req in [
        UpstreamAuthRequest::Ok,
        UpstreamAuthRequest::Cleartext,
        UpstreamAuthRequest::Md5 { salt: [0; 4] },
    ] {
        let mut auth = UpstreamAuthenticator::new("gw", Some("pw")).require_scram(true);
        let err = auth.step(req).unwrap_err();
        assert!(
            matches!(&err, AuthError::Upstream(m) if m.contains("SCRAM is required")),
            "{err:?}"
        );
    }
}

/// Starts a SCRAM login and returns the authenticator after its client-final, plus
/// the server that answered so far.
fn scram_until_final(password: &str) -> (UpstreamAuthenticator, ScramServer, Vec<u8>) {
    let mut auth = UpstreamAuthenticator::new("gw", Some(password));
    let mut server = scram_server(password);
    let UpstreamAuthResponse::SaslInitial { mechanism, data } = auth
        .step(UpstreamAuthRequest::Sasl {
            mechanisms: vec!["SCRAM-SHA-256"],
        })
        .unwrap()
    else {
        panic!("expected SaslInitial")
    };
    let server_first = server.client_first(&mechanism, &data).unwrap();
    let UpstreamAuthResponse::SaslResponse(client_final) = auth
        .step(UpstreamAuthRequest::SaslContinue(&server_first))
        .unwrap()
    else {
        panic!("expected SaslResponse")
    };
    (auth, server, client_final)
}

#[test]
fn bad_server_signature_is_refused() {
    let (mut auth, mut server, client_final) = scram_until_final("pw");
    let mut server_final = server.client_final(&client_final).unwrap();
    // Flip one base64 character of the signature.
    let i = server_final.len() - 5;
    server_final[i] = if server_final[i] == b'A' { b'B' } else { b'A' };
    let err = auth
        .step(UpstreamAuthRequest::SaslFinal(&server_final))
        .unwrap_err();
    assert!(matches!(&err, AuthError::Upstream(m) if m.contains("signature")));
    // And no AuthenticationOk can rescue it.
    assert!(auth.step(UpstreamAuthRequest::Ok).is_err());
    assert!(!auth.is_done());
}

#[test]
fn server_error_in_final_is_refused() {
    let (mut auth, _server, _) = scram_until_final("pw");
    assert!(matches!(
        auth.step(UpstreamAuthRequest::SaslFinal(b"e=invalid-proof")),
        Err(AuthError::Upstream(_))
    ));
}

#[test]
fn ok_before_scram_completes_is_refused() {
    let (mut auth, _server, _) = scram_until_final("pw");
    let err = auth.step(UpstreamAuthRequest::Ok).unwrap_err();
    assert!(matches!(&err, AuthError::Upstream(m) if m.contains("before completing")));

    let mut auth = UpstreamAuthenticator::new("gw", Some("pw"));
    auth.step(UpstreamAuthRequest::Sasl {
        mechanisms: vec!["SCRAM-SHA-256"],
    })
    .unwrap();
    assert!(auth.step(UpstreamAuthRequest::Ok).is_err());
}

#[test]
fn bad_server_first_is_refused() {
    let start = || {
        let mut auth = UpstreamAuthenticator::new("gw", Some("pw"));
        let UpstreamAuthResponse::SaslInitial { data, .. } = auth
            .step(UpstreamAuthRequest::Sasl {
                mechanisms: vec!["SCRAM-SHA-256"],
            })
            .unwrap()
        else {
            panic!("expected SaslInitial")
        };
        let nonce = String::from_utf8(data[8..].to_vec()).unwrap();
        (auth, nonce)
    };
    let (mut auth, _) = start();
    // A nonce that does not extend the client's.
    assert!(
        auth.step(UpstreamAuthRequest::SaslContinue(
            b"r=somethingelse,s=AAAA,i=4096"
        ))
        .is_err()
    );
    // An iteration count meant to burn the gateway's CPU.
    let (mut auth, nonce) = start();
    let first = format!("r={nonce}xyz,s=AAAA,i=100000000");
    assert!(
        auth.step(UpstreamAuthRequest::SaslContinue(first.as_bytes()))
            .is_err()
    );
    // Garbage.
    let (mut auth, _) = start();
    assert!(
        auth.step(UpstreamAuthRequest::SaslContinue(b"\xff\0garbage"))
            .is_err()
    );
}

#[test]
fn out_of_sequence_requests_are_refused() {
    use UpstreamAuthRequest as R;
    for req in [R::SaslContinue(b"r=x,s=AAAA,i=1"), R::SaslFinal(b"v=AAAA")] {
        let mut auth = UpstreamAuthenticator::new("gw", Some("pw"));
        assert!(auth.step(req).is_err());
        // Failure is final.
        assert!(auth.step(R::Cleartext).is_err());
    }
    let mut auth = UpstreamAuthenticator::new("gw", Some("pw"));
    auth.step(R::Cleartext).unwrap();
    assert!(auth.step(R::Cleartext).is_err());

    let mut auth = UpstreamAuthenticator::new("gw", Some("pw"));
    auth.step(R::Sasl {
        mechanisms: vec!["SCRAM-SHA-256"],
    })
    .unwrap();
    assert!(auth.step(R::SaslFinal(b"v=AAAA")).is_err());
}

#[test]
fn debug_redacts_password() {
    let auth = UpstreamAuthenticator::new("gw", Some("hunter2"));
    assert!(!format!("{auth:?}").contains("hunter2"));
    let response = UpstreamAuthResponse::Password(b"hunter2\0".to_vec());
    assert!(!format!("{response:?}").contains("hunter2"));
}
