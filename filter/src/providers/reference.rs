//! What the fast paths are checked against (unit tests and the fuzz targets, never the module): each
//! provider's general readers alone, without the skimmer's fast paths and the stream templates.

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
