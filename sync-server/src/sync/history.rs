//! `GET /v1/customers/{id}/bills`: one customer's bills from every store of
//! the device's tenant, newest first, a page at a time.
//!
//! Pulls carry only the device's own store's bills; a cashier looking up a
//! regular who also shops elsewhere asks for this. The answer is read-only
//! and current: a device shows it and does not keep it (another store's
//! bills can only change at that store, and pulls would never bring those
//! changes here). The tenant comes from the token, so a customer of
//! another tenant simply has no bills.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use serde_json::value::RawValue;
use till_core::sync::protocol::{
    HistoryPage, HistoryRequest, DEFAULT_HISTORY_PAGE, MAX_HISTORY_PAGE,
};
use uuid::Uuid;

use super::page_limit;
use crate::auth::DeviceScope;
use crate::error::ApiError;
use crate::AppState;

/// `GET /v1/customers/{id}/bills?after=T&limit=N`.
pub async fn customer_bills(
    State(state): State<AppState>,
    scope: DeviceScope,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<HistoryRequest>, QueryRejection>,
) -> Result<Json<HistoryPage<Box<RawValue>>>, ApiError> {
    let Path(customer) = path.map_err(|_| ApiError::BadRequest("bad customer id".into()))?;
    let Query(request) = query?;
    let customer = customer
        .parse::<Uuid>()
        .map_err(|_| ApiError::BadRequest("customer id is not a UUID".into()))?
        .to_string();
    let after = request
        .after
        .map(|a| {
            a.parse::<Uuid>().map(|id| id.to_string()).map_err(|_| {
                ApiError::BadRequest("after is not a position this server gave".into())
            })
        })
        .transpose()?;
    let limit = page_limit(request.limit, DEFAULT_HISTORY_PAGE, MAX_HISTORY_PAGE)?;
    let page = state
        .storage
        .customer_bills(&scope, &customer, after, limit)
        .await?;
    tracing::info!(bills = page.bills.len(), "customer bills");
    Ok(Json(page))
}
