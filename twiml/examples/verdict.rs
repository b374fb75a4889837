//! Prints the verdict for each file named on the command line, to inspect TwiML by hand:
//! `cargo run -p twiml --example verdict -- twiml/fixtures/*.xml`.

fn main() {
    for path in std::env::args().skip(1) {
        match std::fs::read(&path) {
            Ok(body) => println!("{path}: {}", twiml::analyze(&body)),
            Err(e) => eprintln!("{path}: {e}"),
        }
    }
}
