//! ApiVersions: which APIs and versions this broker serves, straight from the router's table,
//! and (v3+) the features it supports and has finalized: only `transaction.version`
//! (`weir.transaction.version`, default 2), which tells clients that know KIP-890 part 2 (the
//! Java client from 4.0) to use it. The finalized-features epoch is fixed at 1: the level is a
//! static property, so it never changes while a broker runs.

use crate::connection::RequestContext;
use crate::router::{SUPPORTED, advertised};
use crate::state::Broker;
use std::sync::Arc;
use weir_protocol::ErrorCode;
use weir_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use weir_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

super::always_responds!(ApiVersionsRequest);

/// The feature clients negotiate transactions by (KIP-890).
const TRANSACTION_VERSION: &str = "transaction.version";

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    _request: ApiVersionsRequest,
) -> ApiVersionsResponse {
    let mut response = response(ErrorCode::NONE);
    response.supported_features = vec![SupportedFeatureKey {
        name: TRANSACTION_VERSION.into(),
        min_version: 0,
        max_version: 2,
        ..SupportedFeatureKey::default()
    }];
    let level = broker.config().transaction_version;
    if level > 0 {
        response.finalized_features_epoch = 1;
        response.finalized_features = vec![FinalizedFeatureKey {
            name: TRANSACTION_VERSION.into(),
            max_version_level: level,
            min_version_level: level,
            ..FinalizedFeatureKey::default()
        }];
    }
    response
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
