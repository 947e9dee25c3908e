/**
 * Both ends of ingress tests: a small HTTP server that runs inside a sandbox (python3 of the
 * debian template) and a WebSocket client for the test (Node 20 has none built in).
 *
 * The server, on the port given: GET /host answers the Host header it got; POST /sha256 answers
 * the size and SHA-256 of the body it streamed; GET /bytes/N sends N bytes; GET /ws upgrades to
 * WebSocket and echoes every text frame; GET /hold/NAME sends one chunk of a chunked answer, then
 * waits for the client to close and writes /tmp/NAME.closed; GET /cookie sets a cookie for the
 * Host's parent domain (every sandbox's) and asks caches to keep the answer for a year. Any other
 * request, an upgrade to another path too, is answered plainly on a kept-alive connection.
 */
import { createHash, randomBytes } from 'node:crypto'
import { request, type IncomingHttpHeaders } from 'node:http'
import type { Socket } from 'node:net'

/** The server's source, started in a sandbox with `python3 -c "$src" PORT &`. */
export const sandboxWebServer = String.raw`
import base64, hashlib, http.server, socketserver, struct, sys

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def log_message(self, *a): pass
    def reply(self, body, status=200):
        self.send_response(status)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        if self.path == '/host':
            return self.reply(self.headers.get('Host', '').encode())
        if self.path == '/headers':
            return self.reply(''.join('%s: %s\n' % (k.lower(), v) for k, v in self.headers.items()).encode())
        if self.path == '/cookie':
            body = b'cookie'
            self.send_response(200)
            self.send_header('Set-Cookie', 'session=s1; Domain=' + self.headers.get('Host', '').split(':')[0].split('.', 1)[-1] + '; Path=/; HttpOnly')
            self.send_header('Cache-Control', 'public, max-age=31536000')
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            return self.wfile.write(body)
        if self.path.startswith('/bytes/'):
            n = int(self.path.split('/')[2])
            self.send_response(200); self.send_header('Content-Length', str(n)); self.end_headers()
            chunk = b'x' * 65536
            while n > 0:
                self.wfile.write(chunk[:min(n, len(chunk))]); n -= min(n, len(chunk))
            return
        if self.path.startswith('/hold/'):
            name = self.path.split('/')[2]
            self.send_response(200); self.send_header('Transfer-Encoding', 'chunked'); self.end_headers()
            self.wfile.write(b'5\r\nheld\n\r\n'); self.wfile.flush()
            while self.connection.recv(65536): pass
            open('/tmp/%s.closed' % name, 'w').close()
            self.close_connection = True
            return
        if self.path == '/ws' and self.headers.get('Upgrade', '').lower() == 'websocket':
            key = self.headers['Sec-WebSocket-Key'] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
            self.send_response(101)
            self.send_header('Upgrade', 'websocket'); self.send_header('Connection', 'Upgrade')
            self.send_header('Sec-WebSocket-Accept', base64.b64encode(hashlib.sha1(key.encode()).digest()).decode())
            self.end_headers(); self.wfile.flush()
            while True:
                head = self.rfile.read(2)
                if len(head) < 2: return
                op, n = head[0] & 15, head[1] & 127
                if n == 126: n = struct.unpack('>H', self.rfile.read(2))[0]
                elif n == 127: n = struct.unpack('>Q', self.rfile.read(8))[0]
                mask = self.rfile.read(4)
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(n)))
                if op == 8: return
                reply = b'echo ' + data
                self.wfile.write(bytes([0x81, len(reply)]) + reply); self.wfile.flush()
        self.reply(b'not found', 404)
    def do_POST(self):
        n = int(self.headers.get('Content-Length', '0'))
        h, left = hashlib.sha256(), n
        while left > 0:
            chunk = self.rfile.read(min(left, 65536))
            if not chunk: break
            h.update(chunk); left -= len(chunk)
        self.reply(('%d %s' % (n, h.hexdigest())).encode())

class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

Server(('0.0.0.0', int(sys.argv[1])), Handler).serve_forever()
`

/** Opens a WebSocket to `path` on `host:port` (with these headers), or rejects with the HTTP status it got instead. */
export function openWebSocket(port: number, path: string, headers: IncomingHttpHeaders): Promise<{ send(text: string): void; next(): Promise<string>; close(): void }> {
  const key = randomBytes(16).toString('base64')
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1',
      port,
      path,
      headers: { ...headers, connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-key': key, 'sec-websocket-version': '13' },
    })
    req.on('response', (res) => reject(new Error(`expected 101, got ${res.statusCode}`)))
    req.on('error', reject)
    req.on('upgrade', (res, socket: Socket, head: Buffer) => {
      const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64')
      if (res.headers['sec-websocket-accept'] !== accept) return reject(new Error('wrong Sec-WebSocket-Accept'))
      let buffered = head
      const waiting: ((text: string) => void)[] = []
      const frames: string[] = []
      socket.on('data', (chunk: Buffer) => {
        buffered = Buffer.concat([buffered, chunk])
        while (buffered.length >= 2 && buffered.length >= 2 + (buffered[1]! & 127)) {
          const n = buffered[1]! & 127
          const text = buffered.subarray(2, 2 + n).toString('utf8')
          buffered = buffered.subarray(2 + n)
          const w = waiting.shift()
          if (w) w(text)
          else frames.push(text)
        }
      })
      resolve({
        send(text) {
          const data = Buffer.from(text)
          const mask = randomBytes(4)
          socket.write(Buffer.concat([Buffer.from([0x81, 0x80 | data.length]), mask, Buffer.from(data.map((b, i) => b ^ mask[i % 4]!))]))
        },
        next: () => (frames.length > 0 ? Promise.resolve(frames.shift()!) : new Promise((r) => waiting.push(r))),
        close: () => socket.destroy(),
      })
    })
    req.end()
  })
}
