// Drives the dashboard at BASE/ in a real browser (Debian's chromium, headless) as an operator
// would: log in with the token, see the pipeline, watch a counter rise after an ingest, pause
// and resume a task, deploy and roll back a plugin, and be refused a delete that names its
// dependents. Screenshots go to OUT. Run by tests/all/dashboard.rs, which starts the host.
import { chromium } from "playwright-core";
import { readFileSync, mkdirSync } from "node:fs";

const { BASE, TOKEN, OUT, PLUGIN_FILE } = process.env;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
mkdirSync(OUT, { recursive: true });
const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
const errors = [];
page.on("pageerror", (e) => errors.push(String(e)));
page.on("dialog", (d) => d.accept());
const shot = (name) => page.screenshot({ path: `${OUT}/${name}.png`, fullPage: true });
const step = async (name, f) => {
  try { await f(); } catch (e) { await shot(`failed-${name}`); throw new Error(`${name}: ${e.message}`); }
  await shot(name);
  console.log(`ok: ${name}`);
};
const tab = (name) => page.click(`#tabs button[data-tab=${name}]`);
const task = (name) => page.locator(`tr[data-task="${name}"]`);
const ingest = async (docs) => {
  const r = await fetch(`${BASE}/v1/collections/acme%2Forders/documents`, {
    method: "POST", headers: { Authorization: `Bearer ${TOKEN}` },
    body: docs.map((d) => JSON.stringify(d)).join("\n") });
  if (!r.ok) throw new Error(`ingest: ${r.status} ${await r.text()}`);
};

await step("01-login", async () => {
  await page.goto(`${BASE}/`);
  await page.locator("#login").waitFor({ state: "visible" });
  await page.fill("#token", "wrong");
  await page.click("#login-button");
  await page.locator("#message", { hasText: "refused that token" }).waitFor();
  await page.fill("#token", TOKEN);
  await page.click("#login-button");
  await page.locator("#login").waitFor({ state: "hidden" });
});

await step("02-pipeline-graph", async () => {
  for (const n of ["acme/orders", "acme/customer-totals", "acme/views"])
    await page.locator(`#graph g.node[data-name="${n}"]`).waitFor();
  await page.locator(`#graph g.node.running[data-name="acme/customer-totals"]`).waitFor();
  const edges = await page.locator("#graph path.edge").count();
  if (edges < 2) throw new Error(`the graph has ${edges} edges, not orders -> totals -> views`);
});

await step("03-counter-rises", async () => {
  await tab("tasks");
  const before = Number(await task("acme/customer-totals").locator("td.docs-in").textContent());
  await ingest([{ id: 1001, customer: "zed", amount: 3 }, { id: 1002, customer: "zed", amount: 4 }]);
  await page.waitForFunction((b) => Number(document.querySelector('tr[data-task="acme/customer-totals"] td.docs-in')?.textContent) >= b + 2, before);
});

await step("04-pause", async () => {
  await task("acme/customer-totals").locator("button.pause").click();
  await task("acme/customer-totals").locator("td.state", { hasText: "paused" }).waitFor();
  const held = Number(await task("acme/customer-totals").locator("td.docs-in").textContent());
  await ingest([{ id: 1003, customer: "zed", amount: 5 }]);
  await page.locator(`tr[data-task="acme/customer-totals"] td.lag`, { hasText: "1 docs" }).waitFor();
  const now = Number(await task("acme/customer-totals").locator("td.docs-in").textContent());
  if (now !== held) throw new Error(`a paused task read on: ${held} -> ${now}`);
});

await step("05-resume", async () => {
  await task("acme/customer-totals").locator("button.resume").click();
  await task("acme/customer-totals").locator("td.state", { hasText: "running" }).waitFor();
  await task("acme/customer-totals").locator("td.lag", { hasText: "caught up" }).waitFor();
});

await step("06-deploy", async () => {
  await tab("plugins");
  await page.click(`tr[data-plugin="totals"]`);
  await page.locator("#versions-body tr[data-seq]").first().waitFor();
  const versions = await page.locator("#versions-body tr[data-seq]").count();
  await page.setInputFiles("#deploy-file", { name: "plugin.wasm", mimeType: "application/wasm", buffer: readFileSync(PLUGIN_FILE) });
  await page.click("#deploy");
  await page.locator("#message", { hasText: "deployed version" }).waitFor();
  await page.waitForFunction((n) => document.querySelectorAll("#versions-body tr[data-seq]").length > n, versions);
  await page.locator("#plugin-logs", { hasText: "deployed version" }).waitFor();
});

await step("07-rollback", async () => {
  await page.locator("#versions-body button.rollback").first().click();
  await page.locator("#message", { hasText: "rolled back to version" }).waitFor();
  await page.locator("#versions-body button.diff").first().click();
  await page.locator("#diff tr.diff-changed").first().waitFor();
});

await step("08-delete-refused", async () => {
  await tab("catalog");
  await page.locator(`tr[data-entry="acme/orders"] button.delete`).click();
  await page.locator("#message", { hasText: "used by derivation acme/customer-totals" }).waitFor();
  await page.locator(`tr[data-entry="acme/orders"]`).waitFor();
});

await step("09-tail", async () => {
  await tab("collections");
  await page.locator(`tr[data-collection="acme/orders"] button.tail`).click();
  await page.waitForTimeout(300);
  await ingest([{ id: 1004, customer: "yan", amount: 1 }]);
  await page.locator("#tail", { hasText: '"customer":"yan"' }).waitFor();
});

await browser.close();
if (errors.length) throw new Error("the page threw: " + errors.join("; "));
console.log("dashboard: all steps passed");
