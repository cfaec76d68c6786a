// A roost process agent in Node.js: node:http, the official `openai` npm client, and fetch.
//
// roost runs `node agent.mjs` in this folder with PORT set, waits for GET /health to answer
// 200, then sends each run as POST /invoke (the contract: ../process-agent/README.md).
// Every call below goes to the provider named in the /invoke body, with that invocation's
// own api key, so it is recorded in the run's session.
import http from "node:http";

import OpenAI from "openai";

const COUNTER_KEY = "invocations";
const SYSTEM_PROMPT =
  process.env.NODE_AGENT_SYSTEM_PROMPT ?? "You are a concise assistant. Answer in one sentence.";

/** The user's text: a plain string input, or {"prompt": ...}. */
function promptOf(input) {
  if (typeof input === "string") return input;
  if (input && typeof input.prompt === "string") return input.prompt;
  return JSON.stringify(input);
}

/** Add one to this session's invocation counter in roost's KV store; return the count. */
async function countInvocation(provider) {
  const url = `${provider.url}/kv/${COUNTER_KEY}`;
  const headers = { authorization: `Bearer ${provider.api_key}` };
  const got = await fetch(url, { headers });
  let count = 0;
  if (got.ok) {
    count = Number.parseInt((await got.text()) || "0", 10);
  } else if (got.status !== 404) {
    // 404: nothing counted yet in this session
    throw new Error(`GET /kv/${COUNTER_KEY}: HTTP ${got.status}: ${await got.text()}`);
  }
  count += 1;
  const put = await fetch(url, { method: "PUT", headers, body: String(count) });
  if (!put.ok) throw new Error(`PUT /kv/${COUNTER_KEY}: HTTP ${put.status}: ${await put.text()}`);
  return count;
}

/** One run: a chat completion, a streamed chat completion and the KV counter. */
async function invoke(body) {
  const provider = body.provider;
  const client = new OpenAI({
    baseURL: provider.base_url,
    apiKey: provider.api_key,
    timeout: Math.max(Number(body.timeout_s ?? 60), 1) * 1000,
    maxRetries: 0, // roost retries what is worth retrying; a failure here fails the run
  });
  const messages = [
    { role: "system", content: SYSTEM_PROMPT },
    { role: "user", content: promptOf(body.input) },
  ];
  // "default": the agent's chat model from agent.toml, or the platform's
  const completion = await client.chat.completions.create({
    model: "default",
    messages,
    max_tokens: 128,
  });
  const stream = await client.chat.completions.create({
    model: "default",
    messages,
    max_tokens: 128,
    stream: true,
  });
  let streamed = "";
  let chunks = 0;
  for await (const chunk of stream) {
    chunks += 1;
    streamed += chunk.choices[0]?.delta?.content ?? "";
  }
  const count = await countInvocation(provider);
  return { answer: completion.choices[0].message.content ?? "", streamed, chunks, count };
}

function reply(res, status, payload) {
  const data = JSON.stringify(payload);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(data),
  });
  res.end(data);
}

async function readJson(req) {
  const parts = [];
  for await (const part of req) parts.push(part);
  return JSON.parse(Buffer.concat(parts).toString("utf8") || "null");
}

const server = http.createServer(async (req, res) => {
  if (req.method === "GET" && req.url === "/health") return reply(res, 200, { status: "ok" });
  if (req.method !== "POST" || req.url !== "/invoke") {
    return reply(res, 404, { error: `no route ${req.method} ${req.url}` });
  }
  try {
    reply(res, 200, { output: await invoke(await readJson(req)) });
  } catch (err) {
    // report the failure to roost; it fails the run with this text
    console.error(`invoke failed: ${err?.stack ?? err}`);
    reply(res, 500, { error: `${err?.name ?? "Error"}: ${err?.message ?? err}` });
  }
});

const port = Number.parseInt(process.env.PORT, 10);
server.listen(port, "127.0.0.1", () => {
  console.error(`node-agent listening on 127.0.0.1:${port}`);
});
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeIdleConnections();
  });
}
