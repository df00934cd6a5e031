//! Tests of the payload codecs.

use super::*;
use rand::{Rng, SeedableRng};

fn sample(body: &[u8]) -> MessageRecord<'_> {
    MessageRecord {
        queue_id: QueueId(0x1234_5678_9abc_de01),
        received_at_ms: 1_700_000_000_123,
        client: "192.0.2.7".into(),
        helo: "mx.example.test".into(),
        sender: String::new(),
        recipients: vec![
            RecipientEntry::new("jane@example.test", Route::Local { user: "jane".into() }),
            RecipientEntry::new("bob@elsewhere.test", Route::Remote { domain: "elsewhere.test".into() }),
        ],
        ext: Default::default(),
        body,
    }
}

#[test]
fn message_round_trips_with_null_sender() {
    let msg = sample(b"Subject: hi\r\n\r\nbody\r\n");
    let bytes = encode_message(&msg).unwrap();
    assert_eq!(decode_message(&bytes).unwrap(), msg);
}

#[test]
fn envelope_plus_body_parts_equal_whole_encoding() {
    let msg = sample(b"x");
    let mut parts = encode_message_envelope(&msg).unwrap();
    parts.extend_from_slice(msg.body);
    assert_eq!(parts, encode_message(&msg).unwrap());
}

#[test]
fn empty_body_decodes_as_empty_slice() {
    let msg = sample(b"");
    let bytes = encode_message(&msg).unwrap();
    assert_eq!(decode_message(&bytes).unwrap().body, b"");
}

#[test]
fn every_truncation_of_the_envelope_is_a_decode_error() {
    let msg = sample(b"");
    let bytes = encode_message(&msg).unwrap();
    for cut in 0..bytes.len() {
        assert!(matches!(decode_message(&bytes[..cut]), Err(DecodeError::Truncated { .. })), "cut at {cut}");
    }
}

#[test]
fn bad_route_tag_and_bad_utf8_are_named() {
    let msg = sample(b"");
    let mut bytes = encode_message(&msg).unwrap();
    let tag_at = 16 + (2 + 9) + (2 + 15) + 2 + 2 + (2 + 17);
    assert_eq!(bytes[tag_at], 0);
    bytes[tag_at] = 9;
    assert_eq!(decode_message(&bytes), Err(DecodeError::UnknownRoute { tag: 9 }));
    let mut bytes = encode_message(&msg).unwrap();
    bytes[18] = 0xff;
    assert_eq!(decode_message(&bytes), Err(DecodeError::InvalidUtf8 { field: "client" }));
}

/// A sample whose every extension field differs from its default.
fn extended(body: &[u8]) -> MessageRecord<'_> {
    let mut msg = sample(body);
    msg.ext = MessageExt {
        smtputf8: true,
        requiretls: true,
        body: BodyKind::BinaryMime,
        ret: Some(DsnRet::Headers),
        envid: Some("QQ314159".into()),
    };
    msg.recipients[1].dsn = RecipientDsn {
        notify: Notify { success: true, failure: true, ..Notify::default() },
        orcpt: Some("rfc822;bob@elsewhere.test".into()),
    };
    msg
}

#[test]
fn extensions_round_trip_and_keep_the_body_whole() {
    let msg = extended(b"\x00binary\r\n");
    let bytes = encode_message(&msg).unwrap();
    assert_eq!(decode_message(&bytes).unwrap(), msg);
    // The body still starts right after the envelope.
    let envelope = encode_message_envelope(&msg).unwrap();
    assert_eq!(&bytes[envelope.len()..], msg.body);
    for cut in 0..envelope.len() {
        assert!(decode_message(&bytes[..cut]).is_err(), "cut at {cut}");
    }
}

#[test]
fn a_message_without_extensions_has_no_block() {
    let plain = encode_message(&sample(b"")).unwrap();
    let count_at = 16 + (2 + 9) + (2 + 15) + 2;
    assert_eq!(u16::from_le_bytes([plain[count_at], plain[count_at + 1]]), 2, "no flag bit");
    let mut msg = sample(b"");
    msg.recipients[0].dsn.notify = Notify { never: true, ..Notify::default() };
    let flagged = encode_message(&msg).unwrap();
    assert_eq!(u16::from_le_bytes([flagged[count_at], flagged[count_at + 1]]), 2 | EXT_FLAG);
    assert_eq!(decode_message(&flagged).unwrap().recipients[0].dsn.notify, msg.recipients[0].dsn.notify);
}

#[test]
fn unknown_repeated_or_misplaced_extensions_are_refused() {
    let msg = sample(b"");
    let base = encode_message_envelope(&msg).unwrap();
    let count_at = 16 + (2 + 9) + (2 + 15) + 2;
    let with_block = |block: &[u8]| {
        let mut b = base.clone();
        b[count_at + 1] |= 0x80;
        b.extend_from_slice(&(block.len() as u32).to_le_bytes());
        b.extend_from_slice(block);
        b
    };
    assert_eq!(decode_message(&with_block(&[99, 0, 0])), Err(DecodeError::UnknownExtension { tag: 99 }));
    assert_eq!(decode_message(&with_block(&[1, 0, 0, 1, 0, 0])), Err(DecodeError::ExtensionOrder { tag: 1 }));
    assert_eq!(decode_message(&with_block(&[2, 0, 0, 1, 0, 0])), Err(DecodeError::ExtensionOrder { tag: 1 }));
    assert_eq!(decode_message(&with_block(&[])), Err(DecodeError::EmptyExtensionBlock));
    // Recipient 1's NOTIFY before recipient 0's: out of order.
    assert_eq!(
        decode_message(&with_block(&[16, 3, 0, 1, 0, 2, 16, 3, 0, 0, 0, 2])),
        Err(DecodeError::ExtensionOrder { tag: 16 })
    );
    assert_eq!(decode_message(&with_block(&[1, 1, 0, 7])), Err(DecodeError::BadExtension { tag: 1 }));
    // NOTIFY for recipient 5 of 2, and a NOTIFY byte with no bit set.
    assert_eq!(decode_message(&with_block(&[16, 3, 0, 5, 0, 2])), Err(DecodeError::BadExtension { tag: 16 }));
    assert_eq!(decode_message(&with_block(&[16, 3, 0, 1, 0, 0])), Err(DecodeError::BadExtension { tag: 16 }));
    assert_eq!(
        decode_message(&with_block(&[16, 3, 0, 1, 0, 2, 16, 3, 0, 1, 0, 4])),
        Err(DecodeError::ExtensionOrder { tag: 16 })
    );
    let bytes = with_block(&[16, 3, 0, 1, 0, 2]);
    let ok = decode_message(&bytes).unwrap();
    assert!(ok.recipients[1].dsn.notify.success && !ok.recipients[1].dsn.notify.failure);
}

#[test]
fn more_recipients_than_the_count_can_flag_are_refused() {
    let mut msg = sample(b"");
    let r = msg.recipients[0].clone();
    msg.recipients = vec![r; MAX_RECIPIENTS + 1];
    assert_eq!(encode_message_envelope(&msg), Err(EncodeError::TooManyRecipients { count: MAX_RECIPIENTS + 1 }));
}

#[test]
fn overlong_field_is_refused_at_encode() {
    let mut msg = sample(b"");
    msg.helo = "h".repeat(70_000);
    assert_eq!(encode_message_envelope(&msg), Err(EncodeError::FieldTooLong { field: "helo", len: 70_000 }));
}

#[test]
fn tombstone_round_trips_and_checks_length_and_outcome() {
    let t =
        Tombstone { target: SpoolRef { dir: 4, segment: 9, offset: 4096 }, recipient: 3, outcome: Outcome::Bounced };
    let bytes = encode_tombstone(&t);
    assert_eq!(decode_tombstone(&bytes), Ok(t));
    assert!(matches!(decode_tombstone(&bytes[..12]), Err(DecodeError::WrongLength { .. })));
    let mut bad = bytes;
    bad[12] = 7;
    assert_eq!(decode_tombstone(&bad), Err(DecodeError::UnknownOutcome { tag: 7 }));
}

fn state() -> RecipientState {
    RecipientState {
        target: SpoolRef { dir: 2, segment: 0x0102_0304, offset: 4096 },
        recipient: 7,
        seq: 41,
        attempts: 5,
        next_attempt_ms: 1_700_000_900_000,
        warned: true,
        held: false,
        last_error: "451 4.7.1 greylisted, try again in 5 minutes — ünïcode".into(),
    }
}

#[test]
fn recipient_state_round_trips_with_every_flag_combination() {
    for (warned, held) in [(false, false), (true, false), (false, true), (true, true)] {
        let s = RecipientState { warned, held, ..state() };
        let bytes = encode_recipient_state(&s).unwrap();
        assert_eq!(bytes.len(), RECIPIENT_STATE_FIXED_LEN + s.last_error.len());
        assert_eq!(decode_recipient_state(&bytes), Ok(s));
    }
}

#[test]
fn recipient_state_with_empty_and_longest_last_error_round_trips() {
    for last_error in [String::new(), "x".repeat(LAST_ERROR_MAX_LEN)] {
        let s = RecipientState { last_error, ..state() };
        assert_eq!(decode_recipient_state(&encode_recipient_state(&s).unwrap()), Ok(s));
    }
}

#[test]
fn overlong_last_error_is_refused_at_encode() {
    let s = RecipientState { last_error: "x".repeat(LAST_ERROR_MAX_LEN + 1), ..state() };
    assert_eq!(
        encode_recipient_state(&s),
        Err(EncodeError::FieldTooLong { field: "last error", len: LAST_ERROR_MAX_LEN + 1 })
    );
}

#[test]
fn every_truncation_of_a_recipient_state_is_a_decode_error() {
    let bytes = encode_recipient_state(&state()).unwrap();
    for cut in 0..bytes.len() {
        assert!(matches!(decode_recipient_state(&bytes[..cut]), Err(DecodeError::Truncated { .. })), "cut at {cut}");
    }
}

#[test]
fn recipient_state_with_trailing_bytes_is_a_decode_error() {
    let mut bytes = encode_recipient_state(&state()).unwrap();
    let expected = bytes.len();
    bytes.push(0);
    assert_eq!(decode_recipient_state(&bytes), Err(DecodeError::WrongLength { len: expected + 1, expected }));
}

#[test]
fn recipient_state_unknown_flags_and_bad_utf8_are_named() {
    let mut bytes = encode_recipient_state(&state()).unwrap();
    bytes[32] |= 0x80;
    assert_eq!(decode_recipient_state(&bytes), Err(DecodeError::UnknownStateFlags { flags: 0x81 }));
    let mut bytes = encode_recipient_state(&state()).unwrap();
    bytes[RECIPIENT_STATE_FIXED_LEN] = 0xff;
    assert_eq!(decode_recipient_state(&bytes), Err(DecodeError::InvalidUtf8 { field: "last error" }));
}

#[test]
fn random_payloads_never_panic() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let good = [encode_message(&sample(b"body")).unwrap(), encode_recipient_state(&state()).unwrap()];
    for _ in 0..5000 {
        let mut bytes = match rng.gen_range(0..4) {
            0 | 1 => good[rng.gen_range(0..good.len())].clone(),
            _ => (0..rng.gen_range(0..100)).map(|_| rng.gen()).collect(),
        };
        for _ in 0..rng.gen_range(0..4) {
            if !bytes.is_empty() {
                let i = rng.gen_range(0..bytes.len());
                bytes[i] = rng.gen();
            }
        }
        let _ = decode_message(&bytes);
        let _ = message_body(&bytes);
        let _ = moved_body(&bytes);
        let _ = decode_tombstone(&bytes);
        let _ = decode_recipient_state(&bytes);
    }
}

#[test]
fn the_body_alone_is_the_body_decode_gives() {
    // Whatever decodes whole gives the same body without its envelope,
    // from a Message and from a Moved payload; a truncated envelope or a
    // bad route tag is refused as decode_message refuses it.
    let body = b"Subject: hi\r\n\r\nbody\r\n";
    for msg in [sample(body), extended(body), sample(b"")] {
        let bytes = encode_message(&msg).unwrap();
        assert_eq!(message_body(&bytes).unwrap(), decode_message(&bytes).unwrap().body);
        let old = SpoolRef { dir: 3, segment: 9, offset: 120 };
        let mut moved = encode_moved_head(old, &[0, 1]);
        moved.extend_from_slice(&bytes);
        assert_eq!(moved_body(&moved).unwrap(), decode_moved(&moved).unwrap().message.body);
    }
    let bytes = encode_message(&sample(b"")).unwrap();
    for cut in 0..bytes.len() {
        assert!(matches!(message_body(&bytes[..cut]), Err(DecodeError::Truncated { .. })), "cut at {cut}");
    }
    let mut bad = bytes.clone();
    bad[16 + (2 + 9) + (2 + 15) + 2 + 2 + (2 + 17)] = 9;
    assert_eq!(message_body(&bad), Err(DecodeError::UnknownRoute { tag: 9 }));
    let mut bad = bytes;
    bad[18] = 0xff;
    assert_eq!(message_body(&bad), Err(DecodeError::InvalidUtf8 { field: "client" }));
}
