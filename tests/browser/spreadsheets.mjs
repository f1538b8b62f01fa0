// CSV in and out in a real browser (issue 16): the import page takes a file
// Chromium uploads as a form would (multipart, with its own boundary and
// file name), checks it without writing (dry run), refuses a file with a
// bad row with every problem listed by row and column, imports the good
// one, and the list page's "CSVでダウンロード" link gives a file Excel
// opens (a byte order mark, the Japanese headings, the imported rows).
// Started by tests/it/browser.rs (see lib.mjs for its variables).

import { check, newPage, runInChromium, step, submitLogin } from "./lib.mjs";

const A = process.env.YUI_A;
const [adminName, adminPassword] = process.env.YUI_ADMIN.split(":");

const good = "\uFEFF氏名,状態,登録日\r\n青木 一郎,稼働中,2025/4/1\r\n石井 花子,研修中,2025-05-10\r\n";
const bad = "\uFEFF氏名,状態,登録日\r\n青木 一郎,稼働中,2025/4/1\r\n,休眠,2025-13-40\r\n";

async function upload(page, name, text, dryRun) {
  await page.goto(`${A}/records/workers/import`);
  await page.setInputFiles("#file", { name, mimeType: "text/csv", buffer: Buffer.from(text, "utf8") });
  if (dryRun) await page.check("input[name=dry_run]");
  await Promise.all([page.waitForLoadState("load"), page.click("form[enctype='multipart/form-data'] button[type=submit]")]);
  await page.waitForSelector("main h1");
  return await page.textContent("main");
}

async function workerCount(page) {
  await page.goto(`${A}/records/workers`);
  return await page.locator("main table tbody tr").count();
}

await runInChromium(async (browser) => {
  const page = await newPage(browser);
  step("log in to town A as the administrator");
  await page.goto(`${A}/login`);
  await submitLogin(page, adminName, adminPassword);
  const before = await workerCount(page);

  step("a file with a bad row: nothing written, every problem named by row and column");
  let main = await upload(page, "名簿（誤りあり）.csv", bad, false);
  check(main.includes("何も取り込んでいません"), `the page says nothing was imported: ${main.slice(0, 300)}`);
  const problems = await page.locator("section[aria-labelledby=problems] tbody tr").allTextContents();
  check(problems.length >= 3, `at least three problems are listed: ${problems.join(" | ")}`);
  check(problems.every((p) => p.startsWith("3")), `every problem is on row 3 (the header is row 1): ${problems.join(" | ")}`);
  check(problems.some((p) => p.includes("氏名")) && problems.some((p) => p.includes("状態")) && problems.some((p) => p.includes("登録日")),
    `the problems name the columns 氏名, 状態 and 登録日: ${problems.join(" | ")}`);
  check((await workerCount(page)) === before, "no worker was written");

  step("the good file as a dry run: checked, not written");
  main = await upload(page, "名簿.csv", good, true);
  check(main.includes("書き込んでいません") && main.includes("新規 2 件"), `the dry run says it would add 2: ${main.slice(0, 300)}`);
  check((await workerCount(page)) === before, "the dry run wrote nothing");

  step("the good file: imported");
  main = await upload(page, "名簿.csv", good, false);
  check(main.includes("2 行を取り込みました") && main.includes("新規 2 件"), `the page says 2 rows were imported: ${main.slice(0, 300)}`);
  check((await workerCount(page)) === before + 2, "two workers were written");
  check((await page.textContent("main")).includes("石井 花子"), "the list shows an imported worker");

  step("the list's CSV download opens as Excel reads it");
  const href = await page.getAttribute("a[download]:has-text('CSVでダウンロード')", "href");
  check(href, "the list offers a CSV download");
  const answer = await page.request.get(`${A}${href}`);
  check(answer.status() === 200, `the download answers 200 (${answer.status()})`);
  const bytes = await answer.body();
  check(bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf, "the CSV starts with a UTF-8 byte order mark");
  const csv = bytes.toString("utf8");
  check(csv.includes("氏名") && csv.includes("石井 花子") && csv.includes("\r\n"), "the CSV has the Japanese headings, the imported rows and CRLF line ends");
  return "spreadsheets: all checks passed";
});
