#!/usr/bin/env bash
# Loads a few realistic records, drawn from the programme's own documents,
# into a running Yui node through its API.
#
#   yui serve &                      # or: cargo run --release --bin yui -- serve
#   examples/seed-records.sh         # uses ./yui-data/api-token and 127.0.0.1:7480
#
# Environment: YUI_API (default http://127.0.0.1:7480), YUI_DATA_DIR (default ./yui-data).
set -euo pipefail
api="${YUI_API:-http://127.0.0.1:7480}"
token="$(cat "${YUI_DATA_DIR:-./yui-data}/api-token")"

post() { # collection, JSON body → prints the new record's id
  curl -sS --fail-with-body -X POST "$api/api/v1/records/$1" \
    -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    --data-binary @- | sed -n 's/^{"id":"\([0-9a-z]*\)".*/\1/p'
}

pilot=$(post pilot_results <<'JSON'
{"fields": {
  "title": "立科 WORK TRIP：オフサイトミーティング・開発合宿の誘致",
  "partner": "首都圏の企業",
  "field": "企業進出型テレワーク",
  "period_start": "2023-04-01", "period_end": "2024-03-31",
  "status": "completed",
  "summary": "オフサイトミーティングや開発合宿をきっかけに、住民ワーカーへの業務発注に至った事例が4件あった。",
  "metrics": [{"name": "住民ワーカーへの発注件数", "target": 3, "actual": 4, "unit": "件"}],
  "workers_involved": 6,
  "lessons": "誘致の競争力を高めるため、企業向けの地域体験プログラムが必要。"
}}
JSON
)
echo "pilot_results  $pilot"

post failure_cases <<JSON >/dev/null
{"fields": {
  "title": "おためしナガノ（おためし立科テレワーク事業）の停止",
  "situation": "企業と町の接点の一つとして、おためしテレワークの参加者を誘致してきた。",
  "what_happened": "コロナ禍以降、参加希望者が企業業務ではなく移住の意向で参加する傾向が強まり、令和5年度はマッチングが成立しなかった。",
  "causes": "事業の狙い（住民ワーカーへの業務発注）と参加者の動機（移住の下見）がずれていた。",
  "countermeasures": "事業を停止し、オフサイトミーティングや開発合宿の誘致（WORK TRIP）に力を移した。",
  "lessons": "住民ワーカーの業務拡大には、中規模以上の企業とのマッチングが効果的である。",
  "related_pilot": "$pilot",
  "tags": ["マッチング", "移住", "企業誘致"]
}}
JSON
echo "failure_cases  (おためしナガノ)"

post knowledge <<'JSON' >/dev/null
{"fields": {
  "title": "ワーカーマネジメント業務の進め方",
  "body": "住民ワーカーで構成したチームに、ワーカーマネジメント・顧客コミュニケーション・広報の3業務を委託する。ワーカーマネジメントでは、スキルの可視化、模擬業務による初動支援、ワーカー研修、メンター研修、メンタリングの調整を行う。各業務から1名ずつが隔週の定例会に出て、進捗と課題を共有する。",
  "category": "worker_management",
  "tags": ["研修", "スキル", "定例会"]
}}
JSON
echo "knowledge      (ワーカーマネジメント)"

post kpi_reports <<'JSON' >/dev/null
{"fields": {
  "fiscal_year": 2024, "new_hires": 4, "pilot_projects": 1,
  "dx_certified_businesses": 0, "member_municipalities": 3,
  "note": "当該年度目標値：新規雇用者数15人、パイロットプロジェクト3件、認定DX制度登録事業者1社、コンソーシアム参加自治体4。"
}}
JSON
echo "kpi_reports    (FY2024)"

# Local records: personal data, never sent to other towns.
worker=$(post workers <<'JSON'
{"fields": {
  "name": "山田 花子", "name_kana": "やまだ はなこ", "status": "active",
  "hours_per_week": 15, "joined_on": "2023-06-01",
  "skills": [{"skill": "データ入力", "level": 4}, {"skill": "Excel", "level": 3}]
}}
JSON
)
echo "workers        $worker (local)"
customer=$(post customers <<'JSON'
{"fields": {"organisation": "株式会社サンプル", "contact_name": "佐藤 一郎", "stage": "active"}}
JSON
)
post orders <<JSON >/dev/null
{"fields": {
  "customer": "$customer", "title": "紙資料のデータ化", "status": "in_progress",
  "assignees": ["$worker"], "estimated_hours": 20, "amount_jpy": 60000, "due_on": "2024-07-31"
}}
JSON
echo "orders         (local)"
