/**
 * PTYs without a console socket. `runc exec --tty` hands the pty master over a unix socket with
 * SCM_RIGHTS, which Node cannot receive, and node-pty would need a native build. So the PTY is
 * made inside the sandbox by python3's `pty` module (the debian template has python3): the
 * helper forks the command on a new pty and copies between the pty master and its own
 * stdin/stdout, which are the ordinary pipes of `runc exec`. Input and resizes share stdin in
 * frames: one kind byte (0 input, 1 resize), a big-endian u32 length, then the body.
 */

/** The helper, run as `python3 -c <script> <cols> <rows> <argv...>`. */
export const ptyScript = String.raw`
import os, pty, sys, struct, fcntl, termios, select
cols, rows = int(sys.argv[1]), int(sys.argv[2])
argv = sys.argv[3:]
pid, fd = pty.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    except OSError as e:
        sys.stderr.write('%s: %s\n' % (argv[0], e.strerror))
        os._exit(127)
def resize(c, r):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack('HHHH', r, c, 0, 0))
resize(cols, rows)
buf = b''
stdin_open = True
while True:
    watch = [fd] + ([0] if stdin_open else [])
    ready, _, _ = select.select(watch, [], [])
    if fd in ready:
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b''
        if not data:
            break
        os.write(1, data)
    if 0 in ready:
        chunk = os.read(0, 65536)
        if not chunk:
            stdin_open = False
            continue
        buf += chunk
        while len(buf) >= 5:
            n = struct.unpack('>I', buf[1:5])[0]
            if len(buf) < 5 + n:
                break
            kind, body, buf = buf[0], buf[5:5 + n], buf[5 + n:]
            if kind == 0:
                while body:
                    body = body[os.write(fd, body):]
            elif kind == 1 and n == 4:
                resize(*struct.unpack('>HH', body))
_, status = os.waitpid(pid, 0)
code = os.waitstatus_to_exitcode(status)
sys.exit(128 - code if code < 0 else code)
`

/** argv that runs `command` on a new pty of the given size. */
export function ptyArgv(cols: number, rows: number, command: string[]): string[] {
  return ['/usr/bin/python3', '-c', ptyScript, String(cols), String(rows), ...command]
}

/** A frame of input bytes for the pty. */
export function ptyInputFrame(data: Uint8Array): Uint8Array {
  const frame = Buffer.alloc(5 + data.byteLength)
  frame.writeUInt8(0, 0)
  frame.writeUInt32BE(data.byteLength, 1)
  frame.set(data, 5)
  return frame
}

/** A frame that resizes the pty. */
export function ptyResizeFrame(cols: number, rows: number): Uint8Array {
  const frame = Buffer.alloc(9)
  frame.writeUInt8(1, 0)
  frame.writeUInt32BE(4, 1)
  frame.writeUInt16BE(cols, 5)
  frame.writeUInt16BE(rows, 7)
  return frame
}
