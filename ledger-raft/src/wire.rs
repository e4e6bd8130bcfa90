//! How Raft's messages between nodes are written in HTTP bodies: postcard, a compact
//! binary serde format (a documented, stable wire format: varint integers, a length
//! then the raw bytes for a byte string, no field names).
//!
//! The hot payloads are bytes: a commit group ([`Group`](crate::Group), the leader's
//! encoded frames) is one length and the frames as they are, so an entry costs its own
//! size plus a few bytes, not the third more of base64 (the JSON bodies before), and a
//! snapshot chunk (`InstallSnapshotRequest::data`) a byte per byte, not the 3.5 of a
//! JSON array of numbers. openraft's own types travel through their serde derives; none
//! of them needs a self-describing format (no `flatten`, untagged enums or skipped
//! fields).
//!
//! A body is exactly one message: one that ends early, holds trailing bytes or does
//! not decode is refused ([`DecodeError`]), never a panic; a length prefix larger than
//! what follows fails before anything is allocated for it. The media type names the
//! format and its version ([`CONTENT_TYPE`]): a node that gets another (a peer of an
//! older build, still on JSON) answers `415`, which the caller takes as a network
//! failure and retries, as it would a node that is down.
//!
//! On the server side [`Wire`] is the axum extractor and response; the client side
//! (`network.rs`) calls [`encode`] and [`decode`].
//!
//! Nothing here is on disk: the Raft log writes its entries with its own frame layout
//! (`lib.rs`), never through serde for a group.

use axum::extract::{FromRequest, Request};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use hyper::StatusCode;
use hyper::body::Bytes;
use hyper::header::CONTENT_TYPE as CONTENT_TYPE_HEADER;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The media type of every Raft message body, requests and answers (version 1 of this
/// encoding: a change that an older node would misread gets a new version).
pub const CONTENT_TYPE: &str = "application/vnd.ledger-raft.v1+postcard";

/// Why a message could not be encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// postcard refused the value (a type it cannot write, such as a map of unknown
    /// length; none of the Raft messages is one).
    #[error("the message does not encode: {0}")]
    Postcard(#[from] postcard::Error),
}

/// Why a body is not a message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes end early or do not decode as the expected message.
    #[error("the body is not a Raft message: {0}")]
    Malformed(#[from] postcard::Error),
    /// A whole message, then bytes that belong to none.
    #[error("the body holds {0} bytes after its message")]
    Trailing(usize),
}

/// `message` as a body, in one allocation of its exact size (a size pass first: it
/// walks the message without copying its bytes).
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, EncodeError> {
    let size = postcard::serialize_with_flavor(message, postcard::ser_flavors::Size::default())?;
    Ok(postcard::to_extend(message, Vec::with_capacity(size))?)
}

/// The message a body holds: all of it, nothing after it.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, DecodeError> {
    let (message, rest) = postcard::take_from_bytes(body)?;
    if !rest.is_empty() {
        return Err(DecodeError::Trailing(rest.len()));
    }
    Ok(message)
}

/// A Raft message as an HTTP body: as an extractor, the request's body decoded (`415`
/// for another media type, the body limit's `413`, `400` with the reason for a body
/// that does not decode); as a response, the message encoded with [`CONTENT_TYPE`].
#[derive(Debug, Clone)]
pub struct Wire<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Wire<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let declared = request.headers().get(CONTENT_TYPE_HEADER).and_then(|v| v.to_str().ok());
        if declared != Some(CONTENT_TYPE) {
            let answer = format!("a Raft message must be {CONTENT_TYPE}, not {}", declared.unwrap_or("undeclared"));
            return Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, answer).into_response());
        }
        let body = Bytes::from_request(request, state).await.map_err(IntoResponse::into_response)?;
        decode(&body).map(Wire).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()).into_response())
    }
}

impl<T: Serialize> IntoResponse for Wire<T> {
    fn into_response(self) -> Response {
        match encode(&self.0) {
            Ok(body) => ([(CONTENT_TYPE_HEADER, HeaderValue::from_static(CONTENT_TYPE))], body).into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use axum::Router;
    use axum::body::Body;
    use axum::routing::post;
    use http_body_util::BodyExt;
    use openraft::error::{Fatal, InstallSnapshotError, RaftError, SnapshotMismatch};
    use openraft::raft::{
        AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
        VoteResponse,
    };
    use openraft::{
        BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, SnapshotMeta, SnapshotSegmentId,
        StorageError, StorageIOError, StoredMembership, Vote,
    };
    use tower::ServiceExt;

    use super::*;
    use crate::{Group, NodeId, TypeConfig};

    fn log_id(term: u64, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn membership() -> Membership<NodeId, BasicNode> {
        let nodes: BTreeMap<NodeId, BasicNode> =
            (1..=3).map(|id| (id, BasicNode::new(format!("127.0.0.1:{}", 7000 + id)))).collect();
        Membership::new(vec![BTreeSet::from([1, 2, 3]), BTreeSet::from([1, 2])], nodes)
    }

    fn append_request() -> AppendEntriesRequest<TypeConfig> {
        // A group with every byte value, and one of a realistic size.
        let all_bytes: Vec<u8> = (0..=255).collect();
        let large: Vec<u8> = (0..1_000_000u32).map(|i| i.to_le_bytes()[0] ^ 0x5a).collect();
        AppendEntriesRequest {
            vote: Vote::new_committed(7, 1),
            prev_log_id: Some(log_id(6, 41)),
            entries: vec![
                Entry { log_id: log_id(7, 42), payload: EntryPayload::Blank },
                Entry { log_id: log_id(7, 43), payload: EntryPayload::Normal(Group(all_bytes)) },
                Entry { log_id: log_id(7, 44), payload: EntryPayload::Membership(membership()) },
                Entry { log_id: log_id(7, 45), payload: EntryPayload::Normal(Group(large)) },
                Entry { log_id: log_id(7, 46), payload: EntryPayload::Normal(Group(Vec::new())) },
            ],
            leader_commit: Some(log_id(7, 42)),
        }
    }

    fn empty_append() -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest { vote: Vote::new(1, 1), prev_log_id: None, entries: Vec::new(), leader_commit: None }
    }

    fn snapshot_request() -> InstallSnapshotRequest<TypeConfig> {
        InstallSnapshotRequest {
            vote: Vote::new_committed(3, 2),
            meta: SnapshotMeta {
                last_log_id: Some(log_id(3, 900)),
                last_membership: StoredMembership::new(Some(log_id(1, 1)), membership()),
                snapshot_id: "3-2-900-17".into(),
            },
            offset: 3 << 20,
            data: (0..=255u8).cycle().take(100_000).collect(),
            done: false,
        }
    }

    fn storage_failure() -> Fatal<NodeId> {
        let io = std::io::Error::other("disk gone");
        Fatal::StorageError(StorageError::from(StorageIOError::write_logs(&io)))
    }

    /// Decodes `message`'s encoding and checks that it encodes to the same bytes.
    fn round_trip<T: Serialize + DeserializeOwned>(message: &T) -> T {
        let bytes = encode(message).unwrap();
        let back: T = decode(&bytes).unwrap();
        assert_eq!(encode(&back).unwrap(), bytes);
        back
    }

    #[test]
    fn append_entries_round_trip() {
        let request = append_request();
        let back = round_trip(&request);
        assert_eq!(back.vote, request.vote);
        assert_eq!(back.prev_log_id, request.prev_log_id);
        assert_eq!(back.leader_commit, request.leader_commit);
        assert_eq!(back.entries, request.entries);

        let answers = || {
            [
                AppendEntriesResponse::Success,
                AppendEntriesResponse::PartialSuccess(Some(log_id(7, 44))),
                AppendEntriesResponse::PartialSuccess(None),
                AppendEntriesResponse::Conflict,
                AppendEntriesResponse::HigherVote(Vote::new(9, 3)),
            ]
        };
        for (answer, expected) in answers().into_iter().zip(answers()) {
            let ok: Result<_, RaftError<NodeId>> = Ok(answer);
            assert_eq!(round_trip(&ok).unwrap(), expected);
        }
        let err: Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> = Err(RaftError::Fatal(storage_failure()));
        assert_eq!(round_trip(&err).unwrap_err(), RaftError::Fatal(storage_failure()));
        let err: Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> = Err(RaftError::Fatal(Fatal::Stopped));
        assert_eq!(round_trip(&err).unwrap_err(), RaftError::Fatal(Fatal::Stopped));
    }

    #[test]
    fn a_group_costs_its_bytes_and_a_length() {
        let group = Group(vec![0xff; 1_000_000]);
        let bytes = encode(&group).unwrap();
        assert!(bytes.len() <= 1_000_000 + 3, "{} bytes", bytes.len());
        let request = append_request();
        let payload: usize =
            request.entries.iter().map(|e| if let EntryPayload::Normal(g) = &e.payload { g.0.len() } else { 0 }).sum();
        assert!(encode(&request).unwrap().len() < payload + 512);
    }

    #[test]
    fn vote_round_trip() {
        let request = VoteRequest::new(Vote::new(5, 2), Some(log_id(4, 77)));
        assert_eq!(round_trip(&request), request);
        let answer = VoteResponse { vote: Vote::new(5, 2), vote_granted: true, last_log_id: Some(log_id(4, 70)) };
        let ok: Result<_, RaftError<NodeId>> = Ok(answer.clone());
        assert_eq!(round_trip(&ok).unwrap(), answer);
        let refused = VoteResponse { vote: Vote::new_committed(6, 3), vote_granted: false, last_log_id: None };
        let ok: Result<_, RaftError<NodeId>> = Ok(refused.clone());
        assert_eq!(round_trip(&ok).unwrap(), refused);
    }

    #[test]
    fn install_snapshot_round_trip() {
        let request = snapshot_request();
        assert_eq!(round_trip(&request), request);
        // A chunk costs its bytes and a length (JSON took about 3.5 bytes a byte).
        assert!(encode(&request).unwrap().len() < request.data.len() + 256);

        let answer = || InstallSnapshotResponse::<NodeId> { vote: Vote::new_committed(3, 2) };
        let ok: Result<_, RaftError<NodeId, InstallSnapshotError>> = Ok(answer());
        assert_eq!(round_trip(&ok).unwrap(), answer());
        let mismatch = InstallSnapshotError::SnapshotMismatch(SnapshotMismatch {
            expect: SnapshotSegmentId { id: "a".into(), offset: 0 },
            got: SnapshotSegmentId { id: "b".into(), offset: 1 << 20 },
        });
        let err: Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> =
            Err(RaftError::APIError(mismatch.clone()));
        assert_eq!(round_trip(&err).unwrap_err(), RaftError::APIError(mismatch));
    }

    #[test]
    fn every_truncation_and_any_trailing_byte_is_an_error() {
        let small = AppendEntriesRequest::<TypeConfig> {
            entries: vec![
                Entry { log_id: log_id(2, 5), payload: EntryPayload::Normal(Group(vec![1, 2, 3, 200])) },
                Entry { log_id: log_id(2, 6), payload: EntryPayload::Membership(membership()) },
            ],
            ..empty_append()
        };
        let bytes = encode(&small).unwrap();
        for cut in 0..bytes.len() {
            let result = decode::<AppendEntriesRequest<TypeConfig>>(&bytes[..cut]);
            assert!(matches!(result, Err(DecodeError::Malformed(_))), "cut at {cut} of {}", bytes.len());
        }
        let snapshot = encode(&snapshot_request()).unwrap();
        for cut in [0, 1, 10, snapshot.len() / 2, snapshot.len() - 1] {
            assert!(decode::<InstallSnapshotRequest<TypeConfig>>(&snapshot[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(decode::<AppendEntriesRequest<TypeConfig>>(&longer), Err(DecodeError::Trailing(1))));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic_nor_a_huge_allocation() {
        // A group claiming 2^63 bytes, then nothing.
        let mut huge = Vec::new();
        huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert!(decode::<Group>(&huge).is_err());
        // A request whose entries claim to be 2^63.
        let mut many = encode(&empty_append()).unwrap();
        let entries_at = many.len() - 2; // before the empty entries and the absent leader_commit
        assert_eq!(&many[entries_at..], &[0, 0]);
        many.truncate(entries_at);
        many.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert!(decode::<AppendEntriesRequest<TypeConfig>>(&many).is_err());
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..2000 {
            let body: Vec<u8> = (0..len % 97)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state.to_le_bytes()[0]
                })
                .collect();
            let _ = decode::<AppendEntriesRequest<TypeConfig>>(&body);
            let _ = decode::<InstallSnapshotRequest<TypeConfig>>(&body);
            let _ = decode::<VoteRequest<NodeId>>(&body);
            let _ = decode::<Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>>(&body);
        }
    }

    async fn post_to(router: Router, content_type: Option<&str>, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
        let mut request = axum::http::Request::builder().method("POST").uri("/echo");
        if let Some(t) = content_type {
            request = request.header(CONTENT_TYPE_HEADER, t);
        }
        let response = router.oneshot(request.body(Body::from(body)).unwrap()).await.unwrap();
        let status = response.status();
        if status == StatusCode::OK {
            assert_eq!(response.headers().get(CONTENT_TYPE_HEADER).unwrap(), CONTENT_TYPE);
        }
        (status, response.into_body().collect().await.unwrap().to_bytes().to_vec())
    }

    #[tokio::test]
    async fn the_extractor_answers_400_415_and_413() {
        async fn echo(Wire(request): Wire<VoteRequest<NodeId>>) -> Wire<VoteRequest<NodeId>> {
            Wire(request)
        }
        let router = Router::new().route("/echo", post(echo)).layer(axum::extract::DefaultBodyLimit::max(64));
        let request = VoteRequest::new(Vote::new(5, 2), Some(log_id(4, 77)));
        let body = encode(&request).unwrap();

        let (status, answer) = post_to(router.clone(), Some(CONTENT_TYPE), body.clone()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(decode::<VoteRequest<NodeId>>(&answer).unwrap(), request);

        let (status, answer) = post_to(router.clone(), Some(CONTENT_TYPE), body[..body.len() - 1].to_vec()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(String::from_utf8(answer).unwrap().contains("not a Raft message"));

        let (status, _) = post_to(router.clone(), Some(CONTENT_TYPE), [body.as_slice(), &[0]].concat()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);

        let (status, _) = post_to(router.clone(), Some("application/json"), b"{}".to_vec()).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let (status, _) = post_to(router.clone(), None, body.clone()).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

        let (status, _) = post_to(router, Some(CONTENT_TYPE), vec![0; 65]).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    }
}
