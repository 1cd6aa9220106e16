//! What the provider readers are checked against (unit tests and the fuzz targets, never the module):
//! each provider's general readers alone, without the skimmer's fast paths and the stream templates, and
//! serde's reading of the provider types with hand-written tape readers (`codec/json/reference.rs` has the
//! rest).

use super::{provider, FrameOutcome, StreamState};
use crate::call::{Request, Response, Route};
use crate::stream::Frame;

/// Read the request body with the provider's general reader only.
pub fn request(route: &Route, body: &[u8], req: &mut Request) {
    provider(route.api).request(route, body, req);
}

/// Read one streamed frame with the provider's general reader only (`providers::frame` without the
/// template replay and the fast path).
pub fn frame(
    route: &Route,
    frame: &Frame<'_>,
    st: &mut StreamState,
    resp: &mut Response,
) -> FrameOutcome {
    st.frames = st.frames.saturating_add(1);
    st.template.clear();
    provider(route.api).frame(route, frame, st, resp)
}

/// serde's reading of the provider types whose tape readers are written by hand (the rest derive theirs
/// through `json_struct!`).
mod deserialize {
    use crate::codec::json::lenient::{Lenient, Raw};
    use crate::providers::bedrock::RequestBody;
    use crate::providers::openai::Present;
    use crate::providers::openai_responses::{Input, InputItem};
    use serde::de::Error;
    use serde::{Deserialize, Deserializer};
    use serde_json::value::RawValue;

    /// A string (one user message) or a list of items, from the value's raw text.
    impl<'de> Deserialize<'de> for Input {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let raw: &'de RawValue = <&'de RawValue>::deserialize(d)?;
            let text = raw.get();
            let mut input = Input::default();
            if text.starts_with('"') {
                let s: String = serde_json::from_str(text).map_err(D::Error::custom)?;
                input.messages.push(("user".to_owned(), s));
            } else if text.starts_with('[') {
                let items: Vec<Lenient<InputItem<'_>>> =
                    serde_json::from_str(text).map_err(D::Error::custom)?;
                input.push_items(items.into_iter().filter_map(Lenient::get));
            }
            Ok(input)
        }
    }

    impl<'de: 'a, 'a> Deserialize<'de> for Present<'a> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            Raw::deserialize(d).map(|r| Present(Some(r)))
        }
    }

    /// The same object read twice, as the model's request and as Converse's `inferenceConfig` names.
    impl<'de: 'a, 'a> Deserialize<'de> for RequestBody<'a> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let raw: &'de RawValue = Deserialize::deserialize(d)?;
            Ok(RequestBody {
                body: serde_json::from_str(raw.get()).map_err(D::Error::custom)?,
                top: serde_json::from_str(raw.get()).map_err(D::Error::custom)?,
            })
        }
    }
}
