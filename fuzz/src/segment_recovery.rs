//! The `segment_recovery` target: `ledger-store`'s byte format.
//!
//! [`segment_recovery`] is the whole of the `segment_recovery` fuzz target: it turns the
//! fuzzer's bytes into one or two segment images, runs `ledger_store::format::scan` on
//! them, and checks the verdict with an oracle that does not trust ledger-store's own
//! decoder: frame headers, the keyed-BLAKE3 frame checksum and the segment header are
//! re-implemented here from the format description. The same function replays the
//! committed seeds and regressions in `tests/replay.rs`, on stable and uninstrumented.
//!
//! # Input layout
//!
//! Byte 0 is a control byte: bits 0-1 choose the mode, bit 2 asks for checksum fix-up,
//! bit 3 selects the compact frame description for the framed modes; bits 4-7 are ignored.
//!
//! | mode | name     | bytes after the control byte                                             |
//! |------|----------|---------------------------------------------------------------------------|
//! | 0    | raw      | a whole segment file (header included)                                    |
//! | 1    | framed   | `first_seq` u64 LE, then the frame area of one segment                    |
//! | 2    | framed×2 | `first_seq` u64 LE, `delta` u8, `split` u16 LE, then two frame areas      |
//! | 3    | raw×2    | `split` u16 LE, then two whole segment files                              |
//!
//! Framed images get a valid 64-byte segment header written here (the second segment's
//! `first_seq` is `first_seq + 1 + delta`), and are zero-padded to a multiple of 16.
//! Raw images must pass `SegmentHeader::decode` (checked against the independent header
//! decoder) or the input is dropped, as `Log::open` would refuse the file.
//!
//! With the fix-up bit set, every place that holds a structurally valid frame header
//! gets its correct checksum written before the scan (and raw images get a correct
//! segment-header checksum), so mutations of sequence numbers, `synced_seq`, lengths and
//! kinds reach recovery's decision logic instead of dying on a checksum mismatch. A
//! random mutation can never forge a 64-bit checksum, so without this the fuzzer could
//! only shuffle the frames the seeds already contain.
//!
//! With the compact bit set (framed modes only), each frame area is not raw bytes but a
//! list of frame descriptions that the harness encodes (see [`compile_frames`]): mostly
//! valid frames whose seq, `synced_seq`, kind and damage the fuzzer picks, so nearly
//! every input is a log recovery has real decisions about. In compact mode 2 the second
//! segment starts at the seq after the first segment's last described frame plus
//! `delta` read as an `i8` (0: a clean roll-over).

use std::path::{Path, PathBuf};

use ledger_store::format::{FrameFault, ScanOutcome, SegmentHeader, SegmentImage, scan};
use ledger_store::{Corruption, CorruptionKind};

/// Bytes in a frame header (seq, synced_seq, payload_len, kind, reserved, checksum).
pub const FRAME_HEADER: usize = 32;
/// Frames start on, and are padded to, multiples of this.
pub const ALIGN: usize = 16;
/// Bytes in a segment header; the first frame starts here.
pub const SEGMENT_HEADER: usize = 64;
/// Largest sequence number a frame or segment may carry.
pub const SEQ_MAX: u64 = u64::MAX / 2;
/// Largest payload length (the length field is a u32, minus one alignment unit).
pub const PAYLOAD_MAX: usize = u32::MAX as usize - ALIGN;
/// The segment magic.
pub const MAGIC: [u8; 8] = *b"LEDGRLOG";
/// The on-disk format version.
pub const VERSION: u32 = 2;

/// Control-byte modes.
pub const MODE_RAW: u8 = 0;
/// One segment, header written by the harness.
pub const MODE_FRAMED: u8 = 1;
/// Two segments, headers written by the harness.
pub const MODE_FRAMED2: u8 = 2;
/// Two whole segment files.
pub const MODE_RAW2: u8 = 3;
/// Control-byte flag: rewrite checksums of structurally valid frames before scanning.
pub const FIXUP: u8 = 0x04;
/// Control-byte flag: the frame areas are compact frame descriptions (framed modes only).
pub const COMPACT: u8 = 0x08;

// ---------------------------------------------------------------------------------------
// The independent codec.
// ---------------------------------------------------------------------------------------

fn le_u64(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_le_bytes(w)
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le_u16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

fn round_up(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// The frame checksum: the first 8 bytes of `blake3::keyed_hash(key, payload)` where the
/// key is header bytes 0..24 followed by 8 zero bytes.
pub fn frame_checksum(header24: &[u8], payload: &[u8]) -> [u8; 8] {
    let mut key = [0u8; 32];
    key[..24].copy_from_slice(&header24[..24]);
    let hash = blake3::keyed_hash(&key, payload);
    let mut out = [0u8; 8];
    out.copy_from_slice(&hash.as_bytes()[..8]);
    out
}

/// A frame header as this crate reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnFrame {
    /// Sequence number.
    pub seq: u64,
    /// Highest seq known durable when the frame was written.
    pub synced_seq: u64,
    /// Payload bytes, padding excluded.
    pub payload_len: usize,
    /// Record kind (never 0).
    pub kind: u16,
    /// Flag bit 0: the last frame of a commit group.
    pub group_end: bool,
    /// Bytes the frame occupies: header, payload and padding.
    pub total: usize,
}

/// The only flag a frame may carry: it ends a commit group.
pub const GROUP_END: u16 = 1;

/// Why bytes are not a frame, in this crate's reading (mirrors ledger-store's `FrameFault`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnFault {
    /// Fewer than 32 bytes remain.
    Truncated,
    /// The 32 header bytes are all zero.
    Zeroed,
    /// kind 0, unknown flag bits, seq 0 or > SEQ_MAX, synced_seq >= seq, or a payload that
    /// does not fit in the rest of the segment.
    BadHeader,
    /// Well formed, but the checksum is wrong.
    ChecksumMismatch,
}

/// Parses the header at the start of `bytes` (which runs to the end of the segment)
/// without looking at the checksum.
pub fn parse_frame_header(bytes: &[u8]) -> Result<OwnFrame, OwnFault> {
    if bytes.len() < FRAME_HEADER {
        return Err(OwnFault::Truncated);
    }
    let h = &bytes[..FRAME_HEADER];
    if h.iter().all(|&b| b == 0) {
        return Err(OwnFault::Zeroed);
    }
    let seq = le_u64(&h[0..]);
    let synced_seq = le_u64(&h[8..]);
    let payload_len = le_u32(&h[16..]) as usize;
    let kind = le_u16(&h[20..]);
    let flags = le_u16(&h[22..]);
    let fits = payload_len <= PAYLOAD_MAX && round_up(payload_len) <= bytes.len() - FRAME_HEADER;
    if kind == 0 || flags & !GROUP_END != 0 || seq == 0 || seq > SEQ_MAX || synced_seq >= seq || !fits {
        return Err(OwnFault::BadHeader);
    }
    let group_end = flags & GROUP_END != 0;
    Ok(OwnFrame { seq, synced_seq, payload_len, kind, group_end, total: FRAME_HEADER + round_up(payload_len) })
}

/// Parses and verifies the frame at the start of `bytes` (which runs to the end of the
/// segment), checksum included.
pub fn verify_frame(bytes: &[u8]) -> Result<OwnFrame, OwnFault> {
    let f = parse_frame_header(bytes)?;
    let payload = &bytes[FRAME_HEADER..FRAME_HEADER + f.payload_len];
    if frame_checksum(&bytes[..24], payload) != bytes[24..32] {
        return Err(OwnFault::ChecksumMismatch);
    }
    Ok(f)
}

/// Encodes one frame that ends its commit group (what a one-frame commit writes),
/// padding included.
pub fn encode_frame(seq: u64, synced_seq: u64, kind: u16, payload: &[u8]) -> Vec<u8> {
    encode_frame_flags(seq, synced_seq, kind, GROUP_END, payload)
}

/// Encodes one frame with `flags`, padding included.
pub fn encode_frame_flags(seq: u64, synced_seq: u64, kind: u16, flags: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; FRAME_HEADER + round_up(payload.len())];
    out[0..8].copy_from_slice(&seq.to_le_bytes());
    out[8..16].copy_from_slice(&synced_seq.to_le_bytes());
    let len = u32::try_from(payload.len()).expect("payload length fits a u32");
    out[16..20].copy_from_slice(&len.to_le_bytes());
    out[20..22].copy_from_slice(&kind.to_le_bytes());
    out[22..24].copy_from_slice(&flags.to_le_bytes());
    let sum = frame_checksum(&out[..24], payload);
    out[24..32].copy_from_slice(&sum);
    out[FRAME_HEADER..FRAME_HEADER + payload.len()].copy_from_slice(payload);
    out
}

/// Encodes a segment header: magic, version, header size, first seq, size, 24 reserved
/// zero bytes, and the first 8 bytes of BLAKE3 over bytes 0..56.
pub fn encode_segment_header(first_seq: u64, segment_bytes: u64) -> [u8; SEGMENT_HEADER] {
    let mut out = [0u8; SEGMENT_HEADER];
    out[0..8].copy_from_slice(&MAGIC);
    out[8..12].copy_from_slice(&VERSION.to_le_bytes());
    out[12..16].copy_from_slice(&(SEGMENT_HEADER as u32).to_le_bytes());
    out[16..24].copy_from_slice(&first_seq.to_le_bytes());
    out[24..32].copy_from_slice(&segment_bytes.to_le_bytes());
    let sum = blake3::hash(&out[0..56]);
    out[56..64].copy_from_slice(&sum.as_bytes()[..8]);
    out
}

/// Verifies a segment header independently; returns `(first_seq, segment_bytes)`.
pub fn verify_segment_header(bytes: &[u8]) -> Option<(u64, u64)> {
    let h = bytes.get(..SEGMENT_HEADER)?;
    let ok = h[0..8] == MAGIC
        && le_u32(&h[8..]) == VERSION
        && le_u32(&h[12..]) as usize == SEGMENT_HEADER
        && h[32..56].iter().all(|&b| b == 0)
        && blake3::hash(&h[0..56]).as_bytes()[..8] == h[56..64];
    let first_seq = le_u64(&h[16..]);
    (ok && (1..=SEQ_MAX).contains(&first_seq)).then_some((first_seq, le_u64(&h[24..])))
}

/// Rewrites the checksum of every structurally valid frame in `image` from
/// `SEGMENT_HEADER` on, walking as recovery's tail search does (a frame's length past a
/// valid header, 16 bytes past anything else).
pub fn fix_frame_checksums(image: &mut [u8]) {
    let mut p = SEGMENT_HEADER;
    while p + FRAME_HEADER <= image.len() {
        match parse_frame_header(&image[p..]) {
            Ok(f) => {
                let sum = frame_checksum(&image[p..p + 24], &image[p + FRAME_HEADER..p + FRAME_HEADER + f.payload_len]);
                image[p + 24..p + 32].copy_from_slice(&sum);
                p += f.total;
            }
            Err(_) => p += ALIGN,
        }
    }
}

/// Rewrites the segment-header checksum if the header is long enough to have one.
pub fn fix_segment_header_checksum(image: &mut [u8]) {
    if image.len() >= SEGMENT_HEADER {
        let sum = blake3::hash(&image[0..56]);
        image[56..64].copy_from_slice(&sum.as_bytes()[..8]);
    }
}

/// End of the last non-zero byte in `bytes[start..]`, or `start` when all are zero.
fn nonzero_end(bytes: &[u8], start: usize) -> usize {
    bytes[start..].iter().rposition(|&b| b != 0).map_or(start, |i| start + i + 1)
}

// ---------------------------------------------------------------------------------------
// Input decoding.
// ---------------------------------------------------------------------------------------

/// One segment image built from fuzz input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The first sequence number its (verified) header carries.
    pub first_seq: u64,
    /// The whole segment file.
    pub bytes: Vec<u8>,
}

/// Reads up to `n` bytes at `at`, zero-filled past the end of `data`.
fn field<const N: usize>(data: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = data.get(at..) {
        let n = src.len().min(N);
        out[..n].copy_from_slice(&src[..n]);
    }
    out
}

/// Maps any u64 onto a valid first sequence number (1..=SEQ_MAX); 1..=SEQ_MAX map to themselves.
fn normalize_seq(raw: u64) -> u64 {
    if (1..=SEQ_MAX).contains(&raw) { raw } else { raw % SEQ_MAX + 1 }
}

/// A segment with a valid header for `first_seq`, followed by `body`, zero-padded to a
/// multiple of 16 bytes (at least the 64-byte header).
pub fn framed_image(first_seq: u64, body: &[u8]) -> Image {
    let len = round_up(SEGMENT_HEADER + body.len());
    let mut bytes = vec![0u8; len];
    bytes[..SEGMENT_HEADER].copy_from_slice(&encode_segment_header(first_seq, len as u64));
    bytes[SEGMENT_HEADER..SEGMENT_HEADER + body.len()].copy_from_slice(body);
    Image { first_seq, bytes }
}

/// A whole segment file as given, if its header verifies (both decoders must agree).
fn raw_image(mut bytes: Vec<u8>, fixup: bool) -> Option<Image> {
    if fixup {
        fix_segment_header_checksum(&mut bytes);
    }
    let theirs = SegmentHeader::decode(&bytes);
    let ours = verify_segment_header(&bytes);
    match (&theirs, ours) {
        (Ok(h), Some((first_seq, segment_bytes))) => {
            assert_eq!(
                (h.first_seq, h.segment_bytes),
                (first_seq, segment_bytes),
                "segment header decoded differently"
            );
            Some(Image { first_seq, bytes })
        }
        (Err(_), None) => None,
        _ => panic!("SegmentHeader::decode says {theirs:?}, the independent decoder says {ours:?}"),
    }
}

/// Encodes a compact frame description into frame bytes. `last` is the seq of the frame
/// before the first one described; returns the bytes and the seq of the last frame.
///
/// Each frame is `op`, `len`, `param`, then `len` payload bytes (fewer if the input
/// ends); a trailing partial description is ignored. Fields of `op`:
///
/// - bits 0-1, seq: the next one; the previous one again; `param + 1` ahead; `param` back.
/// - bits 2-3, synced_seq: the last commit point (a frame with `param` bit 0 set ends a
///   commit group and carries the group-end flag, as the writer's group commit does);
///   `seq - 1`; 0; `seq - 1 - param`.
/// - bits 4-5, damage: none; one byte flipped at `param` (header or payload); the
///   32-byte header zeroed; the frame torn (only its first `param` bytes written).
/// - bits 6-7, header: kind 1; kind `param | 1`; kind 0 (invalid); an unknown flag bit
///   set (invalid). Checksums are computed after the header is filled in and before damage.
pub fn compile_frames(desc: &[u8], mut last: u64) -> (Vec<u8>, u64) {
    let mut out = Vec::new();
    let mut committed = last;
    let mut i = 0;
    while i + 3 <= desc.len() {
        let (op, len, param) = (desc[i], usize::from(desc[i + 1]), desc[i + 2]);
        i += 3;
        let payload = &desc[i..(i + len).min(desc.len())];
        i += payload.len();
        let p = u64::from(param);
        let seq = match op & 0x03 {
            0 => last.saturating_add(1),
            1 => last,
            2 => last.saturating_add(2 + p),
            _ => last.saturating_sub(p),
        }
        .clamp(1, SEQ_MAX);
        let synced = match (op >> 2) & 0x03 {
            0 => committed,
            1 => seq - 1,
            2 => 0,
            _ => (seq - 1).saturating_sub(p),
        }
        .min(seq - 1);
        let kind = match op >> 6 {
            0 | 3 => 1,
            1 => u16::from(param) | 1,
            _ => 0,
        };
        let flags = if param & 1 != 0 { GROUP_END } else { 0 };
        let mut frame = encode_frame_flags(seq, synced, kind, flags, payload);
        if op >> 6 == 3 {
            frame[22] |= 2;
            let sum = frame_checksum(&frame[..24], payload);
            frame[24..32].copy_from_slice(&sum);
        }
        let used = FRAME_HEADER + payload.len();
        match (op >> 4) & 0x03 {
            0 => {}
            1 => frame[usize::from(param) % used] ^= 0x5a,
            2 => frame[..FRAME_HEADER].fill(0),
            _ => frame[usize::from(param) % used..].fill(0),
        }
        out.extend_from_slice(&frame);
        if param & 1 != 0 {
            committed = seq;
        }
        last = seq;
    }
    (out, last)
}

/// Decodes fuzz input into the segment images to scan (`None`: the input is not one
/// recovery would ever be given, such as a segment whose header does not verify).
pub fn build_images(data: &[u8]) -> Option<Vec<Image>> {
    let (&control, rest) = data.split_first()?;
    let fixup = control & FIXUP != 0;
    let compact = control & COMPACT != 0;
    let mut images = match control & 0x03 {
        MODE_RAW => vec![raw_image(rest.to_vec(), fixup)?],
        MODE_FRAMED => {
            let first_seq = normalize_seq(u64::from_le_bytes(field(rest, 0)));
            let body = rest.get(8..).unwrap_or_default();
            if compact {
                vec![framed_image(first_seq, &compile_frames(body, first_seq - 1).0)]
            } else {
                vec![framed_image(first_seq, body)]
            }
        }
        MODE_FRAMED2 => {
            let first_seq = normalize_seq(u64::from_le_bytes(field(rest, 0)));
            let [delta] = field::<1>(rest, 8);
            let split = usize::from(u16::from_le_bytes(field(rest, 9)));
            let body = rest.get(11..).unwrap_or_default();
            let (a, b) = body.split_at(split.min(body.len()));
            if compact {
                let (a, last) = compile_frames(a, first_seq - 1);
                let second = last.checked_add_signed(1 + i64::from(delta.cast_signed()));
                let second = second.filter(|&s| s > first_seq && s <= SEQ_MAX)?;
                let (b, _) = compile_frames(b, second - 1);
                vec![framed_image(first_seq, &a), framed_image(second, &b)]
            } else {
                let second = first_seq.checked_add(1 + u64::from(delta)).filter(|&s| s <= SEQ_MAX)?;
                vec![framed_image(first_seq, a), framed_image(second, b)]
            }
        }
        _ => {
            let split = usize::from(u16::from_le_bytes(field(rest, 0)));
            let body = rest.get(2..).unwrap_or_default();
            let (a, b) = body.split_at(split.min(body.len()));
            let a = raw_image(a.to_vec(), fixup)?;
            let b = raw_image(b.to_vec(), fixup)?;
            // Log::open sorts segments by name and checks each header against its name.
            if a.first_seq >= b.first_seq {
                return None;
            }
            vec![a, b]
        }
    };
    if fixup {
        for image in &mut images {
            fix_frame_checksums(&mut image.bytes);
        }
    }
    Some(images)
}

// ---------------------------------------------------------------------------------------
// The oracle.
// ---------------------------------------------------------------------------------------

/// The path the harness gives segment `i`.
pub fn segment_path(i: usize) -> PathBuf {
    PathBuf::from(format!("seg{i}"))
}

fn index_of(images: &[Image], path: &Path) -> usize {
    (0..images.len())
        .find(|&i| segment_path(i) == path)
        .unwrap_or_else(|| panic!("corruption names {path:?}, which is not one of the scanned segments"))
}

/// The fuzz target: decodes `data`, scans, and checks the verdict. Panics on any
/// disagreement with the independent oracle.
pub fn segment_recovery(data: &[u8]) {
    if let Some(images) = build_images(data) {
        let paths: Vec<PathBuf> = (0..images.len()).map(segment_path).collect();
        let segs: Vec<SegmentImage<'_>> = images
            .iter()
            .zip(&paths)
            .map(|(img, path)| SegmentImage { path, first_seq: img.first_seq, bytes: &img.bytes })
            .collect();
        let verdict = scan(&segs);
        check_verdict(&images, &verdict);
    }
}

/// Checks a scan verdict against the images it was computed from.
pub fn check_verdict(images: &[Image], verdict: &Result<ScanOutcome, Corruption>) {
    match verdict {
        Ok(outcome) => check_outcome(images, outcome),
        Err(corruption) => check_corruption(images, corruption),
    }
}

/// An accepted log: every kept frame must verify under the independent decoder and
/// carry the next seq; the place where the log ends must not hold a frame recovery
/// should have kept; the reported tail must match the bytes.
pub fn check_outcome(images: &[Image], outcome: &ScanOutcome) {
    let kept = outcome.ends.len();
    assert!((1..=images.len()).contains(&kept), "{kept} segments kept out of {}", images.len());
    let first_seq = images[0].first_seq;
    let mut expected = first_seq;
    let mut frames = 0u64;
    for (i, &end) in outcome.ends.iter().enumerate() {
        let bytes = &images[i].bytes;
        assert!((SEGMENT_HEADER..=bytes.len()).contains(&end), "segment {i}: end {end} outside 64..={}", bytes.len());
        if i > 0 {
            assert_eq!(images[i].first_seq, expected, "kept segment {i} does not continue the sequence");
        }
        let mut p = SEGMENT_HEADER;
        while p < end {
            let f = verify_frame(&bytes[p..])
                .unwrap_or_else(|fault| panic!("segment {i}: kept frame at {p} does not verify: {fault:?}"));
            assert_eq!(f.seq, expected, "segment {i}: kept frame at {p} has seq {}, expected {expected}", f.seq);
            assert!(p + f.total <= end, "segment {i}: kept frame at {p} runs past the end {end}");
            p += f.total;
            expected += 1;
            frames += 1;
        }
        assert_eq!(p, end, "segment {i}: end {end} is not a frame boundary");
        if i + 1 < kept {
            // Rolled over to the next segment: the rest of this one was never written.
            let fault = verify_frame(&bytes[end..]).err();
            assert!(
                matches!(fault, Some(OwnFault::Zeroed | OwnFault::Truncated)),
                "segment {i} rolled over at {end}, where the bytes are {fault:?}"
            );
        }
    }
    assert_eq!(outcome.frames, frames, "frame count");
    assert_eq!(outcome.last_seq, first_seq - 1 + frames, "last_seq");
    if frames > 0 {
        assert!(last_kept_ends_group(images, &outcome.ends), "the log was kept ending inside a commit group");
    }

    // The break: the log ends where it does only if what follows in sequence is an
    // unended group: no group-end frame is reachable from it (else recovery should have
    // kept that whole group), and the sequence stops at bytes that do not verify (a
    // verified frame with another seq would have been a sequence gap).
    let last = kept - 1;
    let brk = outcome.ends[last];
    check_no_group_reachable(images, last, brk, expected);

    // The tail: bytes and frames past the break, none of which may prove durability.
    let mut bytes_dropped = 0u64;
    let mut frames_dropped = 0u64;
    let dirty_end = nonzero_end(&images[last].bytes, brk);
    for (j, img) in images.iter().enumerate().skip(last) {
        let start = if j == last { brk } else { SEGMENT_HEADER };
        let end = nonzero_end(&img.bytes, start);
        bytes_dropped += (end - start) as u64;
        let mut p = start;
        while p + FRAME_HEADER <= end {
            match verify_frame(&img.bytes[p..]) {
                Ok(f) => {
                    assert!(f.seq > outcome.last_seq, "tail frame {} at {j}:{p} repeats a kept seq", f.seq);
                    assert!(
                        f.synced_seq < expected,
                        "tail frame {} at {j}:{p} has synced_seq {} >= {expected}: durable data was cut",
                        f.seq,
                        f.synced_seq
                    );
                    frames_dropped += 1;
                    p += f.total;
                }
                Err(_) => p += ALIGN,
            }
        }
    }
    match &outcome.torn {
        None => {
            assert_eq!(bytes_dropped, 0, "no torn tail reported, but non-zero bytes follow the end");
            assert_eq!(kept, images.len(), "no torn tail reported, but segments were dropped");
        }
        Some(t) => {
            assert!(bytes_dropped > 0 || kept < images.len(), "torn tail reported where there is none");
            assert_eq!(
                (t.segment, t.offset, t.dirty_end, t.bytes_dropped, t.frames_dropped),
                (last, brk, dirty_end, bytes_dropped, frames_dropped),
                "torn tail (segment, offset, dirty_end, bytes_dropped, frames_dropped)"
            );
        }
    }
}

/// Whether the last frame before the end of the kept segments ends a commit group.
fn last_kept_ends_group(images: &[Image], ends: &[usize]) -> bool {
    for (i, &end) in ends.iter().enumerate().rev() {
        let mut p = SEGMENT_HEADER;
        let mut last = None;
        while p < end {
            let Ok(f) = verify_frame(&images[i].bytes[p..]) else { return false };
            last = Some(f);
            p += f.total;
        }
        if let Some(f) = last {
            return f.group_end;
        }
    }
    true
}

/// Follows the sequence from `(segment, offset)`, expecting `expected`, the way
/// recovery reads (across roll-overs), and asserts it reaches no group-end frame and
/// stops at bytes that do not verify. Returns how many frames it followed.
fn check_no_group_reachable(images: &[Image], mut segment: usize, mut p: usize, mut expected: u64) -> usize {
    let mut walked = 0;
    loop {
        let bytes = &images[segment].bytes;
        match verify_frame(&bytes[p..]) {
            Ok(f) if f.seq == expected => {
                assert!(
                    !f.group_end,
                    "the log was cut before {segment}:{p}, but frame {} there ends a group that follows in sequence",
                    f.seq
                );
                p += f.total;
                expected += 1;
                walked += 1;
            }
            Ok(f) => panic!("the sequence after the end stops at {segment}:{p} on frame {}: a sequence gap", f.seq),
            Err(OwnFault::Zeroed | OwnFault::Truncated)
                if images.get(segment + 1).is_some_and(|next| next.first_seq == expected) =>
            {
                segment += 1;
                p = SEGMENT_HEADER;
            }
            Err(_) => return walked,
        }
    }
}

/// A refused log: the corruption must point at real evidence.
pub fn check_corruption(images: &[Image], c: &Corruption) {
    let i = index_of(images, &c.segment);
    let bytes = &images[i].bytes;
    let offset = usize::try_from(c.offset).expect("offset fits usize");
    assert!((SEGMENT_HEADER..=bytes.len()).contains(&offset), "corruption offset {offset} outside segment {i}");
    assert_eq!((offset - SEGMENT_HEADER) % ALIGN, 0, "corruption offset {offset} unaligned");
    match &c.kind {
        CorruptionKind::SequenceGap { expected, found } => {
            let f = verify_frame(&bytes[offset..])
                .unwrap_or_else(|fault| panic!("sequence gap at {i}:{offset}, where no frame verifies: {fault:?}"));
            assert_eq!(f.seq, *found, "sequence gap names frame {found}, but {i}:{offset} holds {}", f.seq);
            assert_ne!(found, expected, "sequence gap with found == expected");
        }
        CorruptionKind::DurableFrameDamaged { seq, fault, proof_seq, proof_segment, proof_offset } => {
            if matches!(fault, FrameFault::IncompleteGroup) {
                // The break moved back to the last group end: the first frame of the
                // unended group is there, whole, and no group end follows in sequence.
                let walked = check_no_group_reachable(images, i, offset, *seq);
                assert!(walked > 0, "incomplete group at {i}:{offset}: no frame {seq} follows in sequence");
            } else {
                let ours = verify_frame(&bytes[offset..]);
                let ours_as_theirs = ours.map(|f| f.seq).map_err(|f| format!("{f:?}"));
                assert_eq!(ours_as_theirs, Err(format!("{fault:?}")), "damaged frame {seq} at {i}:{offset}: fault");
            }
            let j = index_of(images, proof_segment);
            let p = usize::try_from(*proof_offset).expect("offset fits usize");
            assert!(p < images[j].bytes.len(), "proof offset {p} outside segment {j}");
            let proof = verify_frame(&images[j].bytes[p..])
                .unwrap_or_else(|f| panic!("proof frame at {j}:{p} does not verify: {f:?}"));
            assert_eq!(proof.seq, *proof_seq, "proof frame seq");
            assert!(proof.seq > *seq, "proof frame {} is not later than damaged frame {seq}", proof.seq);
            assert!(proof.synced_seq >= *seq, "proof frame synced_seq {} does not cover {seq}", proof.synced_seq);
            assert!((j, p) > (i, offset), "proof frame at {j}:{p} is not after the damage at {i}:{offset}");
        }
        other => panic!("unknown corruption kind {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Seeds.
// ---------------------------------------------------------------------------------------

fn framed_input(control: u8, first_seq: u64, body: &[u8]) -> Vec<u8> {
    let mut v = vec![control];
    v.extend_from_slice(&first_seq.to_le_bytes());
    v.extend_from_slice(body);
    v
}

/// Frames `first..first+n` with payload lengths cycling through a few sizes; frames of
/// the same commit group carry the same `synced_seq` (the last seq of the previous group),
/// and the last frame of each group carries the group-end flag.
fn frames(first: u64, n: u64, group: u64) -> Vec<u8> {
    let lens = [0usize, 1, 15, 16, 17, 40, 64];
    let mut out = Vec::new();
    for seq in first..first + n {
        let synced = first - 1 + (seq - first) / group * group;
        let len = lens[usize::try_from(seq % lens.len() as u64).unwrap_or(0)];
        let payload: Vec<u8> = (0..len).map(|k| (seq as u8).wrapping_mul(31).wrapping_add(k as u8)).collect();
        // Every group ends with the group-end flag, the last one too (it may be short).
        let flags = if (seq - first + 1).is_multiple_of(group) || seq == first + n - 1 { GROUP_END } else { 0 };
        out.extend(encode_frame_flags(seq, synced, 1 + (seq % 3) as u16, flags, &payload));
    }
    out
}

/// As [`frames`], with every checksum zeroed.
fn unsummed_frames(first: u64, n: u64, group: u64) -> Vec<u8> {
    let mut out = frames(first, n, group);
    let mut p = 0;
    while p < out.len() {
        let total = parse_frame_header(&out[p..]).map_or(ALIGN, |f| f.total);
        out[p + 24..p + 32].fill(0);
        p += total;
    }
    out
}

/// A whole segment file holding `body` followed by `zeroes` zero bytes.
fn segment_file(first_seq: u64, body: &[u8], zeroes: usize) -> Vec<u8> {
    let mut body = body.to_vec();
    body.resize(body.len() + zeroes, 0);
    framed_image(first_seq, &body).bytes
}

/// The seed inputs, by file name: small, valid-looking logs in every mode, so that the
/// fuzzer starts from inputs that reach the frame decoder and recovery's decisions.
pub fn seed_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let mut seeds = Vec::new();

    // A clean log: 7 frames in groups of 3, then unwritten space.
    let mut clean = frames(1, 7, 3);
    clean.resize(clean.len() + 64, 0);
    seeds.push(("framed-clean", framed_input(MODE_FRAMED, 1, &clean)));

    // A torn tail: frame 6 of an unsynced group is half written (garbage payload).
    let mut torn = frames(1, 6, 3);
    let last = frames(1, 6, 3).len() - frames(6, 1, 3).len();
    for b in &mut torn[last + 20..] {
        *b ^= 0x5a;
    }
    seeds.push(("framed-torn-tail", framed_input(MODE_FRAMED, 1, &torn)));

    // Durable damage: frame 2 is corrupted, but frame 5 says frames up to 3 were synced.
    let mut damaged = frames(1, 6, 3);
    let frame2 = frames(1, 1, 3).len();
    damaged[frame2 + FRAME_HEADER] ^= 0xff; // first payload byte of frame 2
    seeds.push(("framed-durable-damage", framed_input(MODE_FRAMED, 1, &damaged)));

    // Durable damage the other way: frame 2's header is zeroed (a lost sector).
    let mut hole = frames(1, 6, 3);
    hole[frame2..frame2 + FRAME_HEADER].fill(0);
    seeds.push(("framed-zeroed-hole", framed_input(MODE_FRAMED, 1, &hole)));

    // A log at a high sequence number, with checksums left zero for the fix-up mode.
    let unsummed = unsummed_frames(1_000_000, 5, 2);
    seeds.push(("framed-fixup", framed_input(MODE_FRAMED | FIXUP, 1_000_000, &unsummed)));

    // Two segments: the writer rolled over after frame 4; segment 2 holds 5..=8.
    let mut a = frames(1, 4, 2);
    a.resize(a.len() + 48, 0);
    let b = frames(5, 4, 2);
    let mut two = vec![MODE_FRAMED2];
    two.extend_from_slice(&1u64.to_le_bytes());
    two.push(3); // second first_seq = 1 + 1 + 3 = 5
    two.extend_from_slice(&u16::try_from(a.len()).unwrap_or(u16::MAX).to_le_bytes());
    two.extend_from_slice(&a);
    two.extend_from_slice(&b);
    seeds.push(("framed2-rollover", two));

    // A whole segment file as it is on disk.
    let mut raw = vec![MODE_RAW];
    raw.extend(segment_file(1, &frames(1, 5, 5), 96));
    seeds.push(("raw-one-segment", raw));

    // Two whole segment files, the second one torn.
    let a = segment_file(1, &frames(1, 3, 3), 32);
    let mut b = segment_file(4, &frames(4, 3, 1), 32);
    let n = b.len();
    b[n - 32 - 16] ^= 1; // first payload byte of frame 6 (6 bytes, padded to 16)
    let mut raw2 = vec![MODE_RAW2];
    raw2.extend_from_slice(&u16::try_from(a.len()).unwrap_or(u16::MAX).to_le_bytes());
    raw2.extend(a);
    raw2.extend(b);
    seeds.push(("raw2-torn-second", raw2));

    // A whole segment file with every checksum zeroed, for the fix-up mode.
    let mut raw_fix = segment_file(1, &unsummed_frames(1, 4, 2), 64);
    raw_fix[56..64].fill(0);
    let mut input = vec![MODE_RAW | FIXUP];
    input.extend(raw_fix);
    seeds.push(("raw-fixup", input));

    // Compact descriptions: commit groups of 3 (param bit 0 closes a group), the last
    // frame torn after 40 bytes.
    let mut desc = Vec::new();
    for k in 0..8u8 {
        let close = u8::from(k % 3 == 2);
        let op = if k == 7 { 0x30 } else { 0 };
        let param = if k == 7 { 40 } else { close };
        desc.extend([op, 8 + 4 * k, param]);
        desc.extend((0..8 + 4 * k).map(|b| b ^ k));
    }
    seeds.push(("compact-groups-torn", framed_input(MODE_FRAMED | COMPACT, 1, &desc)));

    // Compact, two segments rolling over cleanly (delta 0): 4 frames, then 4 more, each
    // synced_seq = seq - 1 (op bits 2-3 = 1), as with a sync after every frame.
    let one = |k: u8| [0x04, 16, 1].into_iter().chain((0..16).map(move |b| b ^ k));
    let a: Vec<u8> = (0..4).flat_map(one).collect();
    let b: Vec<u8> = (4..8).flat_map(one).collect();
    let mut two = vec![MODE_FRAMED2 | COMPACT];
    two.extend_from_slice(&1u64.to_le_bytes());
    two.push(0);
    two.extend_from_slice(&u16::try_from(a.len()).unwrap_or(u16::MAX).to_le_bytes());
    two.extend(a);
    two.extend(b);
    seeds.push(("compact2-rollover", two));

    seeds
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use ledger_store::format::{FRAME_HEADER_BYTES, FrameHeader, SEGMENT_HEADER_BYTES};

    #[test]
    fn constants_agree_with_ledger_store() {
        use ledger_store::format as f;
        assert_eq!(
            (FRAME_HEADER, ALIGN, SEGMENT_HEADER, SEQ_MAX, PAYLOAD_MAX, MAGIC, VERSION),
            (
                f::FRAME_HEADER_BYTES,
                f::FRAME_ALIGN_BYTES,
                f::SEGMENT_HEADER_BYTES,
                f::SEQ_MAX,
                f::PAYLOAD_BYTES_MAX,
                f::SEGMENT_MAGIC,
                f::FORMAT_VERSION
            )
        );
    }

    #[test]
    fn own_encoders_agree_with_ledger_store() {
        for len in [0usize, 1, 15, 16, 17, 63, 64, 65, 1000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8 ^ 0xa5).collect();
            let ours = encode_frame(42, 40, 9, &payload);
            let h = FrameHeader {
                seq: 42,
                synced_seq: 40,
                payload_len: len as u32,
                kind: 9,
                flags: ledger_store::format::FLAG_GROUP_END,
            };
            let mut theirs = [0u8; FRAME_HEADER_BYTES];
            h.encode(&payload, &mut theirs);
            assert_eq!(ours[..FRAME_HEADER], theirs, "payload length {len}");
            assert_eq!(FrameHeader::decode(&ours).unwrap().0, h);
            assert_eq!(verify_frame(&ours).unwrap().seq, 42);
        }
        let ours = encode_segment_header(77, 1 << 20);
        let theirs = SegmentHeader { first_seq: 77, segment_bytes: 1 << 20 }.encode();
        assert_eq!(ours, theirs);
        assert_eq!(ours.len(), SEGMENT_HEADER_BYTES);
        assert_eq!(verify_segment_header(&ours), Some((77, 1 << 20)));
    }

    #[test]
    fn seeds_reach_the_interesting_verdicts() {
        let verdicts: Vec<_> = seed_inputs()
            .into_iter()
            .map(|(name, data)| {
                let images = build_images(&data).unwrap_or_else(|| panic!("seed {name} builds no images"));
                let paths: Vec<_> = (0..images.len()).map(segment_path).collect();
                let segs: Vec<_> = images
                    .iter()
                    .zip(&paths)
                    .map(|(img, path)| SegmentImage { path, first_seq: img.first_seq, bytes: &img.bytes })
                    .collect();
                let verdict = scan(&segs);
                check_verdict(&images, &verdict);
                (name, verdict.map(|o| (o.frames, o.torn.map(|t| t.frames_dropped))).map_err(|c| c.kind))
            })
            .collect();
        let get = |n: &str| verdicts.iter().find(|(name, _)| *name == n).unwrap().1.clone();
        assert_eq!(get("framed-clean"), Ok((7, None)));
        // Frame 6, the end of the group 4..=6, is torn: the group is cut whole.
        assert_eq!(get("framed-torn-tail"), Ok((3, Some(2))));
        assert!(matches!(get("framed-durable-damage"), Err(CorruptionKind::DurableFrameDamaged { seq: 2, .. })));
        assert_eq!(get("framed-fixup"), Ok((5, None)));
        assert_eq!(get("framed2-rollover"), Ok((8, None)));
        assert_eq!(get("raw-one-segment"), Ok((5, None)));
        assert!(matches!(get("raw2-torn-second"), Ok((5, Some(_)))));
        assert!(matches!(
            get("framed-zeroed-hole"),
            Err(CorruptionKind::DurableFrameDamaged { seq: 2, fault: ledger_store::format::FrameFault::Zeroed, .. })
        ));
        assert_eq!(get("raw-fixup"), Ok((4, None)));
        assert_eq!(get("compact-groups-torn"), Ok((6, Some(1))));
        assert_eq!(get("compact2-rollover"), Ok((8, None)));
    }

    /// The oracle itself: a scan that kept a frame with a wrong checksum, or miscounted,
    /// must not pass.
    #[test]
    fn oracle_rejects_a_kept_frame_with_a_bad_checksum() {
        let mut body = frames(1, 3, 3);
        body[24] ^= 1; // frame 1's checksum
        let images = vec![framed_image(1, &body)];
        let end = SEGMENT_HEADER + body.len();
        let lying = ScanOutcome { frames: 3, last_seq: 3, ends: vec![end], torn: None };
        let r = std::panic::catch_unwind(|| check_outcome(&images, &lying));
        assert!(r.is_err(), "a kept frame with a bad checksum passed the oracle");

        let honest_images = vec![framed_image(1, &frames(1, 3, 3))];
        let miscounted = ScanOutcome { frames: 2, last_seq: 2, ends: vec![end], torn: None };
        assert!(std::panic::catch_unwind(|| check_outcome(&honest_images, &miscounted)).is_err());
        let right = ScanOutcome { frames: 3, last_seq: 3, ends: vec![end], torn: None };
        check_outcome(&honest_images, &right);
        let early = ScanOutcome { frames: 2, last_seq: 2, ends: vec![end - frames(3, 1, 3).len()], torn: None };
        assert!(std::panic::catch_unwind(|| check_outcome(&honest_images, &early)).is_err());
    }

    #[test]
    fn short_and_odd_inputs_do_not_panic() {
        for data in [&[][..], &[0], &[1], &[2], &[3], &[4, 1, 2], &[2, 255, 255, 255, 255, 255, 255, 255, 127, 255]] {
            segment_recovery(data);
        }
    }
}
