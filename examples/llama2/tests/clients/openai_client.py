"""The official `openai` client against `llama2 serve`: chat and text completions, whole
and streamed, at once (so the server batches them), and an error the client raises.

Usage: openai_client.py BASE_URL MODEL
"""

import sys
import threading

import openai

BASE_URL, MODEL = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=f"{BASE_URL}/v1", api_key="unused")
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
ANSWER = "The capital of France is Paris."


def chat_whole():
    r = client.chat.completions.create(
        model=MODEL, messages=QUESTION, temperature=0, max_tokens=12
    )
    assert r.choices[0].message.role == "assistant", r
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0, r.usage
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    return r.choices[0].message.content, r.choices[0].finish_reason


def chat_stream():
    text, finish = "", None
    stream = client.chat.completions.create(
        model=MODEL, messages=QUESTION, temperature=0, max_tokens=12, stream=True
    )
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk", chunk
        delta = chunk.choices[0].delta
        text += delta.content or ""
        finish = chunk.choices[0].finish_reason or finish
    return text, finish


def text_whole():
    r = client.completions.create(
        model=MODEL, prompt="The capital of France is", temperature=0, max_tokens=4
    )
    assert r.usage.completion_tokens == 4 or r.choices[0].finish_reason == "stop", r
    return r.choices[0].text, r.choices[0].finish_reason


def text_stream():
    text, finish = "", None
    stream = client.completions.create(
        model=MODEL,
        prompt="The capital of France is",
        temperature=0,
        max_tokens=4,
        stream=True,
    )
    for chunk in stream:
        text += chunk.choices[0].text
        finish = chunk.choices[0].finish_reason or finish
    return text, finish


results = {}


def record(name, f):
    try:
        results[name] = f()
    except Exception as e:  # reported below with the others
        results[name] = e


threads = [
    threading.Thread(target=record, args=(f.__name__, f))
    for f in (chat_whole, chat_stream, text_whole, text_stream)
]
for t in threads:
    t.start()
for t in threads:
    t.join()
for name, r in results.items():
    print(f"{name}: {r!r}")
failures = [n for n, r in results.items() if isinstance(r, Exception)]
assert not failures, failures
assert results["chat_whole"] == (ANSWER, "stop"), results["chat_whole"]
assert results["chat_stream"] == (ANSWER, "stop"), results["chat_stream"]
# The same greedy continuation whether streamed or not.
assert results["text_whole"] == results["text_stream"], results
assert results["text_whole"][0].strip(), results["text_whole"]

try:
    client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=0)
    raise AssertionError("max_tokens 0 was accepted")
except openai.BadRequestError as e:
    assert "max_tokens" in str(e), e
    print(f"max_tokens 0: {e}")
assert client.models.retrieve(MODEL).id == MODEL
assert [m.id for m in client.models.list()] == [MODEL]
print("openai client: all checks passed")
