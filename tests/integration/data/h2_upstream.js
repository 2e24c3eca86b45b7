// HTTP/2 (and HTTP/1.1) TLS upstream for the h2 interception tests and bench: node's http2.
//   node h2_upstream.js DIR PORT   (DIR/srv.pem, DIR/srv.key; writes DIR/ready, logs DIR/seen.log)
// Routes:
//   /echo/...      200, the Authorization it got echoed in a header (x-echo) and in the body
//   /upload        the request body logged and echoed back, its length in x-got
//   /trailers      a body, then the Authorization echoed in a trailer (x-echo-trailer)
//   /bytes/N       N bytes of 'a' (the bench)
//   anything else  200 "ok"
// Each request appends "PROTO METHOD PATH AUTHORIZATION [BODY]" to seen.log.
'use strict';
const fs = require('fs');
const http2 = require('http2');

const [dir, port] = process.argv.slice(2);
const log = (line) => fs.appendFileSync(`${dir}/seen.log`, line + '\n');

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
    if (path.startsWith('/echo/')) {
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
