//! Sniffing: a web page is ruled out from a prefix of its body, read through the host in
//! windows, and the answer is the one the whole body would give.

use super::tests::CONFLICT;
use super::*;

/// A `read` for [`sniff_received`] over `body` that records every window it was asked for.
fn recording_reader<'a>(
    body: &'a [u8],
    asked: &'a std::cell::RefCell<Vec<usize>>,
) -> impl FnMut(usize) -> Result<Vec<u8>, ()> + 'a {
    move |n| {
        asked.borrow_mut().push(n);
        Ok(body.get(..n).unwrap_or(body).to_vec())
    }
}

#[test]
fn a_web_page_is_ruled_out_from_its_first_kilobyte() {
    let c = Config::default();
    let mut page = b"<!DOCTYPE html>\n<html><head><title>calls</title></head><body>\n".to_vec();
    while page.len() < 20 * 1024 {
        page.extend_from_slice(b"<tr><td>CA0123456789abcdef</td><td>completed</td></tr>\n");
    }
    let asked = std::cell::RefCell::new(Vec::new());
    let got = sniff_received(
        &c,
        page.len(),
        Encoding::Identity,
        true,
        recording_reader(&page, &asked),
    );
    assert_eq!(got, Ok(twiml::Sniff::NotTwiml));
    // One read of the first kilobyte, not a copy of the 20 KiB page.
    assert_eq!(*asked.borrow(), vec![SNIFF_WINDOW]);
}

#[test]
fn a_long_prolog_widens_the_sniff_window_to_the_same_answer() {
    let c = Config::default();
    let mut body = b"<?xml version=\"1.0\"?>\n<!-- ".to_vec();
    body.extend(std::iter::repeat_n(b'x', 3000));
    body.extend_from_slice(b" -->\n");
    body.extend_from_slice(CONFLICT.strip_prefix(b"<?xml version=\"1.0\"?>\n").unwrap());
    let asked = std::cell::RefCell::new(Vec::new());
    let got = sniff_received(
        &c,
        body.len(),
        Encoding::Identity,
        true,
        recording_reader(&body, &asked),
    );
    assert_eq!(got, Ok(twiml::Sniff::Twiml));
    assert_eq!(got, Ok(sniff_body(&c, &body, Encoding::Identity, true)));
    assert_eq!(*asked.borrow(), vec![1024, 4096.min(body.len())]);

    // Received so far: only part of the prolog, and the stream goes on: wait for more.
    let asked = std::cell::RefCell::new(Vec::new());
    let got = sniff_received(
        &c,
        2000,
        Encoding::Identity,
        false,
        recording_reader(&body, &asked),
    );
    assert_eq!(got, Ok(twiml::Sniff::NeedMore));
    assert_eq!(*asked.borrow(), vec![1024, 2000]);

    // The whole body, but it ends inside the prolog: judged in full, as before.
    let asked = std::cell::RefCell::new(Vec::new());
    let got = sniff_received(
        &c,
        2000,
        Encoding::Identity,
        true,
        recording_reader(&body, &asked),
    );
    assert_eq!(got, Ok(twiml::Sniff::Twiml));
}

#[test]
fn sniffing_a_gzip_page_reads_a_prefix_too() {
    let c = Config::default();
    let mut page = b"<!DOCTYPE html><html><body>".to_vec();
    for i in 0..4000u32 {
        page.extend_from_slice(format!("<p>{i:08x}</p>").as_bytes());
    }
    let wire = gzip::encode(&page).unwrap();
    assert!(wire.len() > SNIFF_WINDOW);
    let asked = std::cell::RefCell::new(Vec::new());
    let got = sniff_received(
        &c,
        wire.len(),
        Encoding::Gzip,
        true,
        recording_reader(&wire, &asked),
    );
    assert_eq!(got, Ok(twiml::Sniff::NotTwiml));
    assert_eq!(*asked.borrow(), vec![SNIFF_WINDOW]);
}

#[test]
fn an_unreadable_body_is_an_error_for_the_caller() {
    let got = sniff_received(&Config::default(), 10, Encoding::Identity, true, |_| {
        Err::<Vec<u8>, _>("host error")
    });
    assert_eq!(got, Err("host error"));
}
