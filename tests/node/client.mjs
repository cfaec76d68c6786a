// The npm `openai` client against Roost's OpenAI-compatible API (driven by
// tests/test_api_node.py): lists models, completes, streams chat completions, and uses the
// Responses API (create, continue with previous_response_id, the stream helper). Prints one
// JSON object with what each call gave.
//
//   node client.mjs <base url> <token> <agent>
//   ROOST_URL=http://127.0.0.1:8080 ROOST_TOKEN=... ROOST_AGENT=echo node client.mjs
//
// The base URL is the server's root (`/v1` is appended).

import OpenAI from "openai";

const [url = process.env.ROOST_URL, token = process.env.ROOST_TOKEN, agent = process.env.ROOST_AGENT] =
  process.argv.slice(2);
if (!url || !token || !agent) {
  console.error("usage: node client.mjs <base url> <token> <agent> (or ROOST_URL, ROOST_TOKEN, ROOST_AGENT)");
  process.exit(2);
}

const client = new OpenAI({ baseURL: `${url.replace(/\/$/, "")}/v1`, apiKey: token, maxRetries: 0 });
const user = (content) => [{ role: "user", content }];
const out = {};

// --- models and chat completions ------------------------------------------------------------

out.models = (await client.models.list()).data.map((m) => m.id);

const { data: completion, response: raw } = await client.chat.completions
  .create({ model: agent, messages: user("hello from node") })
  .withResponse();
const session = raw.headers.get("x-roost-session");
out.completion = {
  content: completion.choices[0].message.content,
  finish_reason: completion.choices[0].finish_reason,
  session,
};

const follow = await client.chat.completions.create(
  { model: agent, messages: user("again") },
  { headers: { "X-Roost-Session": session } },
);
out.completion_follow = follow.choices[0].message.content;

const parts = [];
const stream = await client.chat.completions.create({
  model: agent,
  messages: user("stream me"),
  stream: true,
  stream_options: { include_usage: true },
});
let usage = null;
for await (const chunk of stream) {
  if (chunk.usage) usage = chunk.usage;
  for (const choice of chunk.choices) parts.push(choice.delta?.content ?? "");
}
out.chat_stream = { text: parts.join(""), usage: usage !== null };

const helper = client.chat.completions.stream({ model: agent, messages: user("helper") });
const helperParts = [];
helper.on("content", (delta) => helperParts.push(delta));
const helperFinal = await helper.finalChatCompletion();
out.chat_stream_helper = { text: helperParts.join(""), final: helperFinal.choices[0].message.content };

// --- responses ------------------------------------------------------------------------------

const created = await client.responses.create({ model: agent, input: "hi responses" });
out.response = { id: created.id, status: created.status, output_text: created.output_text };

const continued = await client.responses.create({
  model: agent,
  previous_response_id: created.id,
  input: [{ role: "user", content: [{ type: "input_text", text: "continue" }] }],
});
out.response_follow = {
  id: continued.id,
  output_text: continued.output_text,
  previous_response_id: continued.previous_response_id,
};

const events = [];
const deltas = [];
const responseStream = client.responses.stream({ model: agent, input: "stream responses" });
responseStream.on("response.output_text.delta", (event) => deltas.push(event.delta));
for await (const event of responseStream) events.push({ type: event.type, sequence_number: event.sequence_number });
const streamed = await responseStream.finalResponse();
out.response_stream = {
  events,
  deltas,
  id: streamed.id,
  status: streamed.status,
  output_text: streamed.output_text,
};

// --- errors ---------------------------------------------------------------------------------

try {
  await client.responses.create({ model: "no-such-agent", input: "x" });
  out.not_found = null;
} catch (error) {
  out.not_found = { status: error.status, name: error.constructor.name, message: error.message };
}

console.log(JSON.stringify(out));
