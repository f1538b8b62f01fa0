//! The collections of SPEC §4: their names, scopes and labels.
//!
//! The scope of a collection is part of the protocol, fixed here in code: a
//! peer cannot change it and no configuration can. `local` collections may hold
//! personal data and never leave the node; `shared` ones are synced with the
//! consortium.

use std::fmt;
use std::str::FromStr;

/// Whether a collection's records may leave the town.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Kept on this node only. May hold personal data.
    Local,
    /// Synced with consortium peers. Must not hold personal data.
    Shared,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Local => "local",
            Scope::Shared => "shared",
        }
    }
}

/// A named kind of record. The set is closed: unknown names are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Collection {
    Knowledge,
    FailureCases,
    PilotResults,
    KpiReports,
    Workers,
    Trainings,
    Mentoring,
    Customers,
    Orders,
    PrItems,
}

impl Collection {
    /// Every collection, shared ones first, in the order of SPEC §4.
    pub const ALL: [Collection; 10] = [
        Collection::Knowledge,
        Collection::FailureCases,
        Collection::PilotResults,
        Collection::KpiReports,
        Collection::Workers,
        Collection::Trainings,
        Collection::Mentoring,
        Collection::Customers,
        Collection::Orders,
        Collection::PrItems,
    ];

    /// The API name (`knowledge`, `failure_cases`, …).
    pub fn name(self) -> &'static str {
        match self {
            Collection::Knowledge => "knowledge",
            Collection::FailureCases => "failure_cases",
            Collection::PilotResults => "pilot_results",
            Collection::KpiReports => "kpi_reports",
            Collection::Workers => "workers",
            Collection::Trainings => "trainings",
            Collection::Mentoring => "mentoring",
            Collection::Customers => "customers",
            Collection::Orders => "orders",
            Collection::PrItems => "pr_items",
        }
    }

    pub fn scope(self) -> Scope {
        match self {
            Collection::Knowledge
            | Collection::FailureCases
            | Collection::PilotResults
            | Collection::KpiReports => Scope::Shared,
            Collection::Workers
            | Collection::Trainings
            | Collection::Mentoring
            | Collection::Customers
            | Collection::Orders
            | Collection::PrItems => Scope::Local,
        }
    }

    pub fn is_shared(self) -> bool {
        self.scope() == Scope::Shared
    }

    /// Japanese label, as the console shows it.
    pub fn label_ja(self) -> &'static str {
        match self {
            Collection::Knowledge => "ナレッジ",
            Collection::FailureCases => "失敗事例",
            Collection::PilotResults => "パイロット成果",
            Collection::KpiReports => "KPI実績",
            Collection::Workers => "住民ワーカー",
            Collection::Trainings => "研修",
            Collection::Mentoring => "メンタリング",
            Collection::Customers => "顧客",
            Collection::Orders => "受発注",
            Collection::PrItems => "広報",
        }
    }

    /// English label.
    pub fn label_en(self) -> &'static str {
        match self {
            Collection::Knowledge => "Knowledge",
            Collection::FailureCases => "Failure cases",
            Collection::PilotResults => "Pilot results",
            Collection::KpiReports => "KPI reports",
            Collection::Workers => "Resident workers",
            Collection::Trainings => "Trainings",
            Collection::Mentoring => "Mentoring",
            Collection::Customers => "Customers",
            Collection::Orders => "Orders",
            Collection::PrItems => "PR items",
        }
    }
}

impl fmt::Display for Collection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The name is not one of the collections of SPEC §4.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown collection {0:?}")]
pub struct UnknownCollection(pub String);

impl FromStr for Collection {
    type Err = UnknownCollection;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Collection::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| UnknownCollection(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_scopes_match_the_spec() {
        for c in Collection::ALL {
            assert_eq!(c.name().parse::<Collection>(), Ok(c));
        }
        let shared: Vec<_> = Collection::ALL
            .into_iter()
            .filter(|c| c.is_shared())
            .map(Collection::name)
            .collect();
        assert_eq!(
            shared,
            ["knowledge", "failure_cases", "pilot_results", "kpi_reports"]
        );
        assert!("Knowledge".parse::<Collection>().is_err());
        assert!("users".parse::<Collection>().is_err());
    }
}
