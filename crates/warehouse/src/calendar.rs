//! `dim_date`: one row per calendar date a fact refers to.

use chrono::{Datelike, NaiveDate};

/// Days between 1970-01-01 (Arrow's Date32 epoch) and `date`.
pub fn to_date32(date: NaiveDate) -> i32 {
    (date - NaiveDate::default()).num_days() as i32
}

/// The date of an Arrow Date32 value.
pub fn from_date32(days: i32) -> NaiveDate {
    NaiveDate::default() + chrono::Duration::days(days as i64)
}

/// One `dim_date` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarDay {
    /// The date.
    pub date: NaiveDate,
    /// ISO 8601 day of week, Monday = 1.
    pub day_of_week: i32,
    /// English day name.
    pub day_name: &'static str,
    /// English month name.
    pub month_name: &'static str,
    /// 1..4
    pub quarter: i32,
}

const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

impl CalendarDay {
    /// The calendar facts of `date`.
    pub fn of(date: NaiveDate) -> Self {
        let weekday = date.weekday().number_from_monday();
        Self {
            date,
            day_of_week: weekday as i32,
            day_name: DAYS[(weekday - 1) as usize],
            month_name: MONTHS[date.month0() as usize],
            quarter: date.month0() as i32 / 3 + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_facts_follow_iso_weeks() {
        let day = CalendarDay::of(NaiveDate::from_ymd_opt(2024, 2, 23).unwrap());
        assert_eq!((day.day_of_week, day.day_name), (5, "Friday"));
        assert_eq!((day.month_name, day.quarter), ("February", 1));
        let sunday = CalendarDay::of(NaiveDate::from_ymd_opt(2023, 12, 31).unwrap());
        assert_eq!(
            (sunday.day_of_week, sunday.day_name, sunday.quarter),
            (7, "Sunday", 4)
        );
        let date = NaiveDate::from_ymd_opt(2031, 7, 1).unwrap();
        assert_eq!(from_date32(to_date32(date)), date);
        assert_eq!(to_date32(NaiveDate::from_ymd_opt(1970, 1, 2).unwrap()), 1);
    }
}
