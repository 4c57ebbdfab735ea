//! ApiVersions: which APIs and versions this broker serves, straight from the router's table.

use crate::connection::RequestContext;
use crate::router::{SUPPORTED, advertised};
use crate::state::Broker;
use std::sync::Arc;
use weir_protocol::ErrorCode;
use weir_protocol::messages::api_versions_response::ApiVersion;
use weir_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

super::always_responds!(ApiVersionsRequest);

pub(crate) async fn handle(
    _broker: &Arc<Broker>,
    _ctx: &RequestContext,
    _request: ApiVersionsRequest,
) -> ApiVersionsResponse {
    response(ErrorCode::NONE)
}

/// The response body; also used, at v0, to answer an ApiVersions version this broker does not
/// know, which is how a client learns the versions it can use.
pub(crate) fn response(error: ErrorCode) -> ApiVersionsResponse {
    ApiVersionsResponse {
        error_code: error.code(),
        api_keys: SUPPORTED
            .iter()
            .map(|(key, range)| {
                let range = advertised(*key, *range);
                ApiVersion {
                    api_key: *key as i16,
                    min_version: range.min,
                    max_version: range.max,
                    ..ApiVersion::default()
                }
            })
            .collect(),
        ..ApiVersionsResponse::default()
    }
}
