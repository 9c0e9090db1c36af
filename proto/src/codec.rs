//! The codec every generated Switchboard client and server uses: prost,
//! except that bytes which do not decode as the expected message are the
//! caller's mistake (INVALID_ARGUMENT with `google.rpc` details), not the
//! server's (tonic's own prost codec answers INTERNAL with no details).

use std::marker::PhantomData;

use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstEncoder};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of every Switchboard error.
pub const ERROR_DOMAIN: &str = "switchboard.dev";
/// The `ErrorInfo.reason` of a message that is not valid protobuf.
pub const MALFORMED_MESSAGE: &str = "MALFORMED_MESSAGE";

/// prost encoding, Switchboard's decoding errors.
#[derive(Debug, Clone)]
pub struct SwitchboardCodec<T, U> {
    inner: ProstCodec<T, U>,
}

impl<T, U> Default for SwitchboardCodec<T, U> {
    fn default() -> Self {
        SwitchboardCodec { inner: ProstCodec::default() }
    }
}

impl<T, U> Codec for SwitchboardCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = MessageDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.inner.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        MessageDecoder { _message: PhantomData }
    }
}

/// Decodes one message; malformed bytes are INVALID_ARGUMENT.
#[derive(Debug, Clone, Default)]
pub struct MessageDecoder<U> {
    _message: PhantomData<U>,
}

impl<U: prost::Message + Default> Decoder for MessageDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|error| malformed_message(&error))
    }
}

/// The status of bytes that are not the expected protobuf message.
pub fn malformed_message(error: &prost::DecodeError) -> Status {
    let details = ErrorDetails::with_error_info(MALFORMED_MESSAGE, ERROR_DOMAIN, std::collections::HashMap::new());
    Status::with_error_details(
        tonic::Code::InvalidArgument,
        format!("the request is not a valid protobuf message of the expected type: {error}"),
        details,
    )
}
