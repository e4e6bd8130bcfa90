//! How fresh a read must be, in cluster mode (issue 19: reads from the leader,
//! linearizable, and from followers, with bounded staleness or read-your-writes by
//! seq). Any node answers a read from the ledger it applied; a request may ask for
//! more with these headers (`ledger_raft::reads` does the waiting):
//!
//! - `Ledger-Min-Seq: N`: read-your-writes. The node answers once it applied seq `N`
//!   (a transaction's `seq`, or the `Ledger-Applied-Seq` of an earlier answer).
//! - `Ledger-Read-Consistency: linearizable`: the answer reflects every write
//!   acknowledged before the request arrived, on whichever node answers (a follower
//!   asks the leader for its commit index and waits until it applied it).
//! - `Ledger-Max-Staleness-Ms: M`: the answer reflects every write acknowledged before
//!   a moment at most `M` ms before the request (a follower reuses a recent round with
//!   the leader instead of asking again). With a linearizable read too, the
//!   linearizable read is served.
//!
//! Every answer of a cluster node carries `Ledger-Applied-Seq`, the seq of the last
//! record the answering node had applied when it answered.
//!
//! A read that cannot be made as fresh as asked is refused, nothing read: 503
//! `no_leader` when no leader could confirm what is committed, 503 `node_behind` when
//! this node did not apply what the read needs within [`READ_WAIT`] (another node, or
//! the same one a moment later, may answer). A header that is not a valid value is
//! 400 `invalid_header` with the header as `param`. A single node is always as fresh
//! as can be: it checks the headers and serves the read.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use ledger_raft::node::Node;
use ledger_raft::reads::{Freshness, ReadError};

use crate::error::ApiError;

/// `Ledger-Min-Seq`.
pub const MIN_SEQ_HEADER: &str = "ledger-min-seq";
/// `Ledger-Read-Consistency`.
pub const CONSISTENCY_HEADER: &str = "ledger-read-consistency";
/// `Ledger-Max-Staleness-Ms`.
pub const MAX_STALENESS_HEADER: &str = "ledger-max-staleness-ms";
/// `Ledger-Applied-Seq`, on every answer of a cluster node.
pub const APPLIED_SEQ_HEADER: &str = "ledger-applied-seq";

/// The longest a read waits to be fresh enough.
pub const READ_WAIT: Duration = Duration::from_secs(5);
/// The largest staleness a request may name (a day): beyond it, ask for none.
const MAX_STALENESS_MS: u64 = 86_400_000;

/// What a request asks for: a seq to have applied, and how fresh the committed state
/// it reads must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Asked {
    pub min_seq: Option<u64>,
    pub freshness: Option<Freshness>,
}

/// The request's freshness headers, or 400 `invalid_header` naming the bad one.
pub fn asked(headers: &HeaderMap) -> Result<Asked, ApiError> {
    let text = |name: &'static str| -> Result<Option<&str>, ApiError> {
        let mut values = headers.get_all(name).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return match headers.contains_key(name) {
                true => Err(bad(name, "is given more than once")),
                false => Ok(None),
            };
        };
        value.to_str().map(|v| Some(v.trim())).map_err(|_| bad(name, "is not text"))
    };
    let number = |name: &'static str| -> Result<Option<u64>, ApiError> {
        text(name)?
            .map(|v| match v.parse::<u64>() {
                Ok(n) if !v.starts_with('+') => Ok(n),
                _ => Err(bad(name, "must be a non-negative integer")),
            })
            .transpose()
    };
    let min_seq = number(MIN_SEQ_HEADER)?;
    let staleness = number(MAX_STALENESS_HEADER)?;
    let linearizable = match text(CONSISTENCY_HEADER)? {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("linearizable") => true,
        Some(_) => return Err(bad(CONSISTENCY_HEADER, "must be `linearizable`")),
    };
    // Linearizable is the fresher of the two: asked for both, it is what is served.
    let freshness = match (linearizable, staleness) {
        (true, _) => Some(Freshness::Linearizable),
        (false, Some(ms)) if ms > MAX_STALENESS_MS => {
            return Err(bad(MAX_STALENESS_HEADER, "is at most 86400000 (a day)"));
        }
        (false, Some(ms)) => Some(Freshness::MaxStaleness(Duration::from_millis(ms))),
        (false, None) => None,
    };
    Ok(Asked { min_seq, freshness })
}

fn bad(name: &'static str, why: &str) -> ApiError {
    ApiError::invalid("invalid_header", format!("the header {name} {why}")).with_param(name)
}

/// Waits until `node` can serve a read as fresh as `asked`, within [`READ_WAIT`].
pub async fn make_fresh(node: &Node, asked: Asked) -> Result<(), ApiError> {
    let deadline = tokio::time::Instant::now() + READ_WAIT;
    let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
    if let Some(seq) = asked.min_seq {
        node.read(Freshness::AtLeastSeq(seq), left()).await.map_err(refusal)?;
    }
    if let Some(freshness) = asked.freshness {
        node.read(freshness, left()).await.map_err(refusal)?;
    }
    Ok(())
}

fn refusal(e: ReadError) -> ApiError {
    match e {
        ReadError::NoLeader(detail) => {
            tracing::debug!(%detail, "a read could not be confirmed by a leader");
            ApiError::no_leader()
        }
        other => ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            kind: "api_error",
            code: "node_behind",
            message: format!("{other}; nothing was read: retry, here or on another node"),
            param: None,
            retry_after_secs: Some(1),
        },
    }
}

/// The value of `Ledger-Applied-Seq` for `seq`.
pub fn applied_seq_value(seq: u64) -> HeaderValue {
    HeaderValue::from(seq)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    #[test]
    fn the_headers_read_as_asked_and_bad_ones_are_named() {
        assert_eq!(asked(&HeaderMap::new()).unwrap(), Asked::default());
        let a = asked(&headers(&[("Ledger-Min-Seq", "42"), ("ledger-read-consistency", "Linearizable")])).unwrap();
        assert_eq!(a, Asked { min_seq: Some(42), freshness: Some(Freshness::Linearizable) });
        let a = asked(&headers(&[("ledger-max-staleness-ms", " 250 ")])).unwrap();
        assert_eq!(a.freshness, Some(Freshness::MaxStaleness(Duration::from_millis(250))));
        for (name, value) in [
            (MIN_SEQ_HEADER, "-1"),
            (MIN_SEQ_HEADER, "+1"),
            (MIN_SEQ_HEADER, "1e3"),
            (MIN_SEQ_HEADER, "18446744073709551616"),
            (CONSISTENCY_HEADER, "strong"),
            (MAX_STALENESS_HEADER, "86400001"),
        ] {
            let e = asked(&headers(&[(name, value)])).unwrap_err();
            assert_eq!((e.status, e.code), (StatusCode::BAD_REQUEST, "invalid_header"), "{name}: {value}");
            assert_eq!(e.param.as_deref(), Some(name));
        }
        let twice = asked(&headers(&[(MIN_SEQ_HEADER, "1"), (MIN_SEQ_HEADER, "2")])).unwrap_err();
        assert_eq!(twice.param.as_deref(), Some(MIN_SEQ_HEADER));
        let both = asked(&headers(&[(CONSISTENCY_HEADER, "linearizable"), (MAX_STALENESS_HEADER, "5")])).unwrap();
        assert_eq!(both.freshness, Some(Freshness::Linearizable), "the fresher of the two");
    }
}
