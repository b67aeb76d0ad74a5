//! Fair shares of the output: a denial storm from one source (a pod, a container, an executable
//! outside containers) must not bury another source's denials. Each source has a token bucket
//! of printed lines (`rate` per second, up to `burst` at once), run on the records' own
//! timestamps (so a file is treated like the live stream it was); a line beyond its source's
//! share is not printed but counted, and the count goes out as one summary line ("N more
//! denials from SOURCE summarised") before that source's next printed line, or when the input
//! goes idle or ends. Nothing is lost from the counts: printed + summarised = lines offered.
//!
//! The table of sources is bounded ([`FairShare::MAX_SOURCES`]); sources beyond it share one
//! bucket ([`FairShare::OTHER`]), and that is counted too.

use std::collections::HashMap;

/// A source's bucket.
#[derive(Debug)]
struct Bucket {
    /// What the summary calls it (`pod shop/web-1`, `executable /usr/bin/app`…).
    label: String,
    tokens: f64,
    /// Event time of the last refill (ms).
    at_ms: u64,
    /// Lines held back since the last summary.
    suppressed: u64,
}

/// What to do with one line.
#[derive(Debug, PartialEq, Eq)]
pub enum Share {
    /// Print it; first, if some, the summary of the lines held back before it.
    Print(Option<Summary>),
    /// Held back (counted).
    Suppress,
}

/// "`count` more denials from `source` summarised".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub source: String,
    pub count: u64,
}

impl Summary {
    pub fn message(&self) -> String {
        format!(
            "{} more denials from {} summarised",
            self.count, self.source
        )
    }

    /// As an output line's fields.
    pub fn fields(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut fields = serde_json::Map::new();
        fields.insert("type".to_owned(), "summary".into());
        fields.insert("source".to_owned(), self.source.clone().into());
        fields.insert("count".to_owned(), self.count.into());
        fields.insert("message".to_owned(), self.message().into());
        fields
    }
}

#[derive(Debug)]
pub struct FairShare {
    /// Lines per second per source; 0 turns the limit off.
    rate: f64,
    burst: f64,
    sources: HashMap<Box<str>, Bucket>,
    /// Lines held back, since the start.
    pub suppressed: u64,
    /// Lines of sources beyond the table, which shared the catch-all bucket.
    pub sources_overflow: u64,
}

impl FairShare {
    pub const DEFAULT_RATE: u32 = 100;
    pub const DEFAULT_BURST: u32 = 500;
    /// Sources with a bucket of their own.
    pub const MAX_SOURCES: usize = 4096;
    /// The label of the bucket shared by sources beyond the table.
    pub const OTHER: &str = "(other sources)";

    /// `rate` lines per second per source (0: no limit), `burst` at once.
    pub fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            sources: HashMap::new(),
            suppressed: 0,
            sources_overflow: 0,
        }
    }

    pub fn is_off(&self) -> bool {
        self.rate == 0.0
    }

    /// A line from `key` (what identifies the source), at event time `at_ms`; `label` makes
    /// the source's name for a summary (called once per source).
    pub fn admit(&mut self, key: &str, at_ms: u64, label: impl FnOnce() -> String) -> Share {
        if self.is_off() {
            return Share::Print(None);
        }
        let key = if self.sources.contains_key(key) || self.sources.len() < Self::MAX_SOURCES {
            key
        } else {
            self.sources_overflow += 1;
            Self::OTHER
        };
        let burst = self.burst;
        let bucket = match self.sources.get_mut(key) {
            Some(bucket) => bucket,
            None => self.sources.entry(key.into()).or_insert_with(|| Bucket {
                label: if key == Self::OTHER {
                    Self::OTHER.to_owned()
                } else {
                    label()
                },
                tokens: burst,
                at_ms,
                suppressed: 0,
            }),
        };
        // Records may come slightly out of order: time never runs backwards here.
        if at_ms > bucket.at_ms {
            let refill = (at_ms - bucket.at_ms) as f64 / 1000.0 * self.rate;
            bucket.tokens = (bucket.tokens + refill).min(burst);
            bucket.at_ms = at_ms;
        }
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Share::Print(take_summary(bucket))
        } else {
            bucket.suppressed += 1;
            self.suppressed += 1;
            Share::Suppress
        }
    }

    /// The summaries of every source with lines held back (the input is idle or ended).
    pub fn drain(&mut self) -> Vec<Summary> {
        let mut out: Vec<Summary> = self.sources.values_mut().filter_map(take_summary).collect();
        out.sort_by(|a, b| a.source.cmp(&b.source));
        // Sources that went quiet leave the table (their buckets would be full again anyway).
        if self.sources.len() >= Self::MAX_SOURCES / 2 {
            self.sources.clear();
        }
        out
    }
}

fn take_summary(bucket: &mut Bucket) -> Option<Summary> {
    (bucket.suppressed > 0).then(|| Summary {
        source: bucket.label.clone(),
        count: std::mem::take(&mut bucket.suppressed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storm_is_summarised_and_a_quiet_source_still_prints() {
        let mut fair = FairShare::new(10, 20);
        let (mut printed, mut summarised, mut quiet_printed) = (0, 0, 0);
        // 10 000 lines over one second from the storm; one line every 100 ms from the other.
        for i in 0..10_000u64 {
            let at = i / 10;
            match fair.admit("storm", at, || "executable /storm".into()) {
                Share::Print(summary) => {
                    printed += 1;
                    summarised += summary.map_or(0, |s| s.count);
                }
                Share::Suppress => {}
            }
            if i % 1000 == 0 {
                let share = fair.admit("quiet", at, || "executable /quiet".into());
                assert_eq!(share, Share::Print(None), "line {i}");
                quiet_printed += 1;
            }
        }
        summarised += fair
            .drain()
            .iter()
            .map(|s| {
                assert_eq!(s.source, "executable /storm");
                s.count
            })
            .sum::<u64>();
        assert_eq!(quiet_printed, 10);
        assert!(
            (20..=31).contains(&printed),
            "the burst and about a second's rate: {printed}"
        );
        assert_eq!(
            printed + summarised,
            10_000,
            "every line printed or summarised"
        );
        assert_eq!(fair.suppressed, summarised);
    }

    #[test]
    fn a_summary_goes_out_before_the_sources_next_printed_line() {
        let mut fair = FairShare::new(1, 1);
        assert_eq!(fair.admit("a", 0, || "a".into()), Share::Print(None));
        assert_eq!(fair.admit("a", 0, || "a".into()), Share::Suppress);
        assert_eq!(fair.admit("a", 500, || "a".into()), Share::Suppress);
        let Share::Print(Some(summary)) = fair.admit("a", 1000, || "a".into()) else {
            panic!("a token after a second, with the summary");
        };
        assert_eq!(summary.message(), "2 more denials from a summarised");
    }

    #[test]
    fn sources_beyond_the_table_share_one_bucket_and_are_counted() {
        let mut fair = FairShare::new(1, 1);
        for n in 0..FairShare::MAX_SOURCES + 3 {
            fair.admit(&format!("s{n}"), 0, || format!("s{n}"));
        }
        assert_eq!(fair.sources_overflow, 3);
        assert_eq!(
            fair.suppressed, 2,
            "the shared bucket printed one of the three"
        );
        let summaries = fair.drain();
        assert_eq!(summaries.len(), 1);
        assert_eq!(summaries[0].source, FairShare::OTHER);
    }

    #[test]
    fn rate_zero_prints_everything() {
        let mut fair = FairShare::new(0, 1);
        for _ in 0..1000 {
            assert_eq!(fair.admit("a", 0, || "a".into()), Share::Print(None));
        }
    }
}
