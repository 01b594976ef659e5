//! Hybrid logical clock: wall-clock milliseconds plus a counter, so stamps
//! taken on one device are strictly increasing even when the wall clock stands
//! still or steps back, and stamps from different devices order close to real
//! time. The node (store/device) breaks ties deterministically.
//!
//! A stamp's text form sorts exactly like the stamp, so SQL can compare them.

use std::fmt;
use std::str::FromStr;

/// One HLC stamp.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hlc {
    /// Physical part: milliseconds since the Unix epoch.
    pub wall_ms: i64,
    /// Logical part: orders stamps within one millisecond.
    pub counter: u32,
    /// Who made it; the last tie-break.
    pub node: String,
}

impl Hlc {
    /// The next stamp after `last` at wall time `now_ms`.
    pub fn tick(last: Option<&Hlc>, now_ms: i64, node: &str) -> Hlc {
        match last {
            Some(last) if last.wall_ms >= now_ms => Hlc {
                wall_ms: last.wall_ms,
                counter: last.counter + 1,
                node: node.to_owned(),
            },
            _ => Hlc {
                wall_ms: now_ms,
                counter: 0,
                node: node.to_owned(),
            },
        }
    }
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:015}-{:010}-{}", self.wall_ms, self.counter, self.node)
    }
}

/// A string that is not an HLC stamp.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed hybrid logical clock stamp")]
pub struct MalformedHlc;

impl FromStr for Hlc {
    type Err = MalformedHlc;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.splitn(3, '-');
        let (Some(wall), Some(counter), Some(node)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(MalformedHlc);
        };
        if wall.len() != 15 || counter.len() != 10 {
            return Err(MalformedHlc);
        }
        Ok(Hlc {
            wall_ms: wall.parse().map_err(|_| MalformedHlc)?,
            counter: counter.parse().map_err(|_| MalformedHlc)?,
            node: node.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_strictly_increase_when_the_wall_clock_stalls_or_steps_back() {
        let a = Hlc::tick(None, 1_000, "S1/T1");
        let b = Hlc::tick(Some(&a), 1_000, "S1/T1");
        let c = Hlc::tick(Some(&b), 900, "S1/T1");
        let d = Hlc::tick(Some(&c), 1_001, "S1/T1");
        assert!(a < b && b < c && c < d);
        assert_eq!((c.wall_ms, c.counter), (1_000, 2));
        assert_eq!((d.wall_ms, d.counter), (1_001, 0));
    }

    #[test]
    fn text_form_round_trips_and_sorts_like_the_stamp() {
        let stamps = [
            Hlc::tick(None, 5, "S1/T2"),
            Hlc::tick(None, 40, "S1/T1"),
            Hlc {
                wall_ms: 40,
                counter: 11,
                node: "S1/T1".into(),
            },
            Hlc {
                wall_ms: 40,
                counter: 11,
                node: "S1/T2".into(),
            },
        ];
        for pair in stamps.windows(2) {
            assert!(pair[0] < pair[1]);
            assert!(pair[0].to_string() < pair[1].to_string());
        }
        for s in &stamps {
            assert_eq!(s.to_string().parse::<Hlc>(), Ok(s.clone()));
        }
        assert_eq!("12-3-x".parse::<Hlc>(), Err(MalformedHlc));
    }
}
