// Following other towns in a real browser (issue 16): on Omachi (town B)
// a user makes a feed token on the フィード page and gets one URL per
// shared collection; an article written on Tateshina's console (town A)
// reaches that feed, fetched with no cookie at all as a feed reader would;
// Omachi's dashboard lists it under "new from other towns" by Tateshina's
// name (立科町) with a link to its page, and no longer on the next visit.
// Started by tests/it/browser.rs (see lib.mjs for its variables).

import { check, newPage, runInChromium, step, submitLogin } from "./lib.mjs";

const A = process.env.YUI_A;
const B = process.env.YUI_B;
const [adminName, adminPassword] = process.env.YUI_ADMIN.split(":");
const title = "他の町の研修レポート（フィード確認）";

async function login(page, base) {
  await page.goto(`${base}/login`);
  await submitLogin(page, adminName, adminPassword);
}

await runInChromium(async (browser) => {
  const pageB = await newPage(browser);
  step("log in to town B: the dashboard's first visit");
  await login(pageB, B);

  step("make a feed token on B's フィード page");
  await Promise.all([pageB.waitForURL((u) => u.pathname === "/feeds"), pageB.click("nav a[href='/feeds']")]);
  check((await pageB.locator("input.feed-url").count()) === 0, "no URL is shown before a token exists");
  await Promise.all([pageB.waitForLoadState("load"), pageB.click("#feed-token-create")]);
  await pageB.waitForSelector("input.feed-url");
  const urls = await pageB.locator("input.feed-url").evaluateAll((inputs) => inputs.map((i) => i.value));
  check(urls.length === 4, `one URL per shared collection: ${urls.join(" ")}`);
  const feedUrl = urls.find((u) => u.includes("/feeds/knowledge.atom?token="));
  check(feedUrl && feedUrl.startsWith(`${B}/`), `a knowledge feed URL on B: ${urls.join(" ")}`);

  // A feed reader: a context of its own, with no cookie of the console.
  const reader = await browser.newContext();
  const empty = await reader.request.get(feedUrl);
  check(empty.status() === 200, `the feed URL works without a session (${empty.status()})`);
  check(empty.headers()["content-type"] === "application/atom+xml; charset=utf-8", `an Atom content type: ${empty.headers()["content-type"]}`);
  const refused = await reader.request.get(feedUrl.replace(/token=.*/, "token=" + "0".repeat(64)));
  check(refused.status() === 401, `a wrong token is refused (${refused.status()})`);

  step("write an article on town A's console");
  const pageA = await newPage(browser);
  await login(pageA, A);
  await pageA.goto(`${A}/records/knowledge/new`);
  await pageA.fill("#in-title", title);
  await pageA.fill("#in-body", "模擬業務から始めて、**２週間**で本番の受注に入る。");
  await pageA.selectOption("#in-category", "training");
  await Promise.all([pageA.waitForURL(/\/records\/knowledge\/[0-9A-Z]+/), pageA.click("form.card button[type=submit]")]);
  const recordPath = new URL(pageA.url()).pathname;

  step("the article reaches B's feed");
  let xml = "";
  for (let i = 0; i < 60 && !xml.includes(title); i++) {
    const answer = await reader.request.get(feedUrl);
    check(answer.status() === 200, `the feed answers 200 (${answer.status()})`);
    xml = await answer.text();
    if (!xml.includes(title)) {
      await pageB.waitForTimeout(500);
    }
  }
  check(xml.includes(title), "the feed has the article");
  check(xml.includes("<name>立科町</name>"), "the entry names its town");
  check(xml.includes(`${B}${recordPath}`), "the entry links to the record's page on B");
  check(xml.includes("模擬業務から始めて、２週間で本番の受注に入る。"), "the summary is the plain text of the Markdown body");
  await reader.close();

  step("B's dashboard lists it as new from another town, by the town's name");
  await pageB.goto(`${B}/`);
  const rows = await pageB.locator("#news-list tbody tr").allTextContents();
  check(rows.length === 1, `one new record: ${rows.join(" | ")}`);
  check(rows[0].includes("立科町") && rows[0].includes("ナレッジ") && rows[0].includes(title), `the row names the town, the collection and the title: ${rows[0]}`);
  await Promise.all([pageB.waitForURL((u) => u.pathname === recordPath), pageB.click(`#news-list a[href='${recordPath}']`)]);
  check((await pageB.textContent("main")).includes(title), "the link opens the record on B");

  step("the next visit starts empty");
  await pageB.goto(`${B}/`);
  check((await pageB.locator("#news-list").count()) === 0, "no list on the next visit");
  check((await pageB.locator("#no-news").count()) === 1, "the dashboard says nothing new arrived");
  return "feeds: all checks passed";
});
