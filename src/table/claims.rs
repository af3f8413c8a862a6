//! Which papers are claimed by an open batch of the Batch API for a column
//! (`doctrove_embed.batch_papers`), as the pending selection needs to know: a claimed paper is
//! sent by no one else for that column, whichever job fills it. The claims are
//! written and dropped by `batch_api::jobs_store`; these reads run as the extension's owner, so
//! a role that embeds needs no right on the table.

use std::collections::HashSet;

use pgrx::prelude::*;

use crate::errors::{internal, UserError};
use crate::pg::identity::as_extension;
use crate::table::target::Target;

/// Whether any paper of the table is in an open batch for the column.
pub fn has_open_claims(target: &Target) -> Result<bool, UserError> {
    as_extension(|| {
        Spi::get_one_with_args::<bool>(
            "SELECT EXISTS (SELECT FROM doctrove_embed.batch_papers WHERE relid = $1::oid::regclass AND embedding_column = $2)",
            &[target.relid.into(), target.names.embedding.clone().into()],
        )
    })
    .map(|found| found.unwrap_or(false))
    .map_err(internal("read doctrove_embed.batch_papers"))
}

/// Which of `ids` are claimed by an open batch for the column, read with a snapshot taken now: a paper whose
/// claim was committed after the statement that locked it began is seen here.
pub fn claimed_among(target: &Target, ids: &[String]) -> Result<HashSet<String>, UserError> {
    as_extension(|| {
        Spi::connect(|client| {
            client
                .select(
                    "SELECT paper_id FROM doctrove_embed.batch_papers WHERE relid = $1::oid::regclass AND embedding_column = $3 \
                     AND paper_id = ANY($2::text[])",
                    None,
                    &[
                        target.relid.into(),
                        ids.to_vec().into(),
                        target.names.embedding.clone().into(),
                    ],
                )?
                .map(|row| row.get::<String>(1))
                .filter_map(|id| id.transpose())
                .collect::<Result<HashSet<String>, _>>()
        })
    })
    .map_err(internal("read doctrove_embed.batch_papers"))
}
