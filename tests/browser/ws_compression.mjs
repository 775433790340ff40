// A real third-party client for tests/compression.rs: Node's `ws` with perMessageDeflate
// against a `--compression` server. Usage: node ws_compression.mjs HOST:PORT
//
// Checks that the 101 agreed permessage-deflate, that echoes of small, large and binary
// messages round-trip on /echo, and that a ~1 KiB JSON message published over HTTP reaches a
// compressing /ws subscriber intact. Prints one "ok - ..." line per check; exits 1 on the
// first failure. Every wait is bounded.
import WebSocket from "ws";

const target = process.argv[2];
const TIMEOUT = 10000;

function check(cond, what) {
  if (!cond) throw new Error(`not ok - ${what}`);
  console.log(`ok - ${what}`);
}

function open(path) {
  const ws = new WebSocket(`ws://${target}${path}`, { perMessageDeflate: true, maxPayload: 4 << 20 });
  const queue = [];
  const waiters = [];
  ws.on("message", (data, isBinary) => {
    const m = { data, isBinary };
    const w = waiters.shift();
    if (w) w(m);
    else queue.push(m);
  });
  ws.next = () =>
    new Promise((resolve, reject) => {
      const m = queue.shift();
      if (m) return resolve(m);
      const t = setTimeout(() => reject(new Error(`no message within ${TIMEOUT} ms`)), TIMEOUT);
      waiters.push((m) => {
        clearTimeout(t);
        resolve(m);
      });
    });
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("no 101 in time")), TIMEOUT);
    ws.on("open", () => {
      clearTimeout(t);
      resolve(ws);
    });
    ws.on("error", reject);
  });
}

try {
  const echo = await open("/echo");
  check(echo.extensions.startsWith("permessage-deflate"), `node: 101 agreed compression (${echo.extensions})`);
  const row = { id: 1, name: "a user", tags: ["x", "y"], active: true };
  const rows = (n) => JSON.stringify(Array.from({ length: n }, (_, i) => ({ ...row, id: i })));
  const binary = Buffer.alloc(512 * 1024);
  for (let i = 0; i < binary.length; i++) binary[i] = (i * 7) & 0xff;
  for (const m of ["hi", rows(20), rows(20000).slice(0, 900 * 1024), binary]) {
    echo.send(m);
    const back = await echo.next();
    const same = typeof m === "string" ? !back.isBinary && back.data.toString() === m : back.isBinary && back.data.equals(m);
    check(same, `node: echo of a ${m.length}-byte ${typeof m === "string" ? "text" : "binary"} message`);
  }
  echo.close();

  const channel = "node-compression";
  const sub = await open(`/ws?channel=${channel}`);
  check(JSON.parse((await sub.next()).data).type === "subscribed", "node: subscribed");
  const data = { items: Array.from({ length: 15 }, (_, i) => ({ ...row, id: i })) };
  const body = JSON.stringify(data);
  const r = await fetch(`http://${target}/publish/${channel}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body,
  });
  check(r.ok, "node: published over HTTP");
  const got = JSON.parse((await sub.next()).data);
  check(JSON.stringify(got.data) === body, `node: a ${body.length}-byte broadcast arrived intact`);
  sub.close();
  process.exit(0);
} catch (e) {
  console.error(e.message);
  process.exit(1);
}
