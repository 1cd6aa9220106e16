#![no_main]
//! Budget windows, thresholds, alert and price configuration: any instant and offset gives a window that
//! holds it, any stored counter decodes to what it encodes, and any JSON either reads or fails with a reason.
use libfuzzer_sys::fuzz_target;
use tollgate::budget::calendar::{self, Unit, Window};
use tollgate::budget::thresholds::{Marker, Thresholds};
use tollgate::pricing::modality::ModalPrice;
use tollgate::budget::alerts::WebhookConfig;
use tollgate::budget::inspect::InspectConfig;
use tollgate::budget::ledger::Counter;
use tollgate::codec::json::tape;

fuzz_target!(|data: &[u8]| {
    let word = |at: usize| {
        let mut b = [0u8; 8];
        for (o, v) in b.iter_mut().zip(data.iter().skip(at)) {
            *o = *v;
        }
        u64::from_le_bytes(b)
    };
    let now = word(0);
    let offset = (word(8) % (26 * 3600 + 1)) as i32 - 12 * 3600;
    for window in [
        Window::Calendar { unit: Unit::Day, offset_s: offset },
        Window::Calendar { unit: Unit::Week, offset_s: offset },
        Window::Calendar { unit: Unit::Month, offset_s: offset },
        Window::Fixed(word(16) % (366 * 86_400) + 1),
    ] {
        let b = window.bounds(now);
        assert!(b.start <= now && now <= b.end, "{window:?} {now} {b:?}");
        assert!(now == u64::MAX || now < b.end);
        assert!(window.seconds_to_reset(now) >= 1);
        assert!(!window.key(now).is_empty());
        let _ = window.rls_unit();
    }
    let _ = Marker::decode(data);
    if let Some(c) = Counter::decode(data) {
        assert_eq!(Counter::decode(&c.encode()).as_ref(), Some(&c));
    }
    let text = String::from_utf8_lossy(data);
    let _ = calendar::parse_utc_offset(&text);
    let _ = tape::read(&text, |v| {
        for e in [
            calendar::read("k", v, Some(v)).err(),
            Thresholds::read("k", v).err(),
            WebhookConfig::read("k", v).err(),
            ModalPrice::read("k", v).err(),
        ]
        .into_iter()
        .flatten()
        {
            assert!(!e.reason.is_empty() && e.key.starts_with('k'), "{e:?}");
        }
        for e in [InspectConfig::read(v).err()].into_iter().flatten() {
            assert!(!e.reason.is_empty() && e.key.starts_with("budgets.inspect"), "{e:?}");
        }
    });
});
