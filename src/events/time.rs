//! RFC 3339 timestamps from Unix milliseconds, written without allocating: every NDJSON line has one,
//! so this sits on the hottest path of `replay`.

/// Current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Formats `ms` as `YYYY-MM-DDTHH:MM:SS.mmmZ` into `buf` and returns the written bytes. Times outside
/// years 0–9999 are clamped, since TikTok's create times are always recent.
pub fn format_rfc3339_ms(ms: i64, buf: &mut [u8; 24]) -> &[u8] {
    const MAX_MS: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
    const MIN_MS: i64 = -62_167_219_200_000; // 0000-01-01T00:00:00.000Z
    let ms = ms.clamp(MIN_MS, MAX_MS);
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    let fields: [(u32, usize); 7] = [
        (year as u32, 4),
        (month, 2),
        (day, 2),
        (sod / 3600, 2),
        (sod / 60 % 60, 2),
        (sod % 60, 2),
        (milli, 3),
    ];
    let seps = [b'-', b'-', b'T', b':', b':', b'.', b'Z'];
    let mut at = 0;
    for ((value, width), sep) in fields.into_iter().zip(seps) {
        let mut v = value;
        for i in (0..width).rev() {
            buf[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        at += width;
        buf[at] = sep;
        at += 1;
    }
    &buf[..at]
}

/// [`format_rfc3339_ms`] as a `String`, for the places that are not on a hot path.
pub fn rfc3339_ms(ms: i64) -> String {
    let mut buf = [0u8; 24];
    String::from_utf8_lossy(format_rfc3339_ms(ms, &mut buf)).into_owned()
}

/// Milliseconds per unit of the durations tiklive accepts (`500ms`, `5s`, `2m`, `90min`, `1h`, `7d`,
/// `2w`), for flags such as `--retry-delay` and times such as `--since 24h` alike.
pub fn duration_unit_ms(unit: &str) -> Option<i64> {
    Some(match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return None,
    })
}

/// From here on (13 digits), a Unix time is taken as milliseconds: 1,000,000,000,000 is 2001-09-09 in
/// milliseconds, and the year 33658 in seconds.
const MIN_UNIX_MS: i64 = 1_000_000_000_000;

/// Parses a time given on the command line (`--since`, `--until`) into Unix milliseconds:
/// RFC 3339 (`2026-11-22T18:30:00Z`, `…+01:00`, fractions allowed), a date (`2026-11-22` or
/// `20261122`, midnight UTC), a Unix time in seconds (`1763830200`) or milliseconds
/// (`1763830200000`), or a duration back from `now_ms` (`90m`, `24h`, `7d`, `30s`, `2w`).
pub fn parse_time_arg(text: &str, now_ms: i64) -> Result<i64, String> {
    let text = text.trim();
    let invalid = || {
        format!(
            "invalid time {text:?}: use RFC 3339 (2026-11-22T18:30:00Z), a date (2026-11-22), \
             a Unix time in seconds or milliseconds, or a duration back from now (90m, 24h, 7d)"
        )
    };
    if text.is_empty() {
        return Err(invalid());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        // `date +%Y%m%d`, which cron scripts write: as seconds it would be a day of 1970-1973.
        // From 1990 on; a mistyped one (20261301) is refused rather than read as seconds.
        if text.len() == 8 && text >= "19900101" {
            let dashed = format!("{}-{}-{}", &text[..4], &text[4..6], &text[6..]);
            return parse_rfc3339_or_date(&dashed).ok_or_else(invalid);
        }
        let number: i64 = text.parse().map_err(|_| invalid())?;
        // Milliseconds (TikTok's times, JavaScript's): as seconds they would be after the year 5000.
        if number >= MIN_UNIX_MS {
            return Ok(number);
        }
        return number.checked_mul(1000).ok_or_else(invalid);
    }
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 && text[digits..].bytes().all(|b| b.is_ascii_alphabetic()) {
        let (number, unit) = text.split_at(digits);
        let n: i64 = number.parse().map_err(|_| invalid())?;
        let ms_per = duration_unit_ms(unit).ok_or_else(invalid)?;
        return n
            .checked_mul(ms_per)
            .and_then(|back| now_ms.checked_sub(back))
            .ok_or_else(invalid);
    }
    parse_rfc3339_or_date(text).ok_or_else(invalid)
}

fn parse_rfc3339_or_date(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year, month as u32, day as u32);
    if b.len() == 10 {
        return Some(days * 86_400_000);
    }
    if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 19 || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut at = 19;
    let mut millis = 0;
    if b.get(at) == Some(&b'.') {
        let digits = b[at + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits == 0 {
            return None;
        }
        let frac = &text[at + 1..at + 1 + digits];
        let padded = format!("{:0<3}", &frac[..digits.min(3)]);
        millis = padded.parse::<i64>().ok()?;
        at += 1 + digits;
    }
    let offset_secs = match &text[at..] {
        "Z" | "z" => 0,
        zone if zone.len() == 6
            && matches!(zone.as_bytes()[0], b'+' | b'-')
            && zone.as_bytes()[3] == b':' =>
        {
            let (h, m) = (num(at + 1..at + 3)?, num(at + 4..at + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset_secs;
    Some(secs * 1000 + millis)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Howard Hinnant's civil-to-days algorithm, the inverse of [`civil_from_days`].
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(ms: i64) -> String {
        let mut buf = [0u8; 24];
        String::from_utf8(format_rfc3339_ms(ms, &mut buf).to_vec()).unwrap()
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(fmt(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(fmt(1692724604212), "2023-08-22T17:16:44.212Z");
        assert_eq!(fmt(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(fmt(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(fmt(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(fmt(i64::MIN), "0000-01-01T00:00:00.000Z");
    }

    #[test]
    fn time_arguments_in_every_accepted_form() {
        let now = 1_763_830_200_000; // 2025-11-22T16:50:00Z
        let t = |s: &str| parse_time_arg(s, now);
        assert_eq!(t("2023-08-22T17:16:44.212Z"), Ok(1_692_724_604_212));
        assert_eq!(t("2023-08-22T19:16:44.2+02:00"), Ok(1_692_724_604_200));
        assert_eq!(t("2023-08-22T12:16:44-05:00"), Ok(1_692_724_604_000));
        assert_eq!(t("2023-08-22 17:16:44Z"), Ok(1_692_724_604_000));
        assert_eq!(t("2000-02-29"), Ok(951_782_400_000));
        assert_eq!(t("1692724604"), Ok(1_692_724_604_000));
        assert_eq!(t("1692724604212"), Ok(1_692_724_604_212), "milliseconds");
        assert_eq!(
            t("999999999999"),
            Ok(999_999_999_999_000),
            "12 digits: seconds"
        );
        assert_eq!(t("20230822"), Ok(1_692_662_400_000), "a compact date");
        assert_eq!(t("20000229"), Ok(951_782_400_000));
        assert_eq!(t("19691231"), Ok(19_691_231_000), "before 1990: seconds");
        assert_eq!(t("0"), Ok(0));
        assert_eq!(t("24h"), Ok(now - 86_400_000));
        assert_eq!(t("7d"), Ok(now - 7 * 86_400_000));
        assert_eq!(t("90m"), Ok(now - 90 * 60_000));
        assert_eq!(t(" 30s "), Ok(now - 30_000));
        for bad in [
            "",
            "yesterday",
            "2023-02-29",
            "2023-13-01",
            "2023-08-22T25:00:00Z",
            "2023-08-22T17:16:44",
            "24 h",
            "5y",
            "-3d",
            "2023-08-22T17:16:44.Z",
            "99999999999999999999",
            "9999999999999999d",
            "20230229",
            "20261301",
            "99999999",
        ] {
            let err = t(bad).unwrap_err();
            assert!(err.contains("invalid time"), "{bad:?}: {err}");
        }
        for ms in [0, 951_782_400_000, 1_692_724_604_212, -86_400_000] {
            assert_eq!(t(&fmt(ms)), Ok(ms), "round trip of {}", fmt(ms));
        }
    }
}
