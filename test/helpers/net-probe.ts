/**
 * A network probe run inside a sandbox (python3 of the debian template): what a program in there
 * can reach, each attempt answered as one word and a detail. Tests write it into the sandbox once.
 */
import { Sandbox, type ConnectionOptions, type SandboxCreateOptions } from '@sandstorm/sdk'
import { sh } from './sandbox-shell.js'

/** Where the probe lives in the sandbox. */
export const probePath = '/tmp/net-probe.py'

const probe = String.raw`
import json, os, socket, ssl, struct, sys, time, urllib.request, random

def out(word, detail=''):
    print(word, detail)
    sys.exit(0)

def err(e):
    return type(e).__name__ + ':' + str(getattr(e, 'errno', '') or getattr(e, 'reason', '') or e)

def http(url, host=None, timeout=5):
    ctx = ssl.create_default_context(cafile='/tmp/test-ca.pem')
    req = urllib.request.Request(url, headers={'Host': host} if host else {})
    try:
        out('OK', urllib.request.urlopen(req, timeout=timeout, context=ctx).read().decode().strip())
    except urllib.error.HTTPError as e:
        out('HTTP', str(e.code))
    except Exception as e:
        out('FAIL', err(e))

def tls(addr, servername):
    # A TLS handshake to an address with a server name of our choosing (SNI), no verification.
    ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
    try:
        s = socket.create_connection((addr, 443), timeout=5)
        t = ctx.wrap_socket(s, server_hostname=servername)
        t.sendall(b'GET / HTTP/1.0\r\nHost: ' + servername.encode() + b'\r\nConnection: close\r\n\r\n')
        data = b''
        while True:
            chunk = t.recv(4096)
            if not chunk: break
            data += chunk
        out('OK', data.decode(errors='replace').split('\r\n\r\n', 1)[-1].strip())
    except Exception as e:
        out('FAIL', err(e))

def tcp(addr, port):
    try:
        socket.create_connection((addr, int(port)), timeout=5).close()
        out('OK')
    except Exception as e:
        out('FAIL', err(e))

def held(addr, port, flag, servername=''):
    # One connection, two requests: the second once the file flag exists (a policy changed between).
    # With a server name, the connection is TLS with that name (SNI), and it is the Host too.
    def ask(c):
        c.sendall(b'GET /bytes/10 HTTP/1.1\r\nHost: ' + (servername or 'held.test').encode() + b'\r\n\r\n')
        data = b''
        while b'\r\n\r\n' not in data:
            chunk = c.recv(4096)
            if not chunk: raise OSError('closed')
            data += chunk
        head, body = data.split(b'\r\n\r\n', 1)
        length = int([l.split(b':')[1] for l in head.split(b'\r\n') if l.lower().startswith(b'content-length:')][0])
        while len(body) < length:
            chunk = c.recv(4096)
            if not chunk: raise OSError('closed')
            body += chunk
    try:
        c = socket.create_connection((addr, int(port)), timeout=5)
        if servername:
            ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
            c = ctx.wrap_socket(c, server_hostname=servername)
        ask(c)
    except Exception as e:
        return out('FAIL', 'first: ' + err(e))
    open(flag + '.ready', 'w').close()
    for _ in range(600):
        if os.path.exists(flag): break
        time.sleep(0.05)
    try:
        ask(c)
        out('OK')
    except Exception as e:
        out('FAIL', err(e))

def upgrade(addr, path, host, behind):
    # An upgrade request with Host host, then a plain request with Host behind, on one connection:
    # prints what came back, as one line.
    try:
        c = socket.create_connection((addr, 80), timeout=3)
        # The connection stays open (an echo, a kept-alive one): what came within 1.5 s is the answer.
        c.settimeout(1.5)
        c.sendall(('GET %s HTTP/1.1\r\nHost: %s\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\nGET / HTTP/1.1\r\nHost: %s\r\n\r\n' % (path, host, behind)).encode())
        data = b''
        try:
            while True:
                chunk = c.recv(4096)
                if not chunk: break
                data += chunk
        except socket.timeout:
            pass
        out('OK', data.decode(errors='replace').replace('\r\n', '|').replace('\n', '|'))
    except Exception as e:
        out('FAIL', err(e))

def udp(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.sendto(b'probe', (addr, int(port)))
        out('SENT')
    except Exception as e:
        out('FAIL', err(e))

def resolve(name):
    try:
        out('OK', ','.join(sorted(set(a[4][0] for a in socket.getaddrinfo(name, 80, socket.AF_INET)))))
    except Exception as e:
        out('FAIL', err(e))

def dns(name, server, proto='udp', qtype='1'):
    # One query of type qtype (1 = A, 28 = AAAA) straight to server:53; prints the rcode and the A records.
    qid = random.randint(0, 65535)
    q = struct.pack('>HHHHHH', qid, 0x0100, 1, 0, 0, 0)
    for label in name.split('.'):
        q += bytes([len(label)]) + label.encode()
    q += b'\x00' + struct.pack('>HH', int(qtype), 1)
    try:
        if proto == 'tcp':
            s = socket.create_connection((server, 53), timeout=5)
            s.sendall(struct.pack('>H', len(q)) + q)
            n = struct.unpack('>H', s.recv(2))[0]
            r = b''
            while len(r) < n: r += s.recv(n - len(r))
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
            s.sendto(q, (server, 53))
            r = s.recv(4096)
    except Exception as e:
        out('FAIL', err(e))
    rcode = r[3] & 15
    count = struct.unpack('>H', r[6:8])[0]
    # Skip the question, then read answers (names are compressed pointers from our own server).
    i = 12
    while r[i] != 0: i += 1 + r[i]
    i += 5
    addrs = []
    for _ in range(count):
        if r[i] & 0xc0 == 0xc0: i += 2
        else:
            while r[i] != 0: i += 1 + r[i]
            i += 1
        rtype, _, _, rdlen = struct.unpack('>HHIH', r[i:i + 10]); i += 10
        if rtype == 1: addrs.append(socket.inet_ntoa(r[i:i + 4]))
        i += rdlen
    out('RCODE' + str(rcode), ','.join(addrs))

def raw():
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); out('OPENED')
    except Exception as e:
        out('FAIL', err(e))

def ipv6(addr):
    try:
        socket.create_connection((addr, 80), timeout=3).close(); out('OK')
    except Exception as e:
        out('FAIL', err(e))

globals()[sys.argv[1]](*sys.argv[2:])
`

/** The sandbox's own address (a UDP connect sends nothing). */
export async function sandboxAddress(sbx: Sandbox): Promise<string> {
  return (await sh(sbx, ['python3', '-c', "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect(('198.18.0.1', 53)); print(s.getsockname()[0])"])).stdout.trim()
}

/** A debian sandbox on `conn` with `network` (the server's default when left out), the probe written into it. */
export async function createProbed(conn: ConnectionOptions, caPem: string, network?: SandboxCreateOptions['network']): Promise<Sandbox> {
  const sbx = await Sandbox.create('debian', { ...conn, ...(network !== undefined ? { network } : {}) })
  await installProbe(sbx, caPem)
  return sbx
}

/** Writes the probe (and the test CA, for HTTPS) into the sandbox. */
export async function installProbe(sbx: Sandbox, caPem: string): Promise<void> {
  await sbx.files.write(probePath, probe)
  await sbx.files.write('/tmp/test-ca.pem', caPem)
}

/** Runs one probe and returns its word and detail, e.g. `['OK', 'allowed.test GET /']`. */
export async function runProbe(sbx: Sandbox, ...args: string[]): Promise<[string, string]> {
  const r = await sh(sbx, ['python3', probePath, ...args])
  const [word = '', ...rest] = r.stdout.trim().split(' ')
  if (word === '') throw new Error(`the probe printed nothing (exit ${r.exitCode}): ${r.stderr}`)
  return [word, rest.join(' ')]
}
