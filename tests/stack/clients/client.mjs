// One real Node client runs the README's scenarios; see ../real_clients.rs.
//
// Usage: node client.mjs fetch|http SCENARIO=BASE_URL ...
// Prints one line per scenario: the scenario, then one field per request,
// tab-separated: `STATUS BODY_BYTES`, or `error NAME: MESSAGE`.
import http from "node:http";

const MIB = 1024 * 1024;
const TIMEOUT = 10_000;
const [, , lib, ...pairs] = process.argv;

function plan(scenario) {
  const second = ["/consume", Buffer.from("a=b&x=y"), {}];
  switch (scenario) {
    case "chunked64": return [["/ignore", "chunked", {}], second];
    case "over_limit": return [["/ignore", Buffer.alloc(MIB, "a"), {}], second];
    case "early413": return [["/upload", Buffer.alloc(16 * MIB, "u"), {}]];
    case "big_close": return [["/big", Buffer.alloc(64 * 1024, "b"), { Connection: "close" }]];
    default: throw new Error("unknown scenario " + scenario);
  }
}

function describe(error) {
  let text = `error ${error.name}: ${error.message}`;
  if (error.cause) text += ` (cause: ${error.cause.code ?? error.cause.name}: ${error.cause.message})`;
  else if (error.code) text += ` (${error.code})`;
  return text.replace(/\s+/g, " ");
}

function* pieces(total, size = 4096) {
  for (let sent = 0; sent < total; sent += size) yield Buffer.alloc(Math.min(size, total - sent), "a");
}

async function viaFetch(url, body, headers) {
  const init = { method: "POST", headers, signal: AbortSignal.timeout(TIMEOUT) };
  if (body === "chunked") {
    const it = pieces(64 * 1024);
    init.body = new ReadableStream({
      pull(controller) {
        const next = it.next();
        if (next.done) controller.close();
        else controller.enqueue(next.value);
      },
    });
    init.duplex = "half";
  } else {
    init.body = body;
  }
  const response = await fetch(url, init);
  const content = await response.arrayBuffer();
  return `${response.status} ${content.byteLength}`;
}

function viaHttp(agent) {
  return (url, body, headers) => new Promise((resolve, reject) => {
    const request = http.request(url, { method: "POST", headers, agent, timeout: TIMEOUT }, (response) => {
      let bytes = 0;
      response.on("data", (chunk) => { bytes += chunk.length; });
      response.on("end", () => resolve(`${response.statusCode} ${bytes}`));
      response.on("error", reject);
      // Only if Node reported no error of its own (this script's words, not Node's).
      response.on("close", () => { if (!response.complete) reject(new Error("script: closed before the end")); });
    });
    request.on("error", reject);
    request.on("timeout", () => request.destroy(new Error("timed out")));
    if (body === "chunked") {
      for (const piece of pieces(64 * 1024)) request.write(piece);
      request.end();
    } else {
      request.end(body);
    }
  });
}

for (const pair of pairs) {
  const at = pair.indexOf("=");
  const scenario = pair.slice(0, at);
  const base = pair.slice(at + 1);
  const agent = new http.Agent({ keepAlive: true });
  const post = lib === "fetch" ? viaFetch : viaHttp(agent);
  const fields = [];
  for (const [path, body, headers] of plan(scenario)) {
    try {
      fields.push(await post(base + path, body, headers));
    } catch (error) {
      fields.push(describe(error));
    }
  }
  agent.destroy();
  console.log(scenario + "\t" + fields.join("\t"));
}
