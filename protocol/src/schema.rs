//! The field schemas of every collection (SPEC §4) and the limits on them.
//!
//! A schema is static data: the validator, the Automerge mapping, the OpenAPI
//! document and the console's forms are all generated from these tables, so a
//! field added here appears everywhere at once.

use crate::collection::Collection;

/// Most bytes a record's fields may take, as compact JSON. Checked on every
/// create and on the merged result of every update.
pub const MAX_RECORD_BYTES: usize = 128 * 1024;
/// Default longest single-line string, in characters.
pub const MAX_STR_CHARS: usize = 200;
/// Longest long text, in characters.
pub const MAX_TEXT_CHARS: usize = 20_000;

/// One allowed value of an enum field, with its console labels.
#[derive(Debug, Clone, Copy)]
pub struct EnumOption {
    pub value: &'static str,
    pub ja: &'static str,
    pub en: &'static str,
}

/// What a field holds and how it is stored in the record's Automerge document.
#[derive(Debug, Clone, Copy)]
pub enum FieldKind {
    /// A single-line string; concurrent writes resolve to one value (a conflict).
    Str { max_chars: usize },
    /// An e-mail address (a `Str` with a format check).
    Email,
    /// A phone number (a `Str` of digits, spaces, `+`, `-`, parentheses).
    Phone,
    /// Long text, stored as Automerge Text: edits merge character by character.
    Text { max_chars: usize },
    /// One of a fixed set of values.
    Enum(&'static [EnumOption]),
    /// A whole number within bounds.
    Int { min: i64, max: i64 },
    /// A number within bounds (hours, targets).
    Number { min: f64, max: f64 },
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// The id of a record of the given collection.
    Ref(Collection),
    /// Ids of records of the given collection.
    Refs { to: Collection, max_items: usize },
    /// Short free-form labels.
    Tags { max_items: usize, max_chars: usize },
    /// A list of small objects with their own fields (skills, metrics).
    Objects {
        fields: &'static [FieldDef],
        max_items: usize,
    },
}

/// One field of a collection.
#[derive(Debug, Clone, Copy)]
pub struct FieldDef {
    pub name: &'static str,
    pub ja: &'static str,
    pub en: &'static str,
    pub kind: FieldKind,
    pub required: bool,
}

const fn field(
    name: &'static str,
    ja: &'static str,
    en: &'static str,
    kind: FieldKind,
    required: bool,
) -> FieldDef {
    FieldDef {
        name,
        ja,
        en,
        kind,
        required,
    }
}

const fn opt(value: &'static str, ja: &'static str, en: &'static str) -> EnumOption {
    EnumOption { value, ja, en }
}

const TITLE: FieldDef = field(
    "title",
    "タイトル",
    "Title",
    FieldKind::Str {
        max_chars: MAX_STR_CHARS,
    },
    true,
);
const TEXT: FieldKind = FieldKind::Text {
    max_chars: MAX_TEXT_CHARS,
};
const SHORT: FieldKind = FieldKind::Str {
    max_chars: MAX_STR_CHARS,
};
const TAGS: FieldDef = field(
    "tags",
    "タグ",
    "Tags",
    FieldKind::Tags {
        max_items: 20,
        max_chars: 40,
    },
    false,
);
const COUNT: FieldKind = FieldKind::Int {
    min: 0,
    max: 1_000_000,
};
const HOURS: FieldKind = FieldKind::Number {
    min: 0.0,
    max: 100_000.0,
};

const KNOWLEDGE_CATEGORIES: &[EnumOption] = &[
    opt(
        "worker_management",
        "ワーカーマネジメント",
        "Worker management",
    ),
    opt(
        "customer_communication",
        "顧客コミュニケーション",
        "Customer communication",
    ),
    opt("pr", "広報", "PR"),
    opt("training", "研修", "Training"),
    opt("security", "セキュリティ", "Security"),
    opt("other", "その他", "Other"),
];

const PILOT_STATUS: &[EnumOption] = &[
    opt("planned", "計画中", "Planned"),
    opt("running", "実施中", "Running"),
    opt("completed", "完了", "Completed"),
    opt("cancelled", "中止", "Cancelled"),
];

const WORKER_STATUS: &[EnumOption] = &[
    opt("registered", "登録済み", "Registered"),
    opt("in_training", "研修中", "In training"),
    opt("active", "稼働中", "Active"),
    opt("paused", "休止中", "Paused"),
    opt("left", "退会", "Left"),
];

const TRAINING_AUDIENCE: &[EnumOption] = &[
    opt("workers", "ワーカー", "Workers"),
    opt("mentors", "メンター", "Mentors"),
];

const CUSTOMER_STAGE: &[EnumOption] = &[
    opt("prospect", "見込み", "Prospect"),
    opt("active", "取引中", "Active"),
    opt("dormant", "休眠", "Dormant"),
];

const ORDER_STATUS: &[EnumOption] = &[
    opt("inquiry", "引き合い", "Inquiry"),
    opt("quoted", "見積済み", "Quoted"),
    opt("ordered", "受注", "Ordered"),
    opt("in_progress", "作業中", "In progress"),
    opt("delivered", "納品済み", "Delivered"),
    opt("invoiced", "請求済み", "Invoiced"),
    opt("closed", "完了", "Closed"),
    opt("lost", "失注", "Lost"),
];

const PR_AUDIENCE: &[EnumOption] = &[
    opt("residents", "住民", "Residents"),
    opt("customers", "顧客", "Customers"),
];

const PR_STATUS: &[EnumOption] = &[
    opt("idea", "アイデア", "Idea"),
    opt("planned", "計画済み", "Planned"),
    opt("published", "公開済み", "Published"),
];

const METRIC_FIELDS: &[FieldDef] = &[
    field("name", "指標", "Metric", SHORT, true),
    field(
        "target",
        "目標",
        "Target",
        FieldKind::Number {
            min: -1e12,
            max: 1e12,
        },
        false,
    ),
    field(
        "actual",
        "実績",
        "Actual",
        FieldKind::Number {
            min: -1e12,
            max: 1e12,
        },
        false,
    ),
    field(
        "unit",
        "単位",
        "Unit",
        FieldKind::Str { max_chars: 20 },
        false,
    ),
];

const SKILL_FIELDS: &[FieldDef] = &[
    field(
        "skill",
        "スキル",
        "Skill",
        FieldKind::Str { max_chars: 60 },
        true,
    ),
    field(
        "level",
        "レベル",
        "Level",
        FieldKind::Int { min: 1, max: 5 },
        true,
    ),
    field(
        "assessed_on",
        "評価日",
        "Assessed on",
        FieldKind::Date,
        false,
    ),
];

const KNOWLEDGE: &[FieldDef] = &[
    TITLE,
    field("body", "本文", "Body", TEXT, true),
    field(
        "category",
        "分類",
        "Category",
        FieldKind::Enum(KNOWLEDGE_CATEGORIES),
        true,
    ),
    TAGS,
];

const FAILURE_CASES: &[FieldDef] = &[
    TITLE,
    field("situation", "状況", "Situation", TEXT, false),
    field("what_happened", "起きたこと", "What happened", TEXT, false),
    field("causes", "原因", "Causes", TEXT, false),
    field("countermeasures", "対策", "Countermeasures", TEXT, false),
    field("lessons", "教訓", "Lessons", TEXT, false),
    field(
        "related_pilot",
        "関連パイロット",
        "Related pilot",
        FieldKind::Ref(Collection::PilotResults),
        false,
    ),
    TAGS,
];

const PILOT_RESULTS: &[FieldDef] = &[
    TITLE,
    field("partner", "連携先", "Partner", SHORT, false),
    field("field", "分野", "Field", SHORT, false),
    field(
        "period_start",
        "開始日",
        "Period start",
        FieldKind::Date,
        false,
    ),
    field("period_end", "終了日", "Period end", FieldKind::Date, false),
    field(
        "status",
        "状態",
        "Status",
        FieldKind::Enum(PILOT_STATUS),
        true,
    ),
    field("summary", "概要", "Summary", TEXT, false),
    field(
        "metrics",
        "指標",
        "Metrics",
        FieldKind::Objects {
            fields: METRIC_FIELDS,
            max_items: 50,
        },
        false,
    ),
    field(
        "workers_involved",
        "参加ワーカー数",
        "Workers involved",
        COUNT,
        false,
    ),
    field("lessons", "教訓", "Lessons", TEXT, false),
];

/// The fiscal years a KPI report (and every fiscal-year query) may name.
pub const FISCAL_YEAR_MIN: i64 = 2000;
pub const FISCAL_YEAR_MAX: i64 = 2100;

const KPI_REPORTS: &[FieldDef] = &[
    field(
        "fiscal_year",
        "年度",
        "Fiscal year",
        FieldKind::Int {
            min: FISCAL_YEAR_MIN,
            max: FISCAL_YEAR_MAX,
        },
        true,
    ),
    field("new_hires", "新規雇用数", "New hires", COUNT, false),
    field(
        "pilot_projects",
        "パイロット事業数",
        "Pilot projects",
        COUNT,
        false,
    ),
    field(
        "dx_certified_businesses",
        "DX認定事業者数",
        "DX-certified businesses",
        COUNT,
        false,
    ),
    field(
        "member_municipalities",
        "参加自治体数",
        "Member municipalities",
        COUNT,
        false,
    ),
    field(
        "note",
        "備考",
        "Note",
        FieldKind::Text { max_chars: 5_000 },
        false,
    ),
];

const WORKERS: &[FieldDef] = &[
    field(
        "name",
        "氏名",
        "Name",
        FieldKind::Str { max_chars: 100 },
        true,
    ),
    field(
        "name_kana",
        "ふりがな",
        "Name (kana)",
        FieldKind::Str { max_chars: 100 },
        false,
    ),
    field("email", "メール", "E-mail", FieldKind::Email, false),
    field("phone", "電話番号", "Phone", FieldKind::Phone, false),
    field(
        "status",
        "状態",
        "Status",
        FieldKind::Enum(WORKER_STATUS),
        true,
    ),
    field(
        "hours_per_week",
        "週あたり稼働時間",
        "Hours per week",
        FieldKind::Number {
            min: 0.0,
            max: 168.0,
        },
        false,
    ),
    field("joined_on", "登録日", "Joined on", FieldKind::Date, false),
    field(
        "skills",
        "スキル",
        "Skills",
        FieldKind::Objects {
            fields: SKILL_FIELDS,
            max_items: 100,
        },
        false,
    ),
    field(
        "mentor",
        "メンター",
        "Mentor",
        FieldKind::Ref(Collection::Workers),
        false,
    ),
    field("notes", "メモ", "Notes", TEXT, false),
];

const TRAININGS: &[FieldDef] = &[
    TITLE,
    field(
        "audience",
        "対象",
        "Audience",
        FieldKind::Enum(TRAINING_AUDIENCE),
        true,
    ),
    field("held_on", "実施日", "Held on", FieldKind::Date, false),
    field(
        "attendees",
        "参加者",
        "Attendees",
        FieldKind::Refs {
            to: Collection::Workers,
            max_items: 500,
        },
        false,
    ),
    field("outline", "内容", "Outline", TEXT, false),
];

const MENTORING: &[FieldDef] = &[
    field(
        "mentor",
        "メンター",
        "Mentor",
        FieldKind::Ref(Collection::Workers),
        true,
    ),
    field(
        "mentee",
        "メンティー",
        "Mentee",
        FieldKind::Ref(Collection::Workers),
        true,
    ),
    field("held_on", "実施日", "Held on", FieldKind::Date, false),
    field("notes", "メモ", "Notes", TEXT, false),
];

const CUSTOMERS: &[FieldDef] = &[
    field("organisation", "組織名", "Organisation", SHORT, true),
    field(
        "contact_name",
        "担当者名",
        "Contact name",
        FieldKind::Str { max_chars: 100 },
        false,
    ),
    field("email", "メール", "E-mail", FieldKind::Email, false),
    field("phone", "電話番号", "Phone", FieldKind::Phone, false),
    field(
        "stage",
        "段階",
        "Stage",
        FieldKind::Enum(CUSTOMER_STAGE),
        true,
    ),
    field("notes", "メモ", "Notes", TEXT, false),
];

const ORDERS: &[FieldDef] = &[
    field(
        "customer",
        "顧客",
        "Customer",
        FieldKind::Ref(Collection::Customers),
        false,
    ),
    TITLE,
    field(
        "status",
        "状態",
        "Status",
        FieldKind::Enum(ORDER_STATUS),
        true,
    ),
    field(
        "assignees",
        "担当ワーカー",
        "Assignees",
        FieldKind::Refs {
            to: Collection::Workers,
            max_items: 100,
        },
        false,
    ),
    field(
        "estimated_hours",
        "見積工数",
        "Estimated hours",
        HOURS,
        false,
    ),
    field("actual_hours", "実績工数", "Actual hours", HOURS, false),
    field(
        "amount_jpy",
        "金額（円）",
        "Amount (JPY)",
        FieldKind::Int {
            min: 0,
            max: 1_000_000_000_000,
        },
        false,
    ),
    field("due_on", "納期", "Due on", FieldKind::Date, false),
];

const PR_ITEMS: &[FieldDef] = &[
    TITLE,
    field(
        "audience",
        "対象",
        "Audience",
        FieldKind::Enum(PR_AUDIENCE),
        true,
    ),
    field("channel", "媒体", "Channel", SHORT, false),
    field("planned_on", "予定日", "Planned on", FieldKind::Date, false),
    field("status", "状態", "Status", FieldKind::Enum(PR_STATUS), true),
    field("body", "本文", "Body", TEXT, false),
];

impl Collection {
    /// The fields of this collection, in display order.
    pub fn fields(self) -> &'static [FieldDef] {
        match self {
            Collection::Knowledge => KNOWLEDGE,
            Collection::FailureCases => FAILURE_CASES,
            Collection::PilotResults => PILOT_RESULTS,
            Collection::KpiReports => KPI_REPORTS,
            Collection::Workers => WORKERS,
            Collection::Trainings => TRAININGS,
            Collection::Mentoring => MENTORING,
            Collection::Customers => CUSTOMERS,
            Collection::Orders => ORDERS,
            Collection::PrItems => PR_ITEMS,
        }
    }

    /// The field named `name`, if this collection has one.
    pub fn field(self, name: &str) -> Option<&'static FieldDef> {
        self.fields().iter().find(|f| f.name == name)
    }
}

impl FieldKind {
    /// Whether a list filter `?field=value` makes sense for this kind.
    pub fn is_filterable(&self) -> bool {
        matches!(
            self,
            FieldKind::Str { .. }
                | FieldKind::Email
                | FieldKind::Phone
                | FieldKind::Enum(_)
                | FieldKind::Int { .. }
                | FieldKind::Date
                | FieldKind::Ref(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_unique_and_references_point_the_right_way() {
        for c in Collection::ALL {
            let mut names: Vec<_> = c.fields().iter().map(|f| f.name).collect();
            names.sort_unstable();
            let before = names.len();
            names.dedup();
            assert_eq!(before, names.len(), "duplicate field in {c}");
            for f in c.fields() {
                if let FieldKind::Ref(to) | FieldKind::Refs { to, .. } = f.kind {
                    // A shared record may only point at shared records: a
                    // reference into a local collection would leak its id.
                    assert!(
                        !c.is_shared() || to.is_shared(),
                        "{c}.{} points into local {to}",
                        f.name
                    );
                }
            }
        }
    }
}
