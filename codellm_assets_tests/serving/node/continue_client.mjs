// Continue's own OpenAI adapter (@continuedev/openai-adapters) against the gateway, with the models of
// docs/ide.md's config.yaml (MODELS_JSON: {autocomplete: {provider, model, apiBase, apiKey}, chat: {...}}).
// Prints one JSON object: what each call returned. Usage: node continue_client.mjs NODE_DIR MODELS_JSON
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [, , nodeDir, modelsJson] = process.argv;
const models = JSON.parse(modelsJson);
const require = createRequire(path.join(nodeDir, "package.json"));
const pkg = require.resolve("@continuedev/openai-adapters");
const { constructLlmApi } = await import(pathToFileURL(pkg).href);
const llm = (m) => constructLlmApi({ provider: m.provider, apiBase: m.apiBase, apiKey: m.apiKey });
const auto = llm(models.autocomplete), chat = llm(models.chat);
const signal = () => AbortSignal.timeout(60000);
const out = {};

async function run(name, fn) {
  try { out[name] = await fn(); } catch (e) { out[name] = { error: String(e?.status ?? "") + " " + String(e?.message ?? e) }; }
}

await run("models", async () => (await auto.list()).map((m) => ({ id: m.id, max_model_len: m.max_model_len })));
// Continue's autocomplete renders the FIM template for the model name itself and sends it as `prompt`
const fimPrompt = "<fim_prefix>def add(a, b):\n    return <fim_suffix>\n\nprint(add(1, 2))\n<fim_middle>";
const stop = ["<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<|endoftext|>"];
await run("completion", async () => {
  const r = await auto.completionNonStream({ model: models.autocomplete.model, prompt: fimPrompt, max_tokens: 12,
                                            temperature: 0, stop }, signal());
  return { id: r.id, model: r.model, text: r.choices[0].text, usage: r.usage };
});
await run("stream", async () => {
  let text = "", id = null;
  for await (const c of auto.completionStream({ model: models.autocomplete.model, prompt: fimPrompt, max_tokens: 12,
                                               temperature: 0, stop, stream: true }, signal())) {
    id = id ?? c.id; text += c.choices?.[0]?.text ?? "";
  }
  return { id, text };
});
await run("chat", async () => {
  let text = "", id = null;
  for await (const c of chat.chatCompletionStream({ model: models.chat.model, max_tokens: 12, temperature: 0, stream: true,
      messages: [{ role: "user", content: "Write a Python function that adds two numbers." }] }, signal())) {
    id = id ?? c.id; text += c.choices?.[0]?.delta?.content ?? "";
  }
  return { id, text };
});
await run("fim", async () => {
  let text = "", id = null;
  for await (const c of auto.fimStream({ model: models.autocomplete.model, prompt: "def add(a, b):\n    return ",
      suffix: "\n\nprint(add(1, 2))\n", max_tokens: 12, temperature: 0, stream: true }, signal())) {
    id = id ?? c.id; text += c.choices?.[0]?.delta?.content ?? "";
  }
  return { id, text };
});
// Continue's `vllm` provider: the same adapter with provider "vllm"; Continue reads data[0].max_model_len
await run("vllm", async () => {
  const v = llm({ ...models.autocomplete, provider: "vllm" });
  const first = (await v.list())[0];
  const r = await v.completionNonStream({ model: models.autocomplete.model, prompt: fimPrompt, max_tokens: 12,
                                         temperature: 0, stop }, signal());
  return { id: r.id, max_model_len: first.max_model_len, text: r.choices[0].text };
});
console.log(JSON.stringify(out));
