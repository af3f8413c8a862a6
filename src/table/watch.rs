//! The watch triggers of the papers table (built by `PapersTable::watch_triggers`): installing
//! and dropping them. The wake-up at commit that the statement trigger asks for is in
//! `pg::at_commit`.

use pgrx::prelude::*;

use crate::errors::UserError;
use crate::pg::ddl::run_ddl;
use crate::pg::identity::with_catalog_search_path;
use crate::table::target::Target;

/// Drops trigger `name` of the papers table when it exists (quietly, unlike DROP IF EXISTS).
fn drop_trigger_if_present(target: &Target, name: &str) -> Result<(), UserError> {
    let exists = with_catalog_search_path(|| {
        Spi::get_one_with_args::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = $1 AND tgname = $2)",
            &[target.relid.into(), name.into()],
        )
    })
    .ok()
    .flatten()
    .unwrap_or(false);
    if exists {
        run_ddl(&target.names.drop_trigger(name), "drop the trigger")?;
    }
    Ok(())
}

/// Installs (or reinstalls) the watch triggers. Idempotent.
pub fn watch(target: &Target) -> Result<(), UserError> {
    for (name, create) in target.names.watch_triggers() {
        drop_trigger_if_present(target, &name)?;
        run_ddl(&create, "install the trigger")?;
    }
    Ok(())
}

/// Removes the watch triggers.
pub fn unwatch(target: &Target) -> Result<(), UserError> {
    for (name, _) in target.names.watch_triggers() {
        drop_trigger_if_present(target, &name)?;
    }
    Ok(())
}
