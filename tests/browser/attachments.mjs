// Attached files in a real browser (issue 16): on a record's page the
// upload form takes an image Chromium sends as a form would (multipart,
// with its own file name and type), the page lists it with its preview
// (a same-origin <img> under the console's strict CSP, so it must load and
// have a size), the download link gives the same bytes as an attachment
// with nosniff, and a file whose bytes are not its type is refused with the
// reason in Japanese. Started by tests/it/browser.rs (see lib.mjs for its
// variables); YUI_RECORD is the console path of a knowledge record.

import { check, newPage, runInChromium, step, submitLogin } from "./lib.mjs";

const A = process.env.YUI_A;
const RECORD = process.env.YUI_RECORD;
const [adminName, adminPassword] = process.env.YUI_ADMIN.split(":");

// A 4×3 red PNG.
const png = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAQAAAADCAIAAAA7ljmRAAAAEElEQVR4nGP4z8AARww4OQD1MQv1NXv7ggAAAABJRU5ErkJggg==",
  "base64",
);

async function attach(page, name, mimeType, buffer) {
  await page.goto(`${A}${RECORD}`);
  await page.setInputFiles("#attachment-file", { name, mimeType, buffer });
  await Promise.all([
    page.waitForLoadState("load"),
    page.click("section[aria-labelledby=attachments] button[type=submit]"),
  ]);
  await page.waitForSelector("main h1");
  return await page.textContent("main");
}

await runInChromium(async (browser) => {
  const page = await newPage(browser);
  step("log in to town A as the administrator");
  await page.goto(`${A}/login`);
  await submitLogin(page, adminName, adminPassword);

  step("the record page offers the upload form and lists no file yet");
  await page.goto(`${A}${RECORD}`);
  let main = await page.textContent("main");
  check(main.includes("添付ファイル") && main.includes("添付ファイルはありません"), `the page has an empty attachments section: ${main.slice(0, 400)}`);

  step("an image uploaded from the form: listed, with its preview");
  main = await attach(page, "現場写真.png", "image/png", png);
  check(main.includes("ファイルを添付しました"), `the page says the file was attached: ${main.slice(0, 300)}`);
  const rows = await page.locator("section[aria-labelledby=attachments] tbody tr").allTextContents();
  check(rows.length === 1 && rows[0].includes("現場写真.png") && rows[0].includes("保存済み") && rows[0].includes("image/png"),
    `one file, stored, named and typed: ${rows.join(" | ")}`);
  const preview = page.locator("img.preview");
  await preview.waitFor();
  const size = await preview.evaluate(async (img) => {
    if (!img.complete) await new Promise((done) => img.addEventListener("load", done, { once: true }));
    return [img.naturalWidth, img.naturalHeight];
  });
  check(size[0] === 4 && size[1] === 3, `the preview loaded under the strict CSP (natural size ${size})`);

  step("the download gives the same bytes, as an attachment, with nosniff");
  const href = await page.getAttribute("section[aria-labelledby=attachments] a[download]", "href");
  check(href, "the file has a download link");
  const answer = await page.request.get(`${A}${href}`);
  check(answer.status() === 200, `the download answers 200 (${answer.status()})`);
  const headers = answer.headers();
  check(headers["content-disposition"].startsWith("attachment;"), `offered as a download: ${headers["content-disposition"]}`);
  check(headers["x-content-type-options"] === "nosniff", "with nosniff");
  check(Buffer.compare(await answer.body(), png) === 0, "the same bytes");

  step("a page disguised as an image is refused, saying why");
  main = await attach(page, "罠.png", "image/png", Buffer.from("<html><script>alert(1)</script></html>"));
  check(main.includes("この種類のファイルは添付できません"), `the refusal says why: ${main.slice(0, 300)}`);
  await page.goto(`${A}${RECORD}`);
  const after = await page.locator("section[aria-labelledby=attachments] tbody tr").count();
  check(after === 1, `still one file (${after})`);
  return "attachments: all checks passed";
});
