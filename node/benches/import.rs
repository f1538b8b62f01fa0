//! CSV import benchmark (issue 16): 10,000 rows of a worker roster as
//! Japanese Excel saves it (Shift_JIS), imported into an empty node.
//!
//! ```text
//! cargo bench -p yui-node --bench import                  # 10,000 rows
//! cargo bench -p yui-node --bench import -- --rows 2000   # quick
//! ```
//!
//! Figures printed, each the import use case the API, the console and
//! `yui import` call (`yui_node::import::import`, in this process, on a
//! real data directory; no HTTP):
//!
//! 1. The same file with its LAST row bad: how long the refusal takes, the
//!    problems it names, and that nothing was written (the collection's
//!    count and the database's change feed before and after).
//! 2. A dry run of the good file (every check, no write).
//! 3. The import of the good file: time, rows per second, and the count.
//! 4. The collection exported as CSV (`export::collection_csv`), and that
//!    export imported back: every row unchanged, nothing written.
//!
//! Options (also as environment variables, e.g. `YUI_BENCH_ROWS`):
//! `--rows 10000`, `--keep` (keep the scratch directory).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use yui_node::accounts::{Principal, Role};
use yui_node::error::Error;
use yui_node::import::import;
use yui_node::node::Node;
use yui_protocol::Collection;
use yui_protocol::spreadsheet::Lang;
use yui_tests::bench::{Given, in_scratch_dir, whole_number};
use yui_tests::rng::SplitMix64 as Rng;
use yui_tests::town::init_data_dir;

struct Opts {
    rows: usize,
    keep: bool,
}

fn parse_opts() -> Result<Opts> {
    let given = Given::read(
        "YUI_BENCH_",
        &["ROWS"],
        &["KEEP"],
        "options: --rows 10000 (rows in the file), --keep (keep the scratch directory)",
    )?;
    let mut o = Opts {
        rows: 10_000,
        keep: given.flag("keep"),
    };
    for (name, value) in &given.values {
        match name.as_str() {
            "rows" => o.rows = whole_number(value)?.max(1),
            other => bail!("unknown option --{other}; try --help"),
        }
    }
    Ok(o)
}

const FAMILY: [&str; 8] = [
    "佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村",
];
const GIVEN: [&str; 8] = [
    "花子",
    "一郎",
    "美咲",
    "健太",
    "さくら",
    "大輔",
    "陽子",
    "翔太",
];
const KANA: [&str; 8] = [
    "さとう",
    "すずき",
    "たかはし",
    "たなか",
    "いとう",
    "わたなべ",
    "やまもと",
    "なかむら",
];
const STATUS: [&str; 5] = ["稼働中", "研修中", "登録済み", "休止中", "退会"];
const SKILLS: [&str; 6] = [
    "データ入力",
    "翻訳",
    "校正",
    "経理補助",
    "Webサイト更新",
    "電話応対",
];

/// A roster of `rows` workers as Excel saves it: Japanese headings,
/// choices by label, dates as Excel writes them back, two skills in one
/// cell, a note with a line break; the last row's status spoiled when
/// `bad_last`.
fn roster(rows: usize, bad_last: bool, rng: &mut Rng) -> String {
    let mut out =
        String::from("氏名,ふりがな,電話番号,状態,週あたり稼働時間,登録日,スキル,メモ\r\n");
    for i in 0..rows {
        let pick = |rng: &mut Rng, n: usize| rng.below(n);
        let (f, g) = (pick(rng, 8), pick(rng, 8));
        let status = if bad_last && i + 1 == rows {
            "引退"
        } else {
            STATUS[pick(rng, 5)]
        };
        let (s1, s2) = (pick(rng, 6), pick(rng, 6));
        out.push_str(&format!(
            "{} {}{i},{} {},0267-{:02}-{:04},{status},{},{}/{}/{},\"スキル={}; レベル={}; 評価日=2025/10/1\nスキル={}; レベル={}\",\"在宅で午前中の作業を希望。\n面談は月に一度。\"\r\n",
            FAMILY[f],
            GIVEN[g],
            KANA[f],
            KANA[g],
            pick(rng, 100),
            i % 10_000,
            5 + pick(rng, 30),
            2020 + pick(rng, 6),
            1 + pick(rng, 12),
            1 + pick(rng, 28),
            SKILLS[s1],
            1 + pick(rng, 5),
            SKILLS[s2],
            1 + pick(rng, 5),
        ));
    }
    out
}

fn shift_jis(text: &str) -> Result<Vec<u8>> {
    let (bytes, _, unmappable) = encoding_rs::SHIFT_JIS.encode(text);
    if unmappable {
        bail!("the roster has a character Shift_JIS cannot hold");
    }
    Ok(bytes.into_owned())
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

async fn count(node: &Node) -> Result<u64> {
    Ok(node
        .store
        .counts()
        .await?
        .get(&Collection::Workers)
        .copied()
        .unwrap_or(0))
}

async fn bench(o: &Opts, root: &Path) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("# Yui CSV import benchmark (issue 16)");
    println!(
        "{} rows of workers as Shift_JIS, {cores} cores, data in {}",
        o.rows,
        root.display()
    );
    let data_dir = init_data_dir(&root.join("town"), "benchtown", "ベンチ町")?;
    let node = Node::open(data_dir, false)?;
    let staff = Principal {
        user: "bench".into(),
        role: Role::Editor,
    };
    let good = shift_jis(&roster(o.rows, false, &mut Rng(16)))?;
    let bad = shift_jis(&roster(o.rows, true, &mut Rng(16)))?;
    println!(
        "file: {:.1} MB ({} bytes)",
        good.len() as f64 / 1e6,
        good.len()
    );

    // 1. The last row bad: refused whole, nothing written.
    let (before, seq_before) = (count(&node).await?, *node.store.watch_seq().borrow());
    let t = Instant::now();
    let refused = import(&node, &staff, Collection::Workers, &bad, false).await;
    let refusal = t.elapsed();
    let Err(Error::ImportRejected { problems, total }) = refused else {
        bail!("the file with a bad last row was not refused");
    };
    let (after, seq_after) = (count(&node).await?, *node.store.watch_seq().borrow());
    let first = problems
        .first()
        .ok_or_else(|| anyhow!("no problem listed"))?;
    println!(
        "1. bad last row: refused in {} with {total} problem (row {}, {}: {}); workers before {before}, after {after}; change feed position before {seq_before}, after {seq_after}",
        secs(refusal),
        first.row,
        first.column.as_deref().unwrap_or("-"),
        first.code
    );
    if after != before || seq_after != seq_before {
        bail!("the refused import wrote something");
    }

    // 2. A dry run.
    let t = Instant::now();
    let checked = import(&node, &staff, Collection::Workers, &good, true).await?;
    println!(
        "2. dry run: {} ({} rows would be created); workers now {}",
        secs(t.elapsed()),
        checked.created,
        count(&node).await?
    );

    // 3. The import.
    let t = Instant::now();
    let done = import(&node, &staff, Collection::Workers, &good, false).await?;
    let took = t.elapsed();
    let n = count(&node).await?;
    println!(
        "3. import: {} for {} rows ({:.0} rows/s, {}); workers now {n}",
        secs(took),
        done.rows,
        done.rows as f64 / took.as_secs_f64(),
        done.encoding
    );
    if n != o.rows as u64 || done.created != o.rows {
        bail!("expected {} workers, found {n}", o.rows);
    }

    // 4. Export, and the export imported back.
    let t = Instant::now();
    let csv = yui_node::export::collection_csv(&node.store, Collection::Workers, Lang::Ja).await?;
    let exported = t.elapsed();
    let t = Instant::now();
    let again = import(&node, &staff, Collection::Workers, csv.as_bytes(), false).await?;
    println!(
        "4. export: {} ({:.1} MB); imported back in {}: {} created, {} updated, {} unchanged; workers now {}",
        secs(exported),
        csv.len() as f64 / 1e6,
        secs(t.elapsed()),
        again.created,
        again.updated,
        again.unchanged,
        count(&node).await?
    );
    if again.unchanged != o.rows {
        bail!("the export did not import back unchanged");
    }
    node.store.close();
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let o = parse_opts()?;
    in_scratch_dir("yui-bench-import", o.keep, |root| async move {
        bench(&o, &root).await
    })
    .await
}
