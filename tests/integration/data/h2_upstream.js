// HTTP/2 (and HTTP/1.1) TLS upstream for the h2 interception tests and bench: node's http2.
//   node h2_upstream.js DIR PORT   (DIR/srv.pem, DIR/srv.key; writes DIR/ready, logs DIR/seen.log)
// Routes:
//   /echo/...      200, the Authorization it got echoed in a header (x-echo) and in the body
//   /upload        the request body logged and echoed back, its length in x-got
//   /trailers      a body, then the Authorization echoed in a trailer (x-echo-trailer)
//   /bytes/N       N bytes of 'a' (the bench)
//   /v1/messages   a mock Anthropic Messages API (as data/model_api.py): JSON, or SSE when the
//                  body says "stream":true (events written one by one); usage input 1000 +
//                  cache_read 200 + cache_creation 50, output 300
//   anything else  200 "ok"
// Each request appends "PROTO METHOD PATH AUTHORIZATION [BODY]" to seen.log.
'use strict';
const fs = require('fs');
const http2 = require('http2');

const [dir, port] = process.argv.slice(2);
const log = (line) => fs.appendFileSync(`${dir}/seen.log`, line + '\n');

// The model API route: what model_api.py's anthropic() answers, over h2 (issue 17's usage).
function messages(body, res) {
  let req = {};
  try {
    req = JSON.parse(body || '{}');
  } catch (e) {
    req = {};
  }
  const usage = {input_tokens: 1000, output_tokens: 300, cache_read_input_tokens: 200,
                 cache_creation_input_tokens: 50};
  if (!req.stream) {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({id: 'msg_1', type: 'message', model: req.model, role: 'assistant',
                            content: [{type: 'text', text: 'hello'}], usage}));
    return;
  }
  const ev = (name, obj) => `event: ${name}\ndata: ${JSON.stringify(obj)}\n\n`;
  const events = [ev('message_start', {type: 'message_start', message: {
    id: 'msg_1', type: 'message', model: req.model, content: [],
    usage: Object.assign({}, usage, {output_tokens: 1})}})];
  for (let i = 0; i < 10; i++) {
    events.push(ev('content_block_delta', {type: 'content_block_delta', index: 0,
                                           delta: {type: 'text_delta', text: `word ${i} `}}));
  }
  events.push(ev('message_delta', {type: 'message_delta', delta: {stop_reason: 'end_turn'},
                                   usage: {output_tokens: 300}}));
  events.push(ev('message_stop', {type: 'message_stop'}));
  res.setHeader('content-type', 'text/event-stream');
  const next = () => {  // one DATA frame an event, a tick apart
    const e = events.shift();
    if (e === undefined) {
      res.end();
      return;
    }
    res.write(e);
    setTimeout(next, 2);
  };
  next();
}

function handle(req, res) {
  const auth = req.headers['authorization'] || '-';
  const proto = req.httpVersion === '2.0' ? 'h2' : 'http/1.1';
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('latin1');
    const path = req.url;
    if (!path.startsWith('/bytes/')) {
      log(`${proto} ${req.method} ${path} ${auth}${body ? ' ' + body : ''}`);
    }
    if (path === '/v1/messages') {
      messages(body, res);
    } else if (path.startsWith('/echo/')) {
      res.setHeader('x-echo', auth);
      res.setHeader('content-type', 'text/plain');
      res.end(`you sent: ${auth}\n`);
    } else if (path === '/upload') {
      res.setHeader('x-got', String(body.length));
      res.end(body);
    } else if (path === '/trailers') {
      if (proto !== 'h2') {
        res.end('trailers need h2\n');
        return;
      }
      res.setHeader('content-type', 'text/plain');
      res.addTrailers({'x-echo-trailer': auth});
      res.end('body before trailers\n');
    } else if (path.startsWith('/bytes/')) {
      const n = parseInt(path.slice(7), 10) || 0;
      res.setHeader('content-length', String(n));
      const block = Buffer.alloc(Math.min(n, 65536), 'a');
      let left = n;
      const more = () => {
        while (left > 0) {
          const k = Math.min(left, block.length);
          left -= k;
          if (!res.write(k === block.length ? block : block.subarray(0, k))) {
            res.once('drain', more);
            return;
          }
        }
        res.end();
      };
      more();
    } else {
      res.end('ok\n');
    }
  });
}

const server = http2.createSecureServer(
    {
      key: fs.readFileSync(`${dir}/srv.key`),
      cert: fs.readFileSync(`${dir}/srv.pem`),
      allowHTTP1: true,
    },
    handle);
server.listen(Number(port), '127.0.0.1', () => fs.writeFileSync(`${dir}/ready`, ''));
