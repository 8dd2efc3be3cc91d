//! Cursor pagination, the same on every list: `limit` (1–100, default 10) and
//! `starting_after` (an id from the previous page); `{data, has_more, next_cursor}` back.

use billing_app::ports::{Page, PageRequest};
use serde::Serialize;
use utoipa::ToSchema;

use crate::extract::key_text;
use crate::problem::Problem;
use billing_domain::kernel::error::ErrorCode;

pub const DEFAULT_LIMIT: usize = 10;
pub const MAX_LIMIT: usize = 100;

pub fn page_request(
    limit: Option<i64>,
    starting_after: Option<String>,
) -> Result<PageRequest, Problem> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT as i64);
    if !(1..=MAX_LIMIT as i64).contains(&limit) {
        return Err(Problem::invalid(
            ErrorCode::InvalidLimit,
            "limit",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    Ok(PageRequest {
        starting_after: key_text(starting_after, "starting_after")?.filter(|s| !s.is_empty()),
        ..PageRequest::first(limit as usize)
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct List<T> {
    pub object: &'static str,
    pub data: Vec<T>,
    /// More may follow. A filter served by no key or index examines at most 1,000 items
    /// per request, so a filtered page can be short, even empty, and still have more.
    pub has_more: bool,
    /// Pass as `starting_after` to get the next page; null on the last page. After a
    /// bounded scan it names the last item examined, which need not be in `data`.
    pub next_cursor: Option<String>,
}

impl<T> List<T> {
    /// Wraps a page, mapping each item to its API form; `id` gives the cursor, unless the
    /// scan spent its budget past the last item: then it resumes where it stopped.
    pub fn from_page<U>(page: Page<U>, id: impl Fn(&U) -> String, view: impl Fn(U) -> T) -> Self {
        let next_cursor = page.next_cursor(id);
        Self {
            object: "list",
            has_more: page.has_more,
            next_cursor,
            data: page.items.into_iter().map(view).collect(),
        }
    }
}
