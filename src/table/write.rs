//! The one write of vectors, shared by the live path and the collection of Batch API jobs. All
//! of a batch's vectors go in one set-based UPDATE with binary `vector` values, in a
//! subtransaction. When the database refuses that statement for a reason a row causes (a
//! constraint, a value, the table's own trigger: see `UserError::is_caused_by_a_row`), the write
//! is split in halves, each in a subtransaction of its own, down to single rows: every row the
//! database accepts is written, and each refused row comes back with the database's SQLSTATE and
//! message. So the cost stays one statement per batch when nothing is refused, and one refused
//! row costs about 2 log2(n) more. Any other error (a privilege, a full disk, a lock timeout, a
//! deadlock, a serialization failure, a cancel) ends the write with that error and blames no
//! paper. Then the papers the API rejected and the rows the database refused are recorded in
//! `doctrove_embed.failures`, and the written ones forgotten there.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

use crate::errors::{internal, UserError};
use crate::pg::identity::Acting;
use crate::pg::subtransaction::{in_subtransaction, rolled_back};
use crate::pg::vector_datum::{vector_array_datum, vector_bytes};
use crate::table::failures;
use crate::table::target::Target;

/// What a write did.
#[derive(Default)]
pub struct Written {
    /// Rows updated.
    pub rows: i32,
    /// The ids whose vectors were written.
    pub ids: Vec<String>,
    /// Ids the database refused, with why (`SQLSTATE: message`).
    pub refused: Vec<(String, String)>,
}

/// Most papers one batch may hold for vectors of `dims` dimensions (`None`: not yet known, so
/// the largest pgvector allows): the `vector[]` written in one statement must stay under
/// PostgreSQL's 1 GB allocation limit, with room for the array's own header and the ids.
pub fn max_batch(dims: Option<usize>) -> usize {
    const MAX_ALLOC: usize = 0x3fff_ffff;
    let per_paper = vector_bytes(dims.unwrap_or(embed_core::bounds::MAX_VECTOR_DIMS)) + 8;
    (MAX_ALLOC - 64 * 1024) / per_paper
}

/// One UPDATE of `ids` with `vectors`, as `acting` says.
fn update(target: &Target, ids: &[String], vectors: &[Vec<f32>], model: &str, acting: Acting) -> Result<i32, pgrx::spi::Error> {
    let query = target.names.update_embeddings();
    let vector_array = vector_array_datum(target.vector_type, vectors);
    // SAFETY: the datum is a `vector[]` built for exactly this oid.
    let vector_param = unsafe { DatumWithOid::new(vector_array, target.vector_array_type) };
    let mut args: Vec<DatumWithOid> = vec![ids.to_vec().into(), vector_param];
    if target.names.model_version.is_some() {
        args.push(model.to_string().into());
    }
    acting.run(target.owner, || {
        Spi::connect_mut(|client| client.update(query.as_str(), None, &args).map(|t| t.len() as i32))
    })
}

struct Writer<'a> {
    target: &'a Target,
    model: &'a str,
    acting: Acting,
    written: Written,
}

impl Writer<'_> {
    fn write(&mut self, ids: &[String], vectors: &[Vec<f32>]) -> Result<(), UserError> {
        let attempt = in_subtransaction(|| update(self.target, ids, vectors, self.model, self.acting));
        match attempt {
            Ok(Ok(rows)) => {
                self.written.rows += rows;
                self.written.ids.extend_from_slice(ids);
            }
            Ok(Err(e)) => return Err(internal("write embeddings")(e)),
            // A cancel, a privilege, the disk, a lock: the statement's or the server's fault.
            Err(error) if !error.is_caused_by_a_row() => return Err(error),
            Err(error) if ids.len() == 1 => {
                // The message alone: a constraint's DETAIL quotes the whole row.
                let why = format!("the database refused the write: {}: {}", error.sqlstate(), error.message());
                self.written.refused.push((ids[0].clone(), why));
            }
            Err(_) => {
                let half = ids.len() / 2;
                self.write(&ids[..half], &vectors[..half])?;
                self.write(&ids[half..], &vectors[half..])?;
            }
        }
        Ok(())
    }
}

/// Writes `vectors` to the papers `ids`, isolating the rows the database refuses.
fn write_isolating(
    target: &Target,
    ids: &[String],
    vectors: &[Vec<f32>],
    model: &str,
    acting: Acting,
) -> Result<Written, UserError> {
    let mut writer = Writer {
        target,
        model,
        acting,
        written: Written::default(),
    };
    if !ids.is_empty() {
        writer.write(ids, vectors)?;
    }
    Ok(writer.written)
}

/// Tries the write on the first papers of `ids` before anything is paid for, in a
/// subtransaction that is always rolled back, with a stand-in vector of `dims` dimensions. The
/// statement's own faults come back as an error, so nothing is paid for a write that cannot
/// happen: a privilege, a column's type, a row policy, a lock that does not come (any error a row
/// does not cause), and a refusal that two different papers meet word for word, message and
/// detail (a model name too long for its column, a trigger that refuses every update: a refusal
/// of one paper's row says which row, or is met by that paper alone).
pub fn try_write(target: &Target, ids: &[String], dims: Option<usize>, model: &str, acting: Acting) -> Result<(), UserError> {
    let stand_in = vec![vec![1.0f32; dims.unwrap_or(1).max(1)]];
    let mut first_refusal: Option<UserError> = None;
    for id in ids.iter().take(2) {
        let tried = rolled_back(|| {
            update(target, std::slice::from_ref(id), &stand_in, model, acting).map_err(internal("write embeddings"))
        });
        match tried {
            Ok(_) => return Ok(()),
            Err(error) if !error.is_caused_by_a_row() => return Err(error),
            Err(error) => match &first_refusal {
                Some(first) if first.sqlstate() == error.sqlstate() && first.summary() == error.summary() => return Err(error),
                Some(_) => return Ok(()),
                None => first_refusal = Some(error),
            },
        }
    }
    Ok(())
}

/// What writing a batch's answers and recording its failures did.
pub struct Settled {
    /// Rows updated.
    pub written_rows: i32,
    /// The ids whose vectors were written.
    pub written: Vec<String>,
    /// The ids recorded in `doctrove_embed.failures`: rejected by the API or refused by the
    /// database.
    pub failed: Vec<String>,
}

/// Writes `vectors` to the papers `ids` (isolating refused rows), forgets the written papers'
/// past failures, and records the papers the API `rejected` (id, message) and the rows the
/// database refused.
pub fn write_and_record(
    target: &Target,
    ids: &[String],
    vectors: &[Vec<f32>],
    mut rejected: Vec<(String, String)>,
    model: &str,
    acting: Acting,
) -> Result<Settled, UserError> {
    let written = write_isolating(target, ids, vectors, model, acting)?;
    failures::forget(target, &written.ids)?;
    rejected.extend(written.refused);
    let (failed, messages): (Vec<String>, Vec<String>) = rejected.into_iter().unzip();
    failures::record(target, failed.clone(), messages)?;
    Ok(Settled {
        written_rows: written.rows,
        written: written.ids,
        failed,
    })
}
