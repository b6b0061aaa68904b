//! Scheduled snapshots (`[snapshots] every = "1h" keep = 24`): when one is
//! due, what it is called and which old ones go. Pure: the clock is an
//! argument and nothing is read from ZFS here, so every rule is tested
//! with fixed times.
//!
//! * **Slots** are the multiples of `every` since the Unix epoch (UTC):
//!   `every = "1h"` fires at the top of each hour, `"1d"` at 00:00 UTC,
//!   `"7m"` at 00:00, 00:07, ... of 1970-01-01 and so on, forever. The
//!   schedule is a property of the clock, not of when hostd started, so a
//!   restart neither shifts it nor doubles a snapshot.
//! * **Names** come from the slot, not from the moment the snapshot was
//!   taken: `auto-YYYYMMDDTHHMMSSZ`. Taking the same slot twice (a retry,
//!   a second hostd racing the first) names the same snapshot, which ZFS
//!   refuses as existing: idempotent by construction.
//! * **Due** means no scheduled snapshot exists at or after the current
//!   slot. After downtime spanning many slots, exactly one snapshot is due:
//!   the missed slots are gone, and taking them now would all capture the
//!   same data anyway.
//! * **Pruning** keeps the newest `keep` scheduled snapshots.
//!
//! Slots have one-second resolution (the name has no sub-seconds); the
//! config guarantees `every` >= 1 minute. A clock before 1970 is treated as
//! 1970-01-01T00:00:00Z rather than supported: no real node runs there and
//! names stay four-digit-year.

use std::cmp::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use horcrux_config::types::SCHEDULED_SNAPSHOT_PREFIX;

const SECS_PER_DAY: u64 = 86_400;

/// The length of the part after the prefix: `YYYYMMDDTHHMMSSZ`.
const STAMP_LEN: usize = 16;

/// The interval in whole seconds, at least 1: slot names have no
/// sub-seconds, and a zero interval (never valid in a config) must not
/// divide by zero.
fn every_secs(every: Duration) -> u64 {
    every.as_secs().max(1)
}

/// Whole seconds since the epoch, rounded down; 0 before the epoch.
fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The instant `secs` after the epoch; `None` past what `SystemTime` holds.
fn from_unix_secs(secs: u64) -> Option<SystemTime> {
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// The start of the slot `now` is in: the latest multiple of `every` since
/// the epoch that is not after `now`.
pub fn current_slot(every: Duration, now: SystemTime) -> SystemTime {
    let secs = unix_secs(now);
    let slot = secs - secs % every_secs(every);
    // `slot` <= `now`, which is a valid SystemTime, so this cannot fail;
    // `now` is only a fallback that keeps the function total.
    from_unix_secs(slot).unwrap_or(now)
}

/// The start of the slot after the one `now` is in: strictly after `now`.
/// This is when the scheduler should next wake up.
pub fn next_slot(every: Duration, now: SystemTime) -> SystemTime {
    let secs = unix_secs(now);
    let step = every_secs(every);
    let next = (secs - secs % step).saturating_add(step);
    // Only fails beyond year 292 billion; saturating keeps it total.
    from_unix_secs(next).unwrap_or_else(|| current_slot(every, now))
}

/// Whether a scheduled snapshot should be taken now. `newest_scheduled` is
/// the newest existing scheduled snapshot's time: preferably its slot
/// ([`parse_snapshot_name`] of its name), though its creation time works
/// as well since a snapshot is created at or after its slot.
///
/// Due when there is none at or after the current slot. However many slots
/// passed while hostd was down, this makes exactly one snapshot due (for
/// the current slot), never one per missed slot. A newest snapshot after
/// `now` (the clock was set back) means not due: waiting is harmless, and
/// a snapshot for an earlier slot could sort confusingly.
pub fn is_due(every: Duration, newest_scheduled: Option<SystemTime>, now: SystemTime) -> bool {
    let slot = current_slot(every, now);
    newest_scheduled.is_none_or(|newest| newest < slot)
}

/// How late the snapshot of `slot` was taken (`fired`): the scheduler's
/// jitter. Zero when `fired` is before `slot` (a clock step).
pub fn delay(slot: SystemTime, fired: SystemTime) -> Duration {
    fired.duration_since(slot).unwrap_or(Duration::ZERO)
}

/// The name of the scheduled snapshot of `slot`:
/// `auto-YYYYMMDDTHHMMSSZ` in UTC, e.g. `auto-20240229T130000Z`.
/// Lexical order of these names is time order (for years 1970 to 9999).
pub fn snapshot_name(slot: SystemTime) -> String {
    let secs = unix_secs(slot);
    let (year, month, day) = civil_from_days(secs / SECS_PER_DAY);
    let of_day = secs % SECS_PER_DAY;
    let (hour, minute, second) = (of_day / 3600, of_day % 3600 / 60, of_day % 60);
    format!(
        "{SCHEDULED_SNAPSHOT_PREFIX}{year:04}{month:02}{day:02}T{hour:02}{minute:02}{second:02}Z"
    )
}

/// The slot a scheduled snapshot's name stands for, or `None` when the
/// name is not exactly what [`snapshot_name`] makes: anything else (a
/// named snapshot, one made by hand or by another tool, an impossible date
/// such as February 30th, a leap second) is not a scheduled snapshot and
/// must never be pruned as one.
pub fn parse_snapshot_name(name: &str) -> Option<SystemTime> {
    let stamp = name.strip_prefix(SCHEDULED_SNAPSHOT_PREFIX)?.as_bytes();
    if stamp.len() != STAMP_LEN || stamp[8] != b'T' || stamp[15] != b'Z' {
        return None;
    }
    let year = digits(&stamp[0..4])?;
    let month = digits(&stamp[4..6])?;
    let day = digits(&stamp[6..8])?;
    let hour = digits(&stamp[9..11])?;
    let minute = digits(&stamp[11..13])?;
    let second = digits(&stamp[13..15])?;
    let valid = year >= 1970
        && (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second < 60;
    if !valid {
        return None;
    }
    let days = days_from_civil(year, month, day);
    from_unix_secs(days * SECS_PER_DAY + hour * 3600 + minute * 60 + second)
}

/// A run of ASCII digits as a number; `None` on anything else (signs,
/// spaces and non-ASCII digits included, which `str::parse` would partly
/// accept).
fn digits(bytes: &[u8]) -> Option<u64> {
    bytes.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
    })
}

/// Which scheduled snapshots to destroy so that the newest `keep` remain,
/// oldest first. Each entry is a snapshot name and its creation time in
/// Unix seconds (ZFS's `creation` property); newest means latest created,
/// ties broken by name (later name is newer), so the result does not
/// depend on the input order.
///
/// The caller passes only the snapshots hostd took on the schedule (names
/// that [`parse_snapshot_name`] accepts), one entry per name even when the
/// VM has several disks (they are snapshotted together and share names).
/// Named snapshots (`[[snapshot]]`) and foreign ones (made by hand, by a
/// replication tool) are never passed, so they are never pruned.
///
/// `keep = 0` (never valid in a config) returns every entry.
pub fn to_prune(scheduled: &[(String, u64)], keep: usize) -> Vec<&str> {
    let mut sorted: Vec<&(String, u64)> = scheduled.iter().collect();
    sorted.sort_by(|a, b| newer_last(a, b));
    let excess = sorted.len().saturating_sub(keep);
    sorted[..excess]
        .iter()
        .map(|(name, _)| name.as_str())
        .collect()
}

/// Oldest first: by creation time, then by name.
fn newer_last(a: &(String, u64), b: &(String, u64)) -> Ordering {
    a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0))
}

/// Days since 1970-01-01 to a (year, month, day) of the proleptic
/// Gregorian calendar. Howard Hinnant's `civil_from_days`
/// (<https://howardhinnant.github.io/date_algorithms.html>), restricted
/// to days on or after the epoch so all arithmetic is unsigned: the
/// calendar repeats every 400 years ("eras" of 146097 days), and shifting
/// the year to start on March 1st puts the leap day at the end.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // 719468 days from 0000-03-01 to 1970-01-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // day of era, [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1st, [0, 365]
    let mp = (5 * doy + 2) / 153; // month from March, [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The inverse of [`civil_from_days`], for `year` >= 1970 and a valid
/// month and day.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let yoe = year % 400;
    let mp = (month + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60;
    const HOUR: u64 = 3600;
    const DAY: u64 = SECS_PER_DAY;

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn secs(d: u64) -> Duration {
        Duration::from_secs(d)
    }

    /// 2024-02-29T13:37:42Z, a leap day in the afternoon.
    const LEAP_AFTERNOON: u64 = 1_709_213_862;

    fn rows(entries: &[(&str, u64)]) -> Vec<(String, u64)> {
        entries.iter().map(|(n, c)| (n.to_string(), *c)).collect()
    }

    #[test]
    fn hourly_slots_are_the_top_of_the_utc_hour() {
        let now = t(LEAP_AFTERNOON);
        let slot = current_slot(secs(HOUR), now);
        assert_eq!(snapshot_name(slot), "auto-20240229T130000Z");
        assert_eq!(
            snapshot_name(next_slot(secs(HOUR), now)),
            "auto-20240229T140000Z"
        );
    }

    #[test]
    fn daily_slots_are_midnight_utc() {
        let now = t(LEAP_AFTERNOON);
        assert_eq!(
            snapshot_name(current_slot(secs(DAY), now)),
            "auto-20240229T000000Z"
        );
        assert_eq!(
            snapshot_name(next_slot(secs(DAY), now)),
            "auto-20240301T000000Z"
        );
    }

    #[test]
    fn odd_intervals_count_from_the_epoch_not_from_the_hour() {
        // 7 minutes does not divide an hour: slots are multiples of 420 s
        // since 1970, so they drift across hours, but identically for
        // every hostd and every restart.
        let every = secs(7 * MIN);
        let slot = current_slot(every, t(LEAP_AFTERNOON));
        assert_eq!(unix_secs(slot) % 420, 0);
        assert!(slot <= t(LEAP_AFTERNOON));
        assert!(t(LEAP_AFTERNOON) < slot + every);
        assert_eq!(next_slot(every, t(LEAP_AFTERNOON)), slot + every);
    }

    #[test]
    fn a_time_exactly_on_a_slot_is_in_that_slot() {
        let on = t(LEAP_AFTERNOON - 1062); // 13:20:00
        let every = secs(20 * MIN);
        assert_eq!(current_slot(every, on), on);
        assert_eq!(next_slot(every, on), on + every);
        // One nanosecond before belongs to the previous slot.
        let before = on - Duration::from_nanos(1);
        assert_eq!(current_slot(every, before), on - every);
        assert_eq!(next_slot(every, before), on);
    }

    #[test]
    fn sub_second_parts_are_ignored() {
        let now = t(LEAP_AFTERNOON) + Duration::from_millis(999);
        assert_eq!(current_slot(secs(1), now), t(LEAP_AFTERNOON));
        // A fractional interval counts in whole seconds.
        let every = Duration::from_millis(HOUR * 1000 + 500);
        assert_eq!(current_slot(every, now), current_slot(secs(HOUR), now));
    }

    #[test]
    fn next_slot_is_always_after_now_and_current_never_is() {
        for every in [1, 59, MIN, 7 * MIN, HOUR, DAY, 7 * DAY] {
            for now in [0, 1, LEAP_AFTERNOON, 4_102_444_800, 253_402_300_799] {
                let (every, now) = (secs(every), t(now));
                let current = current_slot(every, now);
                let next = next_slot(every, now);
                assert!(current <= now && now < next, "{every:?} {now:?}");
                assert_eq!(next.duration_since(current).ok(), Some(every));
            }
        }
    }

    #[test]
    fn restarts_do_not_move_the_schedule() {
        // Whatever second of the slot hostd looks at the clock, the slot
        // (and so the name) is the same.
        let every = secs(HOUR);
        let start = current_slot(every, t(LEAP_AFTERNOON));
        let names: std::collections::BTreeSet<String> = (0..HOUR)
            .step_by(59)
            .map(|offset| snapshot_name(current_slot(every, start + secs(offset))))
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        assert_eq!(current_slot(Duration::ZERO, t(10)), t(10));
        assert_eq!(next_slot(Duration::ZERO, t(10)), t(11));
        assert_eq!(current_slot(secs(u64::MAX), t(LEAP_AFTERNOON)), UNIX_EPOCH);
        let _ = next_slot(secs(u64::MAX), t(LEAP_AFTERNOON));
        let before_epoch = UNIX_EPOCH - secs(5);
        assert_eq!(current_slot(secs(HOUR), before_epoch), UNIX_EPOCH);
        assert_eq!(next_slot(secs(HOUR), before_epoch), t(HOUR));
        assert_eq!(snapshot_name(before_epoch), "auto-19700101T000000Z");
    }

    #[test]
    fn names_of_known_instants() {
        assert_eq!(snapshot_name(UNIX_EPOCH), "auto-19700101T000000Z");
        assert_eq!(snapshot_name(t(951_782_400)), "auto-20000229T000000Z");
        assert_eq!(snapshot_name(t(1_735_689_599)), "auto-20241231T235959Z");
        assert_eq!(snapshot_name(t(1_735_689_600)), "auto-20250101T000000Z");
        assert_eq!(snapshot_name(t(4_107_542_400)), "auto-21000301T000000Z");
        assert_eq!(snapshot_name(t(253_402_300_799)), "auto-99991231T235959Z");
    }

    #[test]
    fn names_agree_with_humantime_across_centuries() {
        // An independent implementation of the same calendar: every day
        // from 1970 to 2500 (leap years, century rules, the 400-year era
        // boundary at 2000 and 2400) at a varying time of day.
        let mut secs = 0;
        while secs < 16_725_225_600 {
            let instant = t(secs);
            let rfc3339 = humantime::format_rfc3339_seconds(instant).to_string();
            let expected = format!("auto-{}", rfc3339.replace(['-', ':'], ""));
            assert_eq!(snapshot_name(instant), expected);
            secs += DAY + 3_607;
        }
    }

    #[test]
    fn names_parse_back_to_their_slot() {
        let mut secs = 0;
        while secs < 253_402_300_800 {
            let slot = t(secs);
            assert_eq!(parse_snapshot_name(&snapshot_name(slot)), Some(slot));
            secs += 7 * DAY + 3_599;
        }
        assert_eq!(
            parse_snapshot_name("auto-20240229T130000Z"),
            Some(t(LEAP_AFTERNOON - 37 * MIN - 42))
        );
        assert_eq!(
            parse_snapshot_name("auto-99991231T235959Z"),
            Some(t(253_402_300_799))
        );
    }

    #[test]
    fn names_sort_in_time_order() {
        let a = snapshot_name(t(LEAP_AFTERNOON));
        let b = snapshot_name(t(LEAP_AFTERNOON + 1));
        let c = snapshot_name(t(LEAP_AFTERNOON + 40 * DAY));
        assert!(a < b && b < c);
    }

    #[test]
    fn anything_but_an_exact_name_is_not_scheduled() {
        let rejected = [
            "",
            "auto-",
            "base",
            "pre-upgrade.1",
            "auto-20240229T130000",
            "auto-20240229T130000Z ",
            " auto-20240229T130000Z",
            "auto-20240229T130000ZZ",
            "auto-2024022T1300000Z",
            "Auto-20240229T130000Z",
            "auto_20240229T130000Z",
            "auto-20240229t130000Z",
            "auto-20240229T130000z",
            "auto-2024-02-29T13:00:00Z",
            "auto-+2024229T130000Z",
            "auto-2024 229T130000Z",
            "auto-20240229T13000+Z",
            "auto-2024022٩T130000Z", // an Arabic-Indic digit
            "auto-20230229T000000Z", // not a leap year
            "auto-21000229T000000Z", // century, not a leap year
            "auto-20240230T000000Z",
            "auto-20240431T000000Z",
            "auto-20240001T000000Z",
            "auto-20241301T000000Z",
            "auto-20240100T000000Z",
            "auto-20240101T240000Z",
            "auto-20240101T006000Z",
            "auto-20161231T235960Z", // a leap second
            "auto-19691231T235959Z", // before the epoch
            "auto-00000101T000000Z",
        ];
        for name in rejected {
            assert_eq!(parse_snapshot_name(name), None, "{name:?}");
        }
        assert!(parse_snapshot_name("auto-20000229T000000Z").is_some());
        assert!(parse_snapshot_name("auto-19700101T000000Z").is_some());
    }

    #[test]
    fn due_when_nothing_was_taken_yet() {
        assert!(is_due(secs(HOUR), None, t(LEAP_AFTERNOON)));
    }

    #[test]
    fn not_due_once_the_current_slot_is_taken() {
        let every = secs(HOUR);
        let now = t(LEAP_AFTERNOON);
        let slot = current_slot(every, now);
        assert!(!is_due(every, Some(slot), now));
        // Creation time instead of the slot: a little after the slot.
        assert!(!is_due(every, Some(slot + secs(3)), now));
        // Still not due at the last second of the slot...
        assert!(!is_due(every, Some(slot), slot + secs(HOUR - 1)));
        // ...and due at the first second of the next.
        assert!(is_due(every, Some(slot), slot + every));
    }

    #[test]
    fn a_snapshot_newer_than_now_is_not_a_reason_to_take_another() {
        // The clock was set back by a day.
        let every = secs(HOUR);
        let now = t(LEAP_AFTERNOON);
        assert!(!is_due(every, Some(now + secs(DAY)), now));
    }

    #[test]
    fn downtime_makes_one_snapshot_due_not_one_per_missed_slot() {
        // Simulate a scheduler that wakes every minute for three days,
        // with hostd down for 10 hours in between, taking a snapshot
        // whenever one is due.
        let every = secs(HOUR);
        let start = current_slot(every, t(LEAP_AFTERNOON));
        let (down_from, down_until) = (start + secs(20 * HOUR), start + secs(30 * HOUR + 1234));
        let mut taken: Vec<SystemTime> = Vec::new();
        let mut now = start;
        while now < start + secs(3 * DAY) {
            let running = now < down_from || now >= down_until;
            if running && is_due(every, taken.last().copied(), now) {
                let slot = current_slot(every, now);
                assert!(delay(slot, now) < every);
                taken.push(slot);
            }
            now += secs(MIN);
        }
        // 20 slots before the downtime, then one for the slot hostd came
        // back in (30 h), then every slot up to 72 h: 20 + 1 + 41.
        assert_eq!(taken.len(), 62);
        assert_eq!(taken[20], start + secs(30 * HOUR));
        let names: std::collections::BTreeSet<String> =
            taken.iter().map(|&slot| snapshot_name(slot)).collect();
        assert_eq!(names.len(), taken.len(), "a slot was taken twice");
    }

    #[test]
    fn delay_is_the_time_since_the_slot() {
        let slot = t(LEAP_AFTERNOON);
        assert_eq!(delay(slot, slot), Duration::ZERO);
        assert_eq!(
            delay(slot, slot + Duration::from_millis(1500)),
            Duration::from_millis(1500)
        );
        assert_eq!(delay(slot, slot - secs(1)), Duration::ZERO);
    }

    #[test]
    fn pruning_keeps_the_newest_and_returns_the_rest_oldest_first() {
        let scheduled = rows(&[
            ("auto-20240101T030000Z", 1_704_078_001),
            ("auto-20240101T010000Z", 1_704_070_801),
            ("auto-20240101T040000Z", 1_704_081_601),
            ("auto-20240101T020000Z", 1_704_074_401),
        ]);
        assert_eq!(
            to_prune(&scheduled, 2),
            ["auto-20240101T010000Z", "auto-20240101T020000Z"]
        );
        assert_eq!(to_prune(&scheduled, 3), ["auto-20240101T010000Z"]);
    }

    #[test]
    fn pruning_orders_by_creation_before_name() {
        // A snapshot whose name sorts last but that was created first (a
        // clock step between two runs) is the oldest.
        let scheduled = rows(&[
            ("auto-20240101T090000Z", 100),
            ("auto-20240101T010000Z", 200),
            ("auto-20240101T020000Z", 300),
        ]);
        assert_eq!(to_prune(&scheduled, 2), ["auto-20240101T090000Z"]);
    }

    #[test]
    fn pruning_breaks_creation_ties_by_name() {
        // `creation` has one-second resolution.
        let scheduled = rows(&[
            ("auto-20240101T020000Z", 500),
            ("auto-20240101T010000Z", 500),
            ("auto-20240101T030000Z", 500),
        ]);
        assert_eq!(
            to_prune(&scheduled, 1),
            ["auto-20240101T010000Z", "auto-20240101T020000Z"]
        );
        let mut reversed = scheduled.clone();
        reversed.reverse();
        assert_eq!(to_prune(&reversed, 1), to_prune(&scheduled, 1));
    }

    #[test]
    fn pruning_within_the_limit_or_of_nothing_is_empty() {
        let scheduled = rows(&[("auto-20240101T010000Z", 1), ("auto-20240101T020000Z", 2)]);
        assert!(to_prune(&scheduled, 2).is_empty());
        assert!(to_prune(&scheduled, 10_000).is_empty());
        assert!(to_prune(&[], 1).is_empty());
        assert_eq!(to_prune(&scheduled, 0).len(), 2);
    }
}
