//! DCI envelope signatures: producing the `signature` field (PROTOCOL §2) and checking one (§3).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use super::canonical::{self, HeaderForm, JsonView};
use super::error::{Error, Result};
use super::jwk::{make_kid, Jwks};
use super::keys::{Algorithm, SigningKey, VerifyingKey};

/// Largest `created`/`expires` accepted (12 digits, as the verifier reads them).
pub const MAX_TIMESTAMP: i64 = 999_999_999_999;

/// Default signature lifetime in seconds.
pub const DEFAULT_LIFETIME: i64 = 300;

/// `base64(sha256(canonical))`, standard alphabet with padding.
pub fn digest(canonical: &str) -> String {
    STANDARD.encode(Sha256::digest(canonical.as_bytes()))
}

/// The string that is signed.
pub fn signing_string(created: i64, expires: i64, digest: &str) -> String {
    format!("(created): {created}\n(expires): {expires}\ndigest: {digest}")
}

/// Signs `{"header": header, "message": message}` and returns the `signature` field value.
pub fn sign<H: JsonView, M: JsonView>(
    header: &H,
    message: &M,
    key: &SigningKey,
    sender_id: &str,
    key_id: &str,
    created: i64,
    lifetime: i64,
) -> Result<String> {
    if lifetime <= 0 {
        return Err(Error::Signature(format!(
            "lifetime must be positive, not {lifetime}"
        )));
    }
    let payload = canonical::signing_payload(header, message, HeaderForm::AsReceived)?;
    sign_payload(
        &payload,
        key,
        sender_id,
        key_id,
        created,
        created + lifetime,
    )
}

/// Signs canonical payload text already produced by [`canonical::signing_payload`].
pub fn sign_payload(
    payload: &str,
    key: &SigningKey,
    sender_id: &str,
    key_id: &str,
    created: i64,
    expires: i64,
) -> Result<String> {
    if !(0..=MAX_TIMESTAMP).contains(&created) || !(created..=MAX_TIMESTAMP).contains(&expires) {
        return Err(Error::Signature(format!(
            "created and expires must be Unix seconds between 0 and {MAX_TIMESTAMP}, expires not before created"
        )));
    }
    for (what, value) in [("sender_id", sender_id), ("key_id", key_id)] {
        if value.is_empty() || value.contains(['|', '"', '\n', '\r']) {
            return Err(Error::Signature(format!(
                "{what} must be non-empty and contain no '|', '\"' or line breaks"
            )));
        }
    }
    let alg = key.algorithm();
    let text = signing_string(created, expires, &digest(payload));
    let sig = STANDARD.encode(key.sign(text.as_bytes())?);
    let kid = make_kid(sender_id, key_id, alg);
    let alg = alg.as_str();
    Ok(format!(
        "namespace=\"dci\", kidId=\"{kid}\", algorithm=\"{alg}\", created=\"{created}\", \
         expires=\"{expires}\", headers=\"(created) (expires) digest\", signature=\"{sig}\""
    ))
}

/// The parameters of a `signature` field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureParams {
    pub kid: Option<String>,
    pub algorithm: String,
    pub created: i64,
    pub expires: i64,
    pub signature: Vec<u8>,
}

impl SignatureParams {
    /// The sender part of the kid (`<sender_id>|<key_id>|<alg>`).
    pub fn kid_sender(&self) -> Option<&str> {
        self.kid.as_deref().and_then(|k| k.split('|').next())
    }
}

/// Longest `signature` field read. A genuine field is well under 1 KiB (an RSA-4096 signature
/// is 684 base64 characters); anything longer is refused before it is looked at.
pub const MAX_FIELD_BYTES: usize = 4096;

/// The parts of a kid of the published form `<sender_id>|<key_id>|<alg>`, each non-empty.
pub fn split_kid(kid: &str) -> Option<(&str, &str, &str)> {
    let mut parts = kid.split('|');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(s), Some(k), Some(a), None) if !s.is_empty() && !k.is_empty() && !a.is_empty() => {
            Some((s, k, a))
        }
        _ => None,
    }
}

/// Parses the parameter list: `key="value"` pairs in any order, separated by commas.
/// Lenient on names (`kidId`/`keyId`, namespace `dci`/`spdci`, unknown names ignored), strict on
/// values. One pass over the field: its cost grows linearly with its length, which is checked
/// against [`MAX_FIELD_BYTES`] first.
pub fn parse_params(field: &str) -> std::result::Result<SignatureParams, String> {
    if field.len() > MAX_FIELD_BYTES {
        return Err(format!(
            "signature field is longer than {MAX_FIELD_BYTES} bytes"
        ));
    }
    let mut kid = None;
    let mut algorithm = None;
    let mut created = None;
    let mut expires = None;
    let mut signature = None;
    let mut rest = field.trim();
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=').ok_or("parameter without '='")?;
        let name = name.trim_end();
        let token = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        if !name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic()) || !name.bytes().all(token)
        {
            return Err("parameter names must be tokens".into());
        }
        let after = after
            .trim_start()
            .strip_prefix('"')
            .ok_or("parameter value is not quoted")?;
        let (value, after) = after
            .split_once('"')
            .ok_or("unterminated parameter value")?;
        rest = after.trim_start();
        rest = match rest.strip_prefix(',') {
            Some(r) => r.trim_start(),
            None if rest.is_empty() => rest,
            None => return Err("parameters must be separated by ','".into()),
        };
        let slot = match name {
            "kidId" | "keyId" => &mut kid,
            "algorithm" => &mut algorithm,
            "created" => &mut created,
            "expires" => &mut expires,
            "signature" => &mut signature,
            "namespace" => {
                if value != "dci" && value != "spdci" {
                    return Err(format!("unknown namespace '{value}'"));
                }
                continue;
            }
            _ => continue, // `headers` and unknown extensions
        };
        if slot.replace(value).is_some() {
            return Err(format!("parameter '{name}' appears twice"));
        }
    }
    let int = |v: Option<&str>, name: &str| -> std::result::Result<i64, String> {
        let v = v.ok_or_else(|| format!("missing '{name}' parameter"))?;
        if v.is_empty() || v.len() > 12 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("'{name}' must be Unix seconds"));
        }
        v.parse()
            .map_err(|_| format!("'{name}' must be Unix seconds"))
    };
    let created = int(created, "created")?;
    let expires = int(expires, "expires")?;
    let algorithm = algorithm.ok_or("missing 'algorithm' parameter")?.to_owned();
    let sig = signature.ok_or("missing 'signature' parameter")?;
    let signature = STANDARD
        .decode(sig)
        .map_err(|_| "'signature' is not strict base64")?;
    Ok(SignatureParams {
        kid: kid.map(str::to_owned),
        algorithm,
        created,
        expires,
        signature,
    })
}

/// The named outcome of a verification (PROTOCOL §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Valid,
    Invalid,
    Expired,
    NotYetValid,
    LifetimeTooLong,
    Malformed,
    UnknownKey,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Valid => "valid",
            Outcome::Invalid => "invalid",
            Outcome::Expired => "expired",
            Outcome::NotYetValid => "not_yet_valid",
            Outcome::LifetimeTooLong => "lifetime_too_long",
            Outcome::Malformed => "malformed",
            Outcome::UnknownKey => "unknown_key",
        }
    }
}

/// Time rules of a verification.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub now: i64,
    pub max_skew: i64,
    pub max_lifetime: i64,
}

impl Policy {
    pub fn at(now: i64) -> Self {
        Policy {
            now,
            max_skew: 60,
            max_lifetime: 3600,
        }
    }
}

/// The result of checking one signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub outcome: Outcome,
    pub kid: Option<String>,
    pub algorithm: Option<String>,
    pub created: Option<i64>,
    pub expires: Option<i64>,
    /// Why the signature is malformed, when it is.
    pub detail: Option<String>,
}

impl Check {
    pub fn is_valid(&self) -> bool {
        self.outcome == Outcome::Valid
    }
}

/// Where the verification key comes from.
pub enum Keys<'a> {
    /// One key: used whatever the kid says.
    One(&'a VerifyingKey),
    /// A key set: the key whose kid is the signature's full kid; when the set has exactly one
    /// key and no kid matches, that key is tried.
    Set(&'a Jwks),
}

impl Keys<'_> {
    fn select(&self, kid: Option<&str>) -> Option<&VerifyingKey> {
        match self {
            Keys::One(k) => Some(k),
            Keys::Set(jwks) => kid
                .and_then(|kid| jwks.get(kid))
                .or_else(|| {
                    if jwks.keys.len() == 1 {
                        jwks.keys.first()
                    } else {
                        None
                    }
                })
                .map(|j| &j.key),
        }
    }
}

/// Why the parameters of a signature refuse it before any key is used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub outcome: Outcome,
    /// Why the field is malformed or the kid is refused, when that is the reason.
    pub detail: Option<String>,
}

impl SignatureParams {
    /// What the parameters alone decide (PROTOCOL §3), in this order: the algorithm is one we
    /// verify, `expires` is not before `created`, the kid's sender part (when there is a kid) is
    /// `header_sender`, the lifetime is at most `max_lifetime`, `created` is not after
    /// `now + max_skew`, and `now` is not after `expires`. Returns the algorithm.
    pub fn precheck(
        &self,
        header_sender: Option<&str>,
        policy: Policy,
    ) -> std::result::Result<Algorithm, Rejection> {
        let reject = |outcome, detail: Option<String>| Err(Rejection { outcome, detail });
        let Some(alg) = Algorithm::parse(&self.algorithm) else {
            return reject(
                Outcome::Malformed,
                Some(format!("unsupported algorithm '{}'", self.algorithm)),
            );
        };
        if self.expires < self.created {
            return reject(
                Outcome::Malformed,
                Some("'expires' is before 'created'".into()),
            );
        }
        if self.kid.is_some() && self.kid_sender() != header_sender {
            return reject(
                Outcome::Invalid,
                Some("the kid's sender part is not the header's sender_id".into()),
            );
        }
        if self.expires - self.created > policy.max_lifetime {
            return reject(Outcome::LifetimeTooLong, None);
        }
        if self.created > policy.now + policy.max_skew {
            return reject(Outcome::NotYetValid, None);
        }
        if policy.now > self.expires {
            return reject(Outcome::Expired, None);
        }
        Ok(alg)
    }
}

/// Checks a `signature` field against the header and message as received, then (only if the
/// signature does not verify) against the header as OpenSPP's schema dumps it. At most three
/// hashing attempts.
pub fn check<H: JsonView, M: JsonView>(
    field: &str,
    header: &H,
    message: &M,
    keys: &Keys<'_>,
    policy: Policy,
) -> Result<Check> {
    let params = match parse_params(field) {
        Ok(p) => p,
        Err(detail) => {
            return Ok(Check {
                outcome: Outcome::Malformed,
                kid: None,
                algorithm: None,
                created: None,
                expires: None,
                detail: Some(detail),
            })
        }
    };
    let mut result = Check {
        outcome: Outcome::Invalid,
        kid: params.kid.clone(),
        algorithm: Some(params.algorithm.to_ascii_lowercase()),
        created: Some(params.created),
        expires: Some(params.expires),
        detail: None,
    };
    result.outcome = match params.precheck(header_sender(header)?.as_deref(), policy) {
        Err(rejection) => {
            result.detail = rejection.detail;
            rejection.outcome
        }
        Ok(alg) => match keys.select(params.kid.as_deref()) {
            None => Outcome::UnknownKey,
            // The key's own algorithm decides, not the kid's text: a mismatch cannot verify.
            Some(key) if key.algorithm() != alg => Outcome::Invalid,
            Some(key) => match verify_forms(&params, header, message, key)? {
                Some(_) => Outcome::Valid,
                None => Outcome::Invalid,
            },
        },
    };
    Ok(result)
}

/// `header.sender_id` when the header is an object with a string `sender_id`.
fn header_sender<H: JsonView>(header: &H) -> Result<Option<String>> {
    use super::canonical::View;
    let View::Object(entries) = header.view()? else {
        return Ok(None);
    };
    for (key, value) in entries {
        if key.as_ref() == "sender_id" {
            if let View::Str(s) = value.view()? {
                return Ok(Some(s.as_ref().to_owned()));
            }
        }
    }
    Ok(None)
}

/// Verifies the signature bytes with `key`: over the header and message as received, then
/// (only if that fails) over the header normalised the way OpenSPP's schema dumps it, once with
/// null members kept and once with them dropped (PROTOCOL §3). Never more than three attempts;
/// a form whose text equals one already tried is skipped. Returns the form that verified.
pub fn verify_forms<H: JsonView, M: JsonView>(
    params: &SignatureParams,
    header: &H,
    message: &M,
    key: &VerifyingKey,
) -> Result<Option<HeaderForm>> {
    let mut tried: Vec<String> = Vec::with_capacity(3);
    for form in [
        HeaderForm::AsReceived,
        HeaderForm::DefaultsKeepNulls,
        HeaderForm::DefaultsDropNulls,
    ] {
        let payload = canonical::signing_payload(header, message, form)?;
        if tried.contains(&payload) {
            continue;
        }
        let text = signing_string(params.created, params.expires, &digest(&payload));
        if key.verify(text.as_bytes(), &params.signature) {
            return Ok(Some(form));
        }
        tried.push(payload);
    }
    Ok(None)
}

/// One normalised header form tried with a key ([`explain`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormAttempt {
    pub form: HeaderForm,
    /// SHA-256 (base64) of the canonical bytes of this form.
    pub digest: String,
    /// This form's text equals an earlier form's: not tried again.
    pub same_as: Option<HeaderForm>,
    pub verified: bool,
}

/// The key tried for the signature's kid, and what each form gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyAttempt {
    /// The kid of the key used (None: a key given without kid).
    pub key_kid: Option<String>,
    pub key_algorithm: &'static str,
    /// Why this key: "kid matches", "only key of the set", "the one key given".
    pub chosen: &'static str,
    /// Empty when the key's algorithm is not the signature's (nothing can verify).
    pub forms: Vec<FormAttempt>,
}

/// Everything [`check`] looked at, for a person: `verify --explain` and `doctor`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// The outcome, exactly as [`check`] decides it.
    pub check: Check,
    /// Length and SHA-256 (base64) of the canonical bytes as received.
    pub canonical_len: usize,
    pub canonical_digest: String,
    /// The signing string that a signature over the bytes as received signs.
    pub signing_string: Option<String>,
    /// The kids in the key set (empty for one key given).
    pub available_kids: Vec<String>,
    /// The key tried (None: no key for the kid).
    pub key: Option<KeyAttempt>,
    /// The form that verified, if one did.
    pub verified_form: Option<HeaderForm>,
    /// Why the signature is not valid, one line each, in the order [`check`] decides.
    pub reasons: Vec<String>,
}

impl Explanation {
    /// As JSON (`verify --explain --json`, the binding).
    pub fn to_value(&self) -> serde_json::Value {
        use serde_json::json;
        let key = self.key.as_ref().map(|k| {
            json!({
                "kid": k.key_kid,
                "algorithm": k.key_algorithm,
                "chosen": k.chosen,
                "forms": k.forms.iter().map(|f| json!({
                    "form": f.form.as_str(),
                    "digest": f.digest,
                    "same_as": f.same_as.map(HeaderForm::as_str),
                    "verified": f.verified,
                })).collect::<Vec<_>>(),
            })
        });
        json!({
            "outcome": self.check.outcome.as_str(),
            "valid": self.check.is_valid(),
            "kid": self.check.kid,
            "algorithm": self.check.algorithm,
            "created": self.check.created,
            "expires": self.check.expires,
            "canonical_length": self.canonical_len,
            "canonical_sha256": self.canonical_digest,
            "signing_string": self.signing_string,
            "available_kids": self.available_kids,
            "key": key,
            "verified_form": self.verified_form.map(HeaderForm::as_str),
            "reasons": self.reasons,
        })
    }
}

/// Explains the check of `field` over `header` and `message` with `keys`: the canonical bytes'
/// digest, the signing string, the key chosen for the kid and each normalised header form tried.
/// The outcome is [`check`]'s; the rest only describes it, and the signature bytes are tried
/// even when the parameters alone refuse it (a signature that verifies but has expired says so).
pub fn explain<H: JsonView, M: JsonView>(
    field: &str,
    header: &H,
    message: &M,
    keys: &Keys<'_>,
    policy: Policy,
) -> Result<Explanation> {
    let check = check(field, header, message, keys, policy)?;
    let payload = canonical::signing_payload(header, message, HeaderForm::AsReceived)?;
    let canonical_digest = digest(&payload);
    let available_kids = match keys {
        Keys::One(_) => vec![],
        Keys::Set(jwks) => jwks
            .keys
            .iter()
            .map(|k| k.kid.clone().unwrap_or_else(|| "(no kid)".into()))
            .collect(),
    };
    let mut out = Explanation {
        canonical_len: payload.len(),
        signing_string: None,
        available_kids,
        key: None,
        verified_form: None,
        reasons: vec![],
        canonical_digest,
        check,
    };
    let params = match parse_params(field) {
        Ok(p) => p,
        Err(detail) => {
            out.reasons
                .push(format!("the signature field is malformed: {detail}"));
            return Ok(out);
        }
    };
    out.signing_string = Some(signing_string(
        params.created,
        params.expires,
        &out.canonical_digest,
    ));
    if let Err(r) = params.precheck(header_sender(header)?.as_deref(), policy) {
        let why = match r.outcome {
            Outcome::NotYetValid => format!(
                "created {} is {} s after our clock ({}), beyond the {} s allowed: a clock is off",
                params.created,
                params.created - policy.now,
                policy.now,
                policy.max_skew
            ),
            Outcome::Expired => format!(
                "expired at {}, {} s before our clock ({}): an old answer, or a clock is off",
                params.expires,
                policy.now - params.expires,
                policy.now
            ),
            Outcome::LifetimeTooLong => format!(
                "lifetime {} s is longer than the {} s accepted",
                params.expires - params.created,
                policy.max_lifetime
            ),
            other => format!(
                "{}: {}",
                other.as_str(),
                r.detail.as_deref().unwrap_or("refused by its parameters")
            ),
        };
        out.reasons.push(why);
    }
    let kid = params.kid.as_deref();
    let chosen = match keys {
        Keys::One(k) => Some((None, *k, "the one key given")),
        Keys::Set(jwks) => match kid.and_then(|k| jwks.get(k)) {
            Some(j) => Some((j.kid.clone(), &j.key, "kid matches")),
            None if jwks.keys.len() == 1 => {
                let j = &jwks.keys[0];
                Some((j.kid.clone(), &j.key, "only key of the set"))
            }
            None => None,
        },
    };
    let Some((key_kid, key, chosen)) = chosen else {
        out.reasons.push(format!(
            "no key for kid {}: the set holds {}",
            kid.unwrap_or("(none)"),
            if out.available_kids.is_empty() {
                "no keys".to_owned()
            } else {
                out.available_kids.join(", ")
            }
        ));
        return Ok(out);
    };
    if chosen == "only key of the set" {
        out.reasons.push(format!(
            "kid {} is not in the set; its only key ({}) was tried",
            kid.unwrap_or("(none)"),
            key_kid.as_deref().unwrap_or("no kid")
        ));
    }
    let mut attempt = KeyAttempt {
        key_kid,
        key_algorithm: key.algorithm().as_str(),
        chosen,
        forms: vec![],
    };
    match Algorithm::parse(&params.algorithm) {
        Some(alg) if alg == key.algorithm() => {
            let mut texts: Vec<(HeaderForm, String)> = vec![];
            for form in HeaderForm::ALL {
                let text = canonical::signing_payload(header, message, form)?;
                let d = digest(&text);
                if let Some((earlier, _)) = texts.iter().find(|(_, t)| *t == text) {
                    attempt.forms.push(FormAttempt {
                        form,
                        digest: d,
                        same_as: Some(*earlier),
                        verified: false,
                    });
                    continue;
                }
                let signed = signing_string(params.created, params.expires, &d);
                let verified = key.verify(signed.as_bytes(), &params.signature);
                attempt.forms.push(FormAttempt {
                    form,
                    digest: d,
                    same_as: None,
                    verified,
                });
                texts.push((form, text));
                if verified {
                    out.verified_form = Some(form);
                    break;
                }
            }
            if out.verified_form.is_none() {
                out.reasons.push(
                    "the signature does not verify with this key over any normalised header form \
                     (the bytes signed differ from these, or another key signed them)"
                        .to_owned(),
                );
            }
        }
        Some(alg) => out.reasons.push(format!(
            "the signature says {} but the key is {}: it cannot verify",
            alg.as_str(),
            key.algorithm().as_str()
        )),
        None => out
            .reasons
            .push(format!("unsupported algorithm '{}'", params.algorithm)),
    }
    out.key = Some(attempt);
    if out.check.outcome == Outcome::Valid {
        out.reasons.clear();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse_in_any_order_with_either_kid_name() {
        let p = parse_params(
            r#"signature="AAAA", expires="20", keyId="a|b|ed25519", created="10", algorithm="ED25519", namespace="spdci""#,
        )
        .unwrap();
        assert_eq!(p.kid.as_deref(), Some("a|b|ed25519"));
        assert_eq!((p.created, p.expires), (10, 20));
        assert_eq!(p.kid_sender(), Some("a"));
        for bad in [
            "",
            "garbage",
            r#"created="10", expires="20", algorithm="ed25519""#,
            r#"created="-1", expires="20", algorithm="ed25519", signature="AAAA""#,
            r#"created="10", expires="20", algorithm="ed25519", signature="AA*A""#,
            r#"created="10", created="11", expires="20", algorithm="ed25519", signature="AAAA""#,
            r#"namespace="other", created="10", expires="20", algorithm="ed25519", signature="AAAA""#,
        ] {
            assert!(parse_params(bad).is_err(), "{bad}");
        }
    }
}
