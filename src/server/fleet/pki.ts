/**
 * The fleet's certificate authority, kept in `<dataDir>/fleet/`. node:crypto cannot make X.509
 * certificates, so the `openssl` command (on every Debian host already) does: no new dependency,
 * and a tool whose output every operator can inspect.
 */
import { createHash, X509Certificate } from 'node:crypto'
import { existsSync } from 'node:fs'
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { serverCommonName } from '../../proto/index.js'
import { readSecretFile, runOrThrow } from '../../shared/index.js'


/** A key and the certificate for it, as PEM. */
export interface KeyPair {
  keyPem: string
  certPem: string
}

/** The CA and the server's certificate, ready for TLS. */
export interface FleetPki {
  caPem: string
  /** sha256 of the CA certificate (DER), hex: agents pin it through the join token. */
  caSha256: string
  server: KeyPair
  /** Issues a client certificate for an agent. */
  issueAgent(agentId: string): Promise<KeyPair>
  /** The agent id of a presented client certificate, or an error saying why it is refused. */
  verifyAgent(certDer: Buffer | undefined): { agentId: string } | { refused: string }
}

const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']

/** Loads the CA from `<dir>` or creates it on first start; issues the server's certificate anew each start. */
export async function loadFleetPki(dir: string): Promise<FleetPki> {
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const caKey = join(dir, 'ca.key')
  const caCert = join(dir, 'ca.crt')
  if (!existsSync(caKey) || !existsSync(caCert)) {
    await openssl(['req', '-x509', ...ecKey, '-keyout', caKey, '-out', caCert, '-days', '3650', '-subj', '/CN=sandstorm-fleet-ca',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'])
    // openssl leaves the key to the umask.
    await chmod(caKey, 0o600)
  }
  // The CA's key signs every agent's certificate: this user's, 0600, or refused.
  readSecretFile(caKey, 'the fleet CA key', 100)
  const caPem = await readFile(caCert, 'utf8')
  const ca = new X509Certificate(caPem)
  const issue = (commonName: string, usage: 'serverAuth' | 'clientAuth'): Promise<KeyPair> => issueCert({ caKey, caCert, commonName, usage })
  const server = await issue(serverCommonName, 'serverAuth')
  const verified = new Map<string, { agentId: string; validTo: string }>()
  return {
    caPem,
    caSha256: createHash('sha256').update(ca.raw).digest('hex'),
    server,
    issueAgent: (agentId) => issue(agentId, 'clientAuth'),
    verifyAgent(certDer) {
      if (!certDer || certDer.length === 0) return { refused: 'no client certificate: expected one issued at join' }
      // Every Data stream presents the connection's certificate again: parse and check it once.
      const key = createHash('sha256').update(certDer).digest('hex')
      const known = verified.get(key)
      if (known && Date.parse(known.validTo) >= Date.now()) return { agentId: known.agentId }
      const verdict = verify(certDer)
      if ('agentId' in verdict) {
        if (verified.size >= 1024) verified.clear()
        verified.set(key, verdict)
        return { agentId: verdict.agentId }
      }
      return verdict
    },
  }

  function verify(certDer: Buffer): { agentId: string; validTo: string } | { refused: string } {
    let cert: X509Certificate
    try {
      cert = new X509Certificate(certDer)
    } catch {
      return { refused: 'the client certificate does not parse' }
    }
    // The TLS layer accepted any certificate (join needs none), so the chain is checked here.
    if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) return { refused: 'the client certificate is not signed by this server\'s CA' }
    const now = Date.now()
    if (Date.parse(cert.validFrom) > now || Date.parse(cert.validTo) < now) return { refused: 'the client certificate is outside its validity' }
    const agentId = /CN=([^\n,]+)/.exec(cert.subject)?.[1]
    if (!agentId || agentId === serverCommonName) return { refused: 'the client certificate names no agent' }
    return { agentId, validTo: cert.validTo }
  }
}

async function issueCert(o: { caKey: string; caCert: string; commonName: string; usage: 'serverAuth' | 'clientAuth' }): Promise<KeyPair> {
  const work = await mkdtemp(join(o.caKey, '..', 'issue-'))
  try {
    const key = join(work, 'key.pem')
    const csr = join(work, 'req.csr')
    const cert = join(work, 'cert.pem')
    const ext = join(work, 'ext.cnf')
    await openssl(['req', '-new', ...ecKey, '-keyout', key, '-out', csr, '-subj', `/CN=${o.commonName}`])
    await writeFile(ext, `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=${o.usage}\n` +
      (o.usage === 'serverAuth' ? 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' : ''))
    await openssl(['x509', '-req', '-in', csr, '-CA', o.caCert, '-CAkey', o.caKey, '-set_serial', `0x${createHash('sha256').update(`${Date.now()}${Math.random()}`).digest('hex').slice(0, 30)}`,
      '-days', '825', '-extfile', ext, '-out', cert])
    return { keyPem: await readFile(key, 'utf8'), certPem: await readFile(cert, 'utf8') }
  } finally {
    await rm(work, { recursive: true, force: true })
  }
}

async function openssl(args: string[]): Promise<void> {
  await runOrThrow('openssl', args, `openssl ${args[0]}`)
}
