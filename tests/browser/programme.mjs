// The programme's pages in a real browser (issue "What the programme
// needs"): the personal-data guard in a form, the town's daily work views,
// and the KPI draft, publishing and the consortium roll-up with its chart.
// Started by tests/it/browser.rs with the same variables as console.mjs:
//   YUI_A, YUI_B, YUI_ADMIN ("name:password"), YUI_CHROMIUM.
// Prints one line per step; exits non-zero at the first failed check.

import { check, newPage, runInChromium, step, submitLogin } from "./lib.mjs";

const A = process.env.YUI_A;
const B = process.env.YUI_B;
const [adminName, adminPassword] = process.env.YUI_ADMIN.split(":");

async function signedIn(browser, base) {
  const page = await newPage(browser);
  await page.goto(`${base}/login`);
  await submitLogin(page, adminName, adminPassword);
  return page;
}

async function submitForm(page, urlPattern) {
  await Promise.all([page.waitForURL(urlPattern), page.click("form.card button[type=submit]")]);
}

await runInChromium(async (browser) => {
  const page = await signedIn(browser, A);
  const thisYear = new Date();
  const fy = thisYear.getMonth() >= 3 ? thisYear.getFullYear() : thisYear.getFullYear() - 1;
  const joined = `${fy}-05-01`;

  // 1. A worker with a skill (a local record: personal data belongs here).
  step("register a resident worker with a skill");
  await page.goto(`${A}/records/workers/new`);
  await page.fill("#in-name", "川村 さくら");
  await page.fill("#in-name_kana", "かわむら さくら");
  await page.selectOption("#in-status", "active");
  await page.fill("#in-joined_on", joined);
  await page.fill("#in-skills", `[{"skill": "データ入力", "level": 4, "assessed_on": "${joined}"}]`);
  await submitForm(page, /\/records\/workers\/[0-9a-z]+/);
  check((await page.textContent("main")).includes("川村 さくら"), "the worker's page shows the name");

  // 2. The guard: her name in a shared article is refused, next to the field.
  step("her name in a shared article is refused next to the field");
  await page.goto(`${A}/records/knowledge/new`);
  await page.fill("#in-title", "データ入力の研修の振り返り");
  await page.fill("#in-body", "川村さくらさんが講師役を務めた。");
  await page.selectOption("#in-category", "training");
  await page.click("form.card button[type=submit]");
  await page.waitForSelector("#field-body .field-error");
  const finding = await page.textContent("#field-body .field-error");
  check(finding.includes("個人情報") && finding.includes("1〜5文字目"), `the finding names kind and position: ${finding}`);
  check((await page.locator("#override").count()) === 1, "an administrator is offered the override");

  // 3. The daily views show her.
  step("the skill matrix shows her level");
  await page.goto(`${A}/work/skills`);
  const matrix = await page.textContent("table.matrix");
  check(matrix.includes("川村 さくら") && matrix.includes("データ入力"), "worker and skill in the matrix");
  check(matrix.includes("4"), "her level");
  for (const [path, what] of [
    ["/work/orders", "order pipeline"],
    ["/work/training", "training log"],
    ["/work/pr", "PR plan"],
  ]) {
    step(`the ${what} renders`);
    const resp = await page.goto(`${A}${path}`);
    check(resp.status() === 200, `${path}: ${resp.status()}`);
    check((await page.getAttribute("html", "lang")) === "ja", `${path} is in Japanese`);
    check((await page.locator("main h1").count()) === 1, `${path} has its heading`);
  }

  // 4. KPI: the draft counts her as a new hire; publish; the roll-up on
  //    the other town shows this town's figures, the chart and the CSV.
  step("the KPI draft counts the new hire; publish it");
  await page.goto(`${A}/kpi/draft?fiscal_year=${fy}`);
  check((await page.inputValue("#in-new_hires")) === "1", "one new hire in the draft");
  await page.fill("#in-dx_certified_businesses", "1");
  await submitForm(page, /\/kpi\?fiscal_year=/);
  check((await page.locator("main svg[role=img]").count()) === 1, "the roll-up has its chart");
  const rollupA = await page.textContent("main");
  check(rollupA.includes("tateshina"), "this town is in the roll-up");
  const csv = await page.request.get(`${A}/kpi.csv?fiscal_year=${fy}`);
  check(csv.status() === 200 && (await csv.text()).includes(`${fy},tateshina,1,`), "the CSV has the published figures");

  step("town B's roll-up shows the published report after sync");
  const pageB = await signedIn(browser, B);
  let seen = false;
  for (let i = 0; i < 60 && !seen; i++) {
    await pageB.goto(`${B}/kpi?fiscal_year=${fy}`);
    // The per-town table: town, new hires, pilots, DX businesses, members.
    const row = pageB.locator("main table tr", { hasText: "報告済み" }).filter({ hasText: "tateshina" });
    if ((await row.count()) === 1) {
      const cells = (await row.locator("td, th").allTextContents()).map((c) => c.trim());
      seen = cells[0] === "tateshina" && cells[1] === "1" && cells[3] === "1";
    }
    if (!seen) {
      await pageB.waitForTimeout(500);
    }
  }
  check(seen, `town B lists Tateshina's report: ${(await pageB.textContent("main")).replace(/\s+/g, " ").slice(0, 1500)}`);
  check((await pageB.textContent("main")).includes("omachi"), "town B lists itself (not reported)");

  // 5. The audit page: the report went to Omachi, and is in the ledger.
  step("the egress ledger lists the report sent to town B");
  await page.goto(`${A}/audit?peer=omachi`);
  const ledger = await page.textContent("#egress-ledger");
  check(ledger.includes("KPI実績") && ledger.includes("omachi"), `the ledger has the KPI report: ${ledger.slice(0, 300)}`);
  check(!ledger.includes("住民ワーカー"), "no worker record in the ledger");

  return "all checks passed";
});
