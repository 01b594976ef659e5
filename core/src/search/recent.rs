//! Collecting ranked candidates without visiting every match.
//!
//! A one-letter prefix matches a tenth of a store: visiting every match to
//! rank it cost ~100 ns a document (`cargo run --release --example` over
//! the search bench's data, 50,000 customers), so ~15 ms on a million
//! customers, fifteen times the search-as-you-type budget. The index is
//! therefore sorted by recency (most recent first in every segment), and a
//! search runs in passes down the ladder of match kinds (`index::View`):
//! within a pass, a document that was not found by an earlier pass scores
//! at most `band`, and because documents arrive most recent first, once a
//! segment has yielded `k` documents scoring `band`, no later document of
//! that segment can rank above them. The scan of a segment stops there, or
//! after [`SCAN_BUDGET`] documents, which only queries of several words, none
//! of them matching exactly, can reach: among more than that many matches
//! per segment, they rank the most recent ones.

use std::sync::Arc;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::ColumnValues;
use tantivy::query::Weight;
use tantivy::{DocId, DocSet, Score, SegmentOrdinal, SegmentReader, TERMINATED};

/// Most documents one pass scans in one segment.
pub(crate) const SCAN_BUDGET: usize = 2_000;

/// A candidate: its score, recency and customer rowid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Hit {
    pub score: Score,
    pub recency: i64,
    pub rid: u64,
}

impl Hit {
    /// Best first: higher score, then more recent, then larger rowid (a
    /// stable order for equal clocks).
    pub fn rank(a: &Hit, b: &Hit) -> std::cmp::Ordering {
        b.score
            .total_cmp(&a.score)
            .then(b.recency.cmp(&a.recency))
            .then(b.rid.cmp(&a.rid))
    }
}

/// Collects, per segment, the matches in index order (most recent first)
/// until `k` of them score `band` or the scan budget is spent.
pub(crate) struct MostRecent {
    pub k: usize,
    pub band: Score,
}

pub(crate) struct SegmentHits {
    k: usize,
    band: Score,
    recency: Arc<dyn ColumnValues<i64>>,
    rid: Arc<dyn ColumnValues<u64>>,
    hits: Vec<Hit>,
    in_band: usize,
}

impl SegmentHits {
    fn done(&self) -> bool {
        self.in_band >= self.k || self.hits.len() >= SCAN_BUDGET
    }
}

impl SegmentCollector for SegmentHits {
    type Fruit = Vec<Hit>;

    fn collect(&mut self, doc: DocId, score: Score) {
        if self.done() {
            return;
        }
        // Scores are sums of a few whole-number weights: exact in f32.
        if score == self.band {
            self.in_band += 1;
        }
        self.hits.push(Hit {
            score,
            recency: self.recency.get_val(doc),
            rid: self.rid.get_val(doc),
        });
    }

    fn harvest(self) -> Vec<Hit> {
        self.hits
    }
}

impl Collector for MostRecent {
    type Fruit = Vec<Hit>;
    type Child = SegmentHits;

    fn for_segment(
        &self,
        _: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<SegmentHits> {
        let fast = segment.fast_fields();
        Ok(SegmentHits {
            k: self.k,
            band: self.band,
            recency: fast.i64("recency")?.first_or_default_col(0),
            rid: fast.u64("rid")?.first_or_default_col(0),
            hits: Vec::new(),
            in_band: 0,
        })
    }

    fn requires_scoring(&self) -> bool {
        true
    }

    fn merge_fruits(&self, segments: Vec<Vec<Hit>>) -> tantivy::Result<Vec<Hit>> {
        Ok(segments.into_iter().flatten().collect())
    }

    /// The default visits every match; this stops as soon as the segment
    /// can yield nothing better.
    fn collect_segment(
        &self,
        weight: &dyn Weight,
        segment_ord: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<Vec<Hit>> {
        let mut hits = self.for_segment(segment_ord, reader)?;
        let mut scorer = weight.scorer(reader, 1.0)?;
        let alive = reader.alive_bitset();
        let mut doc = scorer.doc();
        while doc != TERMINATED && !hits.done() {
            if alive.is_none_or(|a| a.is_alive(doc)) {
                hits.collect(doc, scorer.score());
            }
            doc = scorer.advance();
        }
        Ok(hits.harvest())
    }
}
