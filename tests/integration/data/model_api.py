# A mock model API for the spend tests (model_spend_test.cpp), served by upstream.py: the three
# wire formats, streamed and not, each reporting a fixed usage. Streamed bodies go out chunked in
# 7-byte pieces, each flushed (its own TCP segment, most of the time), so SSE events, lines and
# JSON values are split across chunks and reads at many offsets.
#
#   POST /v1/messages                       Anthropic Messages ("stream": true -> SSE)
#   POST /v1/responses                      OpenAI Responses ("stream": true -> SSE)
#   POST /v1/chat/completions               Chat Completions ("stream": true -> SSE, usage last)
#   POST /v1beta/models/M:generateContent   Gemini, JSON
#   POST /v1beta/models/M:streamGenerateContent[?alt=sse]   a JSON array, or SSE with alt=sse
#   WebSocket /v1/responses                 `response.create` -> `response.completed` (ws_message)
# The model is the request's "model" (Gemini: M). The usage each reports (the test's oracle):
#   Anthropic  input 1000 + cache_read 200 + cache_creation 50, output 300 (streamed: 1, then 300)
#   Responses  input 800 (cached 100), output 250
#   Chat       prompt 600 (cached 64), completion 120
#   Gemini     prompt 400 (cached 40), candidates 90 + thoughts 10 (streamed: cumulative)
import json
import time


def send_json(h, obj):
    h.reply(200, json.dumps(obj).encode(), "application/json")


def send_stream(h, text, content_type):
    h.send_response(200)
    h.send_header("Content-Type", content_type)
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    data = text.encode()
    for i in range(0, len(data), 7):
        piece = data[i:i + 7]
        h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        h.wfile.flush()
        if i % 700 == 0:
            time.sleep(0.002)
    h.wfile.write(b"0\r\n\r\n")
    h.wfile.flush()


def sse(events, crlf=False):
    nl = "\r\n" if crlf else "\n"
    out = ""
    for name, obj in events:
        if name:
            out += f"event: {name}{nl}"
        out += f"data: {obj if isinstance(obj, str) else json.dumps(obj)}{nl}{nl}"
    return out


def anthropic(h, req):
    model = req.get("model", "")
    usage = {"input_tokens": 1000, "output_tokens": 300, "cache_read_input_tokens": 200,
             "cache_creation_input_tokens": 50}
    if not req.get("stream"):
        return send_json(h, {"id": "msg_1", "type": "message", "model": model, "role": "assistant",
                             "content": [{"type": "text", "text": "hello"}], "usage": usage})
    start = dict(usage, output_tokens=1)
    events = [("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "model": model, "content": [], "usage": start}}),
        ("ping", {"type": "ping"})]
    for i in range(20):
        events.append(("content_block_delta", {"type": "content_block_delta", "index": 0,
                                               "delta": {"type": "text_delta",
                                                         "text": f"word {i} \"usage\": 9 "}}))
    events.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                     "usage": {"output_tokens": 300}}))
    events.append(("message_stop", {"type": "message_stop"}))
    send_stream(h, sse(events, crlf=True), "text/event-stream")


def responses(h, req):
    model = req.get("model", "")
    usage = {"input_tokens": 800, "input_tokens_details": {"cached_tokens": 100},
             "output_tokens": 250, "output_tokens_details": {"reasoning_tokens": 30},
             "total_tokens": 1050}
    body = {"id": "resp_1", "object": "response", "model": model, "status": "completed",
            "output": [{"type": "message", "content": [{"type": "output_text", "text": "hi"}]}],
            "usage": usage}
    if not req.get("stream"):
        return send_json(h, body)
    events = [("response.created", {"type": "response.created",
                                    "response": dict(body, status="in_progress", usage=None)})]
    for i in range(20):
        events.append(("response.output_text.delta", {"type": "response.output_text.delta",
                                                      "delta": f"tok{i} "}))
    events.append(("response.completed", {"type": "response.completed", "response": body}))
    send_stream(h, sse(events), "text/event-stream")


def ws_message(data):
    """The Responses API over WebSocket: a `response.create` message is answered with one
    `response.completed` event carrying the usage of `responses`; None for any other message."""
    try:
        req = json.loads(data)
    except ValueError:
        return None
    if not isinstance(req, dict) or req.get("type") != "response.create":
        return None
    usage = {"input_tokens": 800, "input_tokens_details": {"cached_tokens": 100},
             "output_tokens": 250, "output_tokens_details": {"reasoning_tokens": 30},
             "total_tokens": 1050}
    body = {"id": "resp_ws", "object": "response", "model": req.get("model", ""),
            "status": "completed", "usage": usage}
    return json.dumps({"type": "response.completed", "response": body}).encode()


def chat(h, req):
    model = req.get("model", "")
    usage = {"prompt_tokens": 600, "completion_tokens": 120, "total_tokens": 720,
             "prompt_tokens_details": {"cached_tokens": 64}}
    if not req.get("stream"):
        return send_json(h, {"id": "c1", "object": "chat.completion", "model": model,
                             "choices": [{"index": 0, "message": {"content": "hi"}}],
                             "usage": usage})
    events = []
    for i in range(20):
        events.append((None, {"id": "c1", "object": "chat.completion.chunk", "model": model,
                              "choices": [{"index": 0, "delta": {"content": f"t{i}"}}],
                              "usage": None}))
    events.append((None, {"id": "c1", "object": "chat.completion.chunk", "model": model,
                          "choices": [], "usage": usage}))
    events.append((None, "[DONE]"))
    send_stream(h, sse(events), "text/event-stream")


def gemini_chunk(model, cand):
    return {"candidates": [{"content": {"parts": [{"text": "x"}], "role": "model"}}],
            "usageMetadata": {"promptTokenCount": 400, "candidatesTokenCount": cand,
                              "cachedContentTokenCount": 40, "thoughtsTokenCount": 10,
                              "totalTokenCount": 400 + cand + 10},
            "modelVersion": model}


def gemini(h, url, model):
    if url.path.endswith(":generateContent"):
        return send_json(h, gemini_chunk(model, 90))
    chunks = [gemini_chunk(model, c) for c in (10, 40, 90)]
    if "alt=sse" in (url.query or ""):
        send_stream(h, sse([(None, c) for c in chunks], crlf=True), "text/event-stream")
    else:
        send_stream(h, "[" + ",\r\n".join(json.dumps(c) for c in chunks) + "]", "application/json")


def handle(h, url, req_body):
    """Serves the model endpoints; returns False for any other request."""
    if h.command != "POST":
        return False
    try:
        req = json.loads(req_body or "{}")
    except ValueError:
        req = {}
    if url.path == "/v1/messages":
        anthropic(h, req)
    elif url.path == "/v1/responses":
        responses(h, req)
    elif url.path == "/v1/chat/completions":
        chat(h, req)
    elif url.path.startswith("/v1beta/models/") and ":" in url.path:
        gemini(h, url, url.path[len("/v1beta/models/"):].split(":")[0])
    else:
        return False
    return True
