//! RFC 3339 date-times, for connectors (a guest has no date crate): one parser, shared by
//! `sql_tables` (MySQL's UTC `DATETIME`) and captures that read when a source wrote something.

/// `2026-12-06T10:00:00.5+01:00` as microseconds since the Unix epoch (UTC); None for text
/// that is not an RFC 3339 date-time. A leap second (`:60`) counts as `:59`; digits past
/// microseconds are dropped.
pub fn rfc3339_micros(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut i = 19;
    let mut micros = 0i64;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let digits = &s[start..i.min(start + 6)];
        micros = digits.parse::<i64>().ok()? * 10i64.pow(6 - digits.len() as u32);
    }
    let offset_minutes = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let m = num(i + 1..i + 3)? * 60 + num(i + 4..i + 6)?;
            if *sign == b'-' { -m } else { m }
        }
        _ => return None,
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    let t = days * 86_400 + h * 3_600 + mi * 60 + sec.min(59) - offset_minutes * 60;
    Some(t * 1_000_000 + micros)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day since 1970-01-01: the inverse of `days_from_civil`.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod test {
    use super::rfc3339_micros as us;

    #[test]
    fn rfc3339_times() {
        assert_eq!(us("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(us("2026-12-07T03:20:00.123Z"), Some(1_796_613_600_123_000));
        assert_eq!(
            us("2026-12-07T05:20:00.123+02:00"),
            Some(1_796_613_600_123_000)
        );
        assert_eq!(
            us("2026-12-07T03:20:00.1234567Z"),
            Some(1_796_613_600_123_456)
        );
        assert_eq!(us("2000-02-29t12:00:00z"), Some(951_825_600_000_000));
        assert_eq!(us("1969-12-31T23:59:59Z"), Some(-1_000_000));
        for bad in [
            "2026-12-07",
            "2026-12-07T03:20:00",
            "2026-13-07T03:20:00Z",
            "x026-12-07T03:20:00Z",
            "2026-12-07T03:20:00.Z",
            "2026-12-07T03:20:00+0200",
        ] {
            assert_eq!(us(bad), None, "{bad}");
        }
        for day in [-800_000, -1, 0, 59, 60, 365, 11_016, 2_932_896] {
            let (y, m, d) = super::civil_from_days(day);
            assert_eq!(super::days_from_civil(y, m, d), day);
        }
    }
}
