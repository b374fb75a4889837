//! `twilio-sim`: plays Twilio's part against a local stack so nobody needs a phone to test.
fn main() {}
