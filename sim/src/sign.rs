//! Signing requests as Twilio does (`X-Twilio-Signature`, HMAC-SHA1 with the auth token over the
//! public URL and sorted form parameters), through the core crate's single implementation.

use twiml::signature::{compute, Algorithm};

/// The `X-Twilio-Signature` value for a request to `public_url` with form `params`.
pub fn signature(auth_token: &str, public_url: &str, params: &[(String, String)]) -> String {
    compute(
        public_url,
        params,
        auth_token.as_bytes(),
        Algorithm::HmacSha1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(k: &str, v: &str) -> (String, String) {
        (k.into(), v.into())
    }

    // Twilio's published test vector.
    #[test]
    fn matches_twilio_vector() {
        let params = [
            p("To", "+18005551212"),
            p("CallSid", "CA1234567890ABCDE"),
            p("Caller", "+14158675309"),
            p("Digits", "1234"),
            p("From", "+14158675309"),
        ];
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(
            signature("12345", url, &params),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
        assert_eq!(
            signature(
                "12345",
                "https://mycompany.com:443/myapp.php?foo=1&bar=2",
                &params
            ),
            "kvajT1Ptam85bY51eRf/AJRuM3w="
        );
    }
}
