//! The states a call, a stream, a job and a transcription can be in: Rust enums stored in the
//! database as the same text the columns always held (so existing databases read unchanged) and
//! serialized to the API's JSON as that text too.

use serde::Serialize;

/// The text of each variant, and the sqlx `Any` column type for an enum stored as that text:
/// one table, so the database, the API and the code can never spell a state differently.
macro_rules! stored_as_text {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $text),+
                }
            }

            pub fn from_text(text: &str) -> Option<$ty> {
                match text {
                    $($text => Some($ty::$variant),)+
                    _ => None,
                }
            }
        }

        impl ::sqlx::Type<::sqlx::Any> for $ty {
            fn type_info() -> ::sqlx::any::AnyTypeInfo {
                <&str as ::sqlx::Type<::sqlx::Any>>::type_info()
            }

            fn compatible(ty: &::sqlx::any::AnyTypeInfo) -> bool {
                <&str as ::sqlx::Type<::sqlx::Any>>::compatible(ty)
            }
        }

        impl<'q> ::sqlx::Encode<'q, ::sqlx::Any> for $ty {
            fn encode_by_ref(
                &self,
                buf: &mut <::sqlx::Any as ::sqlx::Database>::ArgumentBuffer<'q>,
            ) -> ::std::result::Result<::sqlx::encode::IsNull, ::sqlx::error::BoxDynError> {
                <&str as ::sqlx::Encode<'q, ::sqlx::Any>>::encode(self.as_str(), buf)
            }
        }

        impl<'r> ::sqlx::Decode<'r, ::sqlx::Any> for $ty {
            fn decode(value: <::sqlx::Any as ::sqlx::Database>::ValueRef<'r>) -> ::std::result::Result<Self, ::sqlx::error::BoxDynError> {
                let text = <&str as ::sqlx::Decode<'r, ::sqlx::Any>>::decode(value)?;
                $ty::from_text(text).ok_or_else(|| {
                    format!("invalid {} in the database: {text:?}", stringify!($ty)).into()
                })
            }
        }
    };
}
pub(super) use stored_as_text;

/// `calls.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    InProgress,
    Ended,
    Processing,
    Completed,
    Failed,
}

/// `jobs.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
}

/// `streams.status`: `streaming` until the recording file is open, then `recording`, and how it
/// ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamStatus {
    Streaming,
    Recording,
    Saved,
    /// Left open by a process that died; the header was fixed from the bytes on disk.
    Repaired,
    Failed,
    NotRecorded,
}

/// `streams.close_reason`: why a media socket ended (also the `reason` of
/// `host_ws_closed_total` and the close frame's text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    Stopped,
    ClosedByPeer,
    PeerGone,
    StartTimeout,
    BinaryFrame,
    FrameTooBig,
    ProtocolError,
    Shutdown,
    TransportError,
    SendFailed,
    InternalError,
    IdleTimeout,
    DuplicateStreamSid,
    CallAlreadyEnded,
    AccountSidMismatch,
    /// The `start` carried no valid media token for its call (`twilio.media_key`).
    MediaTokenRefused,
    /// The call already had `websocket.max_streams_per_call` sockets open.
    TooManyStreams,
    /// Open past `websocket.max_lifetime_s`.
    MaxLifetime,
    /// More than `websocket.max_frames_per_s` frames in one second.
    FrameRate,
    /// Not a socket's own end: the process holding it died and a start (or a live replica)
    /// found the stream still open.
    ProcessDied,
}

/// `calls.recording_status`: `pending` until the recording stage saves the call's file; with the
/// `twilio` source, what Twilio last said about its recording meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingStatus {
    Pending,
    Saved,
    /// Twilio accepted the request to record the call.
    TwilioRequested,
    /// Twilio refused the request to record the call.
    TwilioRequestFailed,
    TwilioInProgress,
    TwilioCompleted,
    TwilioAbsent,
    TwilioFailed,
}

impl RecordingStatus {
    /// The `RecordingStatus` of Twilio's status callback.
    pub fn from_twilio(status: &str) -> Option<RecordingStatus> {
        match status {
            "in-progress" => Some(RecordingStatus::TwilioInProgress),
            "completed" => Some(RecordingStatus::TwilioCompleted),
            "absent" => Some(RecordingStatus::TwilioAbsent),
            "failed" => Some(RecordingStatus::TwilioFailed),
            _ => None,
        }
    }
}

impl Serialize for RecordingStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// `calls.transcription_status`. Skipping is a state of its own; its text is the one the API
/// has always shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TranscriptionStatus {
    #[serde(rename = "done")]
    Done,
    /// The transcription engine is `none`: nothing to transcribe with, so nothing to extract.
    #[serde(rename = "skipped: transcription engine is none")]
    SkippedEngineNone,
}

stored_as_text!(CallStatus {
    InProgress => "in_progress",
    Ended => "ended",
    Processing => "processing",
    Completed => "completed",
    Failed => "failed",
});
stored_as_text!(JobState {
    Queued => "queued",
    Running => "running",
    Done => "done",
    Failed => "failed",
});
stored_as_text!(StreamStatus {
    Streaming => "streaming",
    Recording => "recording",
    Saved => "saved",
    Repaired => "repaired",
    Failed => "failed",
    NotRecorded => "not_recorded",
});
stored_as_text!(RecordingStatus {
    Pending => "pending",
    Saved => "saved",
    TwilioRequested => "twilio_requested",
    TwilioRequestFailed => "twilio_request_failed",
    TwilioInProgress => "twilio_in-progress",
    TwilioCompleted => "twilio_completed",
    TwilioAbsent => "twilio_absent",
    TwilioFailed => "twilio_failed",
});
stored_as_text!(TranscriptionStatus {
    Done => "done",
    SkippedEngineNone => "skipped: transcription engine is none",
});
stored_as_text!(CloseReason {
    Stopped => "stopped",
    ClosedByPeer => "closed_by_peer",
    PeerGone => "peer_gone",
    StartTimeout => "start_timeout",
    BinaryFrame => "binary_frame",
    FrameTooBig => "frame_too_big",
    ProtocolError => "protocol_error",
    Shutdown => "shutdown",
    TransportError => "transport_error",
    SendFailed => "send_failed",
    InternalError => "internal_error",
    IdleTimeout => "idle_timeout",
    DuplicateStreamSid => "duplicate_stream_sid",
    CallAlreadyEnded => "call_already_ended",
    AccountSidMismatch => "account_sid_mismatch",
    MediaTokenRefused => "media_token_refused",
    TooManyStreams => "too_many_streams",
    MaxLifetime => "max_lifetime",
    FrameRate => "frame_rate",
    ProcessDied => "process_died",
});
