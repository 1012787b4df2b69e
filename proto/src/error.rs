//! Errors of frame decoding.

/// Why a byte sequence is not an acceptable goim frame.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// The header length field was not 16.
    #[error("header length {0} is not 16")]
    HeaderLen(i16),
    /// The packet length was smaller than the header (negative included).
    #[error("packet length {0} is smaller than the 16-byte header")]
    PackLen(i32),
    /// The body is larger than this side accepts.
    #[error("body of {len} bytes exceeds the limit of {max} bytes")]
    BodyTooLarge {
        /// Announced body length.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// A buffer that must hold exactly one frame held a different amount.
    #[error("message of {actual} bytes does not match packet length {declared}")]
    LengthMismatch {
        /// Length announced by the header.
        declared: usize,
        /// Bytes actually present.
        actual: usize,
    },
    /// Fewer than 16 bytes where a header was expected.
    #[error("truncated frame: {0} bytes")]
    Truncated(usize),
    /// The transport failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}
