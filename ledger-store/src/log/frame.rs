//! Frame encoding and verification: the byte-level format of one record in a segment.
//!
//! See `FORMAT.md` for the layout. Everything here is pure: it reads and writes byte
//! slices and knows nothing about files, so recovery, the writer and the fuzz target
//! share one decoder.

/// Bytes in a frame header. The payload follows at this offset, so a frame that starts
/// on a [`FRAME_ALIGN_BYTES`] boundary has a payload that does too.
pub const FRAME_HEADER_BYTES: usize = 32;

/// Every frame starts at a multiple of this many bytes from the start of the segment,
/// and the payload is padded with zeroes to a multiple of it. 16 is the largest
/// alignment an rkyv archive asks for (a 128-bit integer), so archived records can be
/// read in place from the mapping.
pub const FRAME_ALIGN_BYTES: usize = 16;

const _: () = assert!(FRAME_HEADER_BYTES.is_multiple_of(FRAME_ALIGN_BYTES));
const _: () = assert!(FRAME_ALIGN_BYTES.is_power_of_two());

/// Largest payload a frame can carry (the length field is a `u32`). A segment may set a
/// smaller bound: a frame must fit in one segment.
pub const PAYLOAD_BYTES_MAX: usize = u32::MAX as usize - FRAME_ALIGN_BYTES;

/// Largest sequence number a frame may carry. Far beyond any real log (2^63 frames),
/// it keeps `seq + 1` from overflowing in recovery, whatever bytes a file holds.
pub const SEQ_MAX: u64 = u64::MAX / 2;

/// Bytes a frame with a `payload_len`-byte payload occupies, header and padding included.
#[inline]
pub const fn frame_bytes(payload_len: usize) -> usize {
    FRAME_HEADER_BYTES + padded(payload_len)
}

#[inline]
const fn padded(len: usize) -> usize {
    (len + FRAME_ALIGN_BYTES - 1) & !(FRAME_ALIGN_BYTES - 1)
}

/// The decoded fixed fields of a frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Position of the frame in the log: gapless, strictly increasing, starting at 1.
    pub seq: u64,
    /// Every frame with `seq <= synced_seq` was known durable when this frame was
    /// written. Recovery uses it to tell a torn tail from lost durable data.
    pub synced_seq: u64,
    /// Bytes of payload, padding excluded.
    pub payload_len: u32,
    /// Caller-defined record kind; 0 is reserved (an all-zero header marks the end).
    pub kind: u16,
    /// [`FLAG_GROUP_END`] on the last frame of each commit group; no other bit is used.
    pub flags: u16,
}

/// Marks the last frame of a commit group. Recovery keeps only whole groups: frames
/// after the last frame carrying it were never committed, and are cut with the tail.
pub const FLAG_GROUP_END: u16 = 1;

/// Why the bytes at some offset are not a valid frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameFault {
    /// Fewer than a header's worth of bytes remain.
    Truncated,
    /// The header is all zeroes: the unwritten end of a segment.
    Zeroed,
    /// A header field is out of range (kind 0, unknown flag bits set, `synced_seq >= seq`,
    /// or a length that runs past the end of the segment).
    BadHeader,
    /// The header is well formed but the checksum does not match header and payload.
    ChecksumMismatch,
    /// Verified frames follow, but the commit group they belong to has no end mark:
    /// recovery's verdict on a group cut short, never a fault of one frame's bytes.
    IncompleteGroup,
}

impl FrameHeader {
    /// Writes the header, checksummed over `payload`, into `out[..FRAME_HEADER_BYTES]`.
    pub fn encode(&self, payload: &[u8], out: &mut [u8; FRAME_HEADER_BYTES]) {
        out[0..8].copy_from_slice(&self.seq.to_le_bytes());
        out[8..16].copy_from_slice(&self.synced_seq.to_le_bytes());
        out[16..20].copy_from_slice(&self.payload_len.to_le_bytes());
        out[20..22].copy_from_slice(&self.kind.to_le_bytes());
        out[22..24].copy_from_slice(&self.flags.to_le_bytes());
        let sum = checksum(&out[0..24], payload);
        out[24..32].copy_from_slice(&sum);
    }

    /// Writes the header with its checksum left zero, for [`seal_frames`] to fill in
    /// later (on another thread) once the payload is in place.
    pub(crate) fn encode_unsealed(&self, out: &mut [u8; FRAME_HEADER_BYTES]) {
        out[0..8].copy_from_slice(&self.seq.to_le_bytes());
        out[8..16].copy_from_slice(&self.synced_seq.to_le_bytes());
        out[16..20].copy_from_slice(&self.payload_len.to_le_bytes());
        out[20..22].copy_from_slice(&self.kind.to_le_bytes());
        out[22..24].copy_from_slice(&self.flags.to_le_bytes());
        out[24..32].fill(0);
    }

    /// Decodes the header at the start of `bytes` without checking the checksum; `bytes`
    /// runs to the end of the segment so the length can be bounds-checked.
    pub fn decode_unchecked(bytes: &[u8]) -> Result<FrameHeader, FrameFault> {
        let Some(h) = bytes.get(..FRAME_HEADER_BYTES) else {
            return Err(FrameFault::Truncated);
        };
        if h.iter().all(|&b| b == 0) {
            return Err(FrameFault::Zeroed);
        }
        let header = FrameHeader {
            seq: u64::from_le_bytes(arr(&h[0..8])),
            synced_seq: u64::from_le_bytes(arr(&h[8..16])),
            payload_len: u32::from_le_bytes(arr(&h[16..20])),
            kind: u16::from_le_bytes(arr(&h[20..22])),
            flags: u16::from_le_bytes(arr(&h[22..24])),
        };
        let room = bytes.len() - FRAME_HEADER_BYTES;
        let fits = (header.payload_len as usize) <= PAYLOAD_BYTES_MAX && padded(header.payload_len as usize) <= room;
        if header.kind == 0
            || header.flags & !FLAG_GROUP_END != 0
            || header.seq == 0
            || header.seq > SEQ_MAX
            || header.synced_seq >= header.seq
            || !fits
        {
            return Err(FrameFault::BadHeader);
        }
        Ok(header)
    }

    /// Decodes and verifies the frame at the start of `bytes` (which runs to the end of
    /// the segment), returning the header and the payload.
    pub fn decode(bytes: &[u8]) -> Result<(FrameHeader, &[u8]), FrameFault> {
        let header = Self::decode_unchecked(bytes)?;
        let payload = &bytes[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + header.payload_len as usize];
        if checksum(&bytes[0..24], payload) != bytes[24..32] {
            return Err(FrameFault::ChecksumMismatch);
        }
        Ok((header, payload))
    }

    /// Whether this frame ends a commit group.
    #[inline]
    pub fn ends_group(&self) -> bool {
        self.flags & FLAG_GROUP_END != 0
    }

    /// Bytes this frame occupies, header and padding included.
    #[inline]
    pub fn frame_bytes(&self) -> usize {
        frame_bytes(self.payload_len as usize)
    }
}

/// Computes and stores the checksum of every frame in `frames`: whole frames back to
/// back, written by [`FrameHeader::encode_unsealed`] (header fields final, checksum
/// zero). The writer hands such ranges to its sealing thread, so the hashing, about
/// half of an append's cost, runs beside the judging of the next transactions.
///
/// # Panics
/// If `frames` does not hold whole frames: the writer's own bookkeeping went wrong.
pub(crate) fn seal_frames(frames: &mut [u8]) {
    let mut at = 0;
    while at < frames.len() {
        let len = u32::from_le_bytes(arr(&frames[at + 16..at + 20])) as usize;
        let end = at + frame_bytes(len);
        let frame = &mut frames[at..end];
        let sum = checksum(&frame[0..24], &frame[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len]);
        frame[24..32].copy_from_slice(&sum);
        at = end;
    }
}

/// The frame checksum: the first 8 bytes of BLAKE3 in keyed mode, keyed by the first 24
/// header bytes (zero-padded to 32), over the payload. Keying binds every header field
/// into the hash at no cost, so a 64-byte payload is exactly one BLAKE3 compression.
#[inline]
fn checksum(header24: &[u8], payload: &[u8]) -> [u8; 8] {
    let mut key = [0u8; 32];
    key[..24].copy_from_slice(header24);
    let hash = blake3::keyed_hash(&key, payload);
    let mut out = [0u8; 8];
    out.copy_from_slice(&hash.as_bytes()[..8]);
    out
}

#[inline]
fn arr<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(s);
    a
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // small, fixed test values
mod tests {
    use super::*;

    fn encoded(seq: u64, payload: &[u8]) -> Vec<u8> {
        let h = FrameHeader { seq, synced_seq: seq - 1, payload_len: payload.len() as u32, kind: 7, flags: 0 };
        let mut buf = vec![0u8; h.frame_bytes()];
        let mut head = [0u8; FRAME_HEADER_BYTES];
        h.encode(payload, &mut head);
        buf[..FRAME_HEADER_BYTES].copy_from_slice(&head);
        buf[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + payload.len()].copy_from_slice(payload);
        buf
    }

    #[test]
    fn round_trip_and_padding() {
        for len in [0usize, 1, 15, 16, 17, 64, 100] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let buf = encoded(5, &payload);
            assert_eq!(buf.len() % FRAME_ALIGN_BYTES, 0);
            let (h, p) = FrameHeader::decode(&buf).expect("valid frame");
            assert_eq!((h.seq, h.synced_seq, h.kind, p), (5, 4, 7, &payload[..]));
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let buf = encoded(9, b"the quick brown fox jumps over the lazy dog");
        let used = FRAME_HEADER_BYTES + 43; // padding is not covered, and need not be
        for byte in 0..used {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                assert!(FrameHeader::decode(&bad).is_err(), "flip at byte {byte} bit {bit} accepted");
            }
        }
    }

    #[test]
    fn sealing_unsealed_frames_gives_the_encoded_bytes() {
        let payloads: Vec<Vec<u8>> = [0usize, 1, 16, 43, 64, 100].iter().map(|&n| vec![n as u8; n]).collect();
        let mut expected = Vec::new();
        let mut unsealed = Vec::new();
        for (i, payload) in payloads.iter().enumerate() {
            let seq = 10 + i as u64;
            let flags = if i + 1 == payloads.len() { FLAG_GROUP_END } else { 0 };
            let h = FrameHeader { seq, synced_seq: 9, payload_len: payload.len() as u32, kind: 3, flags };
            let mut frame = vec![0u8; h.frame_bytes()];
            frame[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + payload.len()].copy_from_slice(payload);
            let mut head = [0u8; FRAME_HEADER_BYTES];
            h.encode_unsealed(&mut head);
            assert_eq!(head[24..32], [0u8; 8], "no checksum yet");
            frame[..FRAME_HEADER_BYTES].copy_from_slice(&head);
            unsealed.extend_from_slice(&frame);
            h.encode(payload, &mut head);
            frame[..FRAME_HEADER_BYTES].copy_from_slice(&head);
            expected.extend_from_slice(&frame);
        }
        assert!(FrameHeader::decode(&unsealed).is_err(), "an unsealed frame does not verify");
        seal_frames(&mut unsealed);
        assert_eq!(unsealed, expected);
    }

    #[test]
    fn zeroes_truncation_and_overlong_length() {
        assert_eq!(FrameHeader::decode(&[0u8; 64]).err(), Some(FrameFault::Zeroed));
        assert_eq!(FrameHeader::decode(&[1u8; 10]).err(), Some(FrameFault::Truncated));
        let buf = encoded(3, &[1u8; 40]);
        // The same frame with the segment ending early: the length no longer fits.
        assert_eq!(FrameHeader::decode(&buf[..FRAME_HEADER_BYTES + 16]).err(), Some(FrameFault::BadHeader));
    }
}
