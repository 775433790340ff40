// End-to-end test of the demo page in a real headless Chromium (Debian's package), driven by
// playwright-core. Usage: node demo.mjs HOST:PORT [--compression]
//
// For each transport (WebSocket, then ?transport=sse) the page is opened through a small TCP
// proxy that this script controls, so it can make "the server" drop the page's connection
// and refuse reconnects for a while. It checks that:
//   1. a message published over HTTP shows up on the page;
//   2. after the connection is dropped and messages are published while the page is away,
//      the page reconnects, resumes from its last id, and shows every id exactly once.
// With --compression (the server runs with it), the page's WebSocket must have negotiated
// permessage-deflate, a large broadcast must arrive intact, and a large message must
// round-trip through /echo compressed both ways.
import net from "node:net";
import { chromium } from "playwright-core";

const target = process.argv[2];
const compression = process.argv.includes("--compression");
if (!target) {
  console.error("usage: node demo.mjs HOST:PORT [--compression]");
  process.exit(2);
}
const [host, port] = [target.slice(0, target.lastIndexOf(":")), Number(target.slice(target.lastIndexOf(":") + 1))];
const base = `http://${target}`;
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const STEP_TIMEOUT = 15000;

// A proxy in front of the server: `drop()` cuts every proxied connection and refuses new
// ones until `restore()`.
function startProxy() {
  const sockets = new Set();
  let refusing = false;
  const server = net.createServer((client) => {
    if (refusing) {
      client.destroy();
      return;
    }
    const upstream = net.connect(port, host);
    sockets.add(client);
    sockets.add(upstream);
    const done = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("error", done).on("close", done);
    upstream.on("error", done).on("close", done);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      resolve({
        url: `http://127.0.0.1:${server.address().port}`,
        drop() {
          refusing = true;
          for (const s of sockets) s.destroy();
          sockets.clear();
        },
        restore() {
          refusing = false;
        },
        close() {
          server.close();
        },
      });
    });
  });
}

async function publish(channel, text) {
  const r = await fetch(`${base}/publish/${encodeURIComponent(channel)}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(text),
  });
  if (!r.ok) throw new Error(`publish: HTTP ${r.status}`);
  return (await r.json()).id;
}

async function idsOnPage(page) {
  return page.$$eval("#log li[data-id]", (lis) => lis.map((li) => Number(li.dataset.id)));
}

function check(cond, what) {
  if (!cond) throw new Error(what);
  console.log(`ok - ${what}`);
}

// The page's own WebSocket (the demo's `conn`) negotiated permessage-deflate; a broadcast
// above --compression-min-bytes reaches it; and Chromium's compressed messages round-trip
// through /echo.
async function checkCompression(page, channel) {
  const ext = await page.evaluate(() => conn.extensions);
  check(ext.includes("permessage-deflate"), `ws: the page's WebSocket negotiated compression (${ext})`);
  const big = `a longer message, compressed once for every subscriber: ${"tick tock ".repeat(200)}`;
  const id = await publish(channel, big);
  await page.waitForSelector(`#log li[data-id='${id}']`, { timeout: STEP_TIMEOUT });
  const shown = await page.textContent(`#log li[data-id='${id}'] .data`);
  check(shown === big, `ws: a ${big.length}-byte compressed broadcast is shown intact`);
  const echo = await page.evaluate(
    (timeout) =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(`ws://${location.host}/echo`);
        const sent = JSON.stringify(Array.from({ length: 3000 }, (_, i) => ({ id: i, ok: i % 2 === 0 })));
        const t = setTimeout(() => reject(new Error("no echo in time")), timeout);
        ws.onopen = () => ws.send(sent);
        ws.onmessage = (e) => {
          clearTimeout(t);
          ws.close();
          resolve({ extensions: ws.extensions, same: e.data === sent, length: sent.length });
        };
        ws.onerror = () => reject(new Error("echo socket failed"));
      }),
    STEP_TIMEOUT,
  );
  check(
    echo.extensions.includes("permessage-deflate") && echo.same,
    `ws: a ${echo.length}-byte message round-trips through /echo compressed (${echo.extensions})`,
  );
}

async function runTransport(browser, transport) {
  const proxy = await startProxy();
  const channel = `demo-${transport}-${Date.now()}`;
  const page = await browser.newPage();
  page.on("console", (m) => console.log(`  [page] ${m.text()}`));
  try {
    const query = new URLSearchParams({ channel });
    if (transport === "sse") query.set("transport", "sse");
    await page.goto(`${proxy.url}/?${query}`);
    await page.waitForSelector("body[data-connected='1']", { timeout: STEP_TIMEOUT });
    check(true, `${transport}: page connected`);

    const first = await publish(channel, `hello over ${transport}`);
    await page.waitForSelector(`#log li[data-id='${first}']`, { timeout: STEP_TIMEOUT });
    const text = await page.textContent(`#log li[data-id='${first}'] .data`);
    check(text === `hello over ${transport}`, `${transport}: message published over HTTP is shown`);
    if (compression && transport === "ws") await checkCompression(page, channel);

    // The server side drops the connection; messages are published while the page is away.
    proxy.drop();
    await page.waitForSelector("body[data-connected='0']", { timeout: STEP_TIMEOUT });
    check(true, `${transport}: page saw the connection drop`);
    const missed = [];
    for (let i = 0; i < 5; i++) missed.push(await publish(channel, `while away ${i}`));
    proxy.restore();
    const last = await publish(channel, "after the reconnect");
    await page.waitForSelector(`#log li[data-id='${last}']`, { timeout: STEP_TIMEOUT * 2 });
    const ids = await idsOnPage(page);
    const want = [];
    for (let id = first; id <= last; id++) want.push(id);
    check(
      JSON.stringify(ids) === JSON.stringify(want),
      `${transport}: after resume the page shows ids ${want[0]}..${want[want.length - 1]} once each, in order (got ${ids.join(",")})`,
    );
  } finally {
    await page.close();
    proxy.close();
  }
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
let failed = false;
try {
  await runTransport(browser, "ws");
  await runTransport(browser, "sse");
} catch (e) {
  failed = true;
  console.error(`not ok - ${e.message}`);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
