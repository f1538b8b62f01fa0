//! Rules a record write checks against other records, inside the writer's
//! transaction: references point at live records of the right collection,
//! and a town has at most one KPI report per fiscal year.

use rusqlite::{Connection, OptionalExtension, params};
use yui_protocol::{Collection, RecordView};

use crate::error::{Error, Result};

pub(super) fn check_references(
    conn: &Connection,
    refs: &[(&'static str, Collection, String)],
) -> Result<()> {
    let mut errors = Vec::new();
    for (field, to, id) in refs {
        let found: Option<(String, bool)> = conn
            .query_row(
                "SELECT collection, deleted FROM records WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let problem = match found {
            None => Some(format!("no {to} record has id {id}")),
            Some((c, _)) if c != to.name() => {
                Some(format!("{id} is a {c} record, not a {to} record"))
            }
            Some((_, true)) => Some(format!("{to} record {id} is deleted")),
            Some(_) => None,
        };
        if let Some(message) = problem {
            errors.push(yui_protocol::FieldError {
                field: (*field).to_owned(),
                code: "invalid_reference",
                message,
            });
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Validation(yui_protocol::ValidationErrors(errors)))
    }
}

pub(super) fn check_one_kpi_report_per_year(
    conn: &Connection,
    town: &str,
    view: &RecordView,
    except: Option<&str>,
) -> Result<()> {
    let Some(year) = view.fields.get("fiscal_year").and_then(|v| v.as_i64()) else {
        return Ok(());
    };
    let existing: Option<String> = conn
        .query_row(
            "SELECT id FROM records WHERE collection = 'kpi_reports' AND town = ?1 AND deleted = 0
             AND json_extract(view, '$.fields.fiscal_year') = ?2 AND id != ?3",
            params![town, year, except.unwrap_or("")],
            |r| r.get(0),
        )
        .optional()?;
    match existing {
        Some(id) => Err(Error::Conflict(format!(
            "town {town} already has a KPI report for fiscal year {year} (record {id}); update that one instead"
        ))),
        None => Ok(()),
    }
}
