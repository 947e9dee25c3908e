/**
 * Directory watching with inotify inside the sandbox: the host's busybox has no `inotifyd`, and
 * polling would miss short-lived files, so a python3 helper calls inotify through ctypes. It
 * prints `ready` once every watch is set (so the stream's start event means "watching"), then
 * one JSON line per event: `{"t": "create"|"write"|"remove"|"rename"|"chmod", "n": <path relative to the root>}`.
 * Recursive watches add subdirectories as they appear.
 */

/** The helper, run as `python3 -c <script> <dir> <0|1 recursive>`. */
export const watchScript = String.raw`
import ctypes, os, struct, sys, json
libc = ctypes.CDLL(None, use_errno=True)
root, recursive = sys.argv[1], sys.argv[2] == '1'
IN_MODIFY, IN_ATTRIB, IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x2, 0x4, 0x40, 0x80, 0x100, 0x200
IN_ISDIR = 0x40000000
mask = IN_MODIFY | IN_ATTRIB | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
fd = libc.inotify_init1(0)
if fd < 0:
    sys.stderr.write('inotify_init1: %s\n' % os.strerror(ctypes.get_errno()))
    sys.exit(1)
wds = {}
def add(path):
    wd = libc.inotify_add_watch(fd, path.encode(), mask)
    if wd < 0:
        return ctypes.get_errno()
    wds[wd] = path
    return 0
err = add(root)
if err:
    sys.stderr.write('%s: %s\n' % (root, os.strerror(err)))
    sys.exit(1)
if recursive:
    for base, dirs, _ in os.walk(root):
        for d in dirs:
            add(os.path.join(base, d))
print('ready', flush=True)
kinds = ((IN_CREATE, 'create'), (IN_MOVED_TO, 'create'), (IN_MODIFY, 'write'), (IN_DELETE, 'remove'), (IN_MOVED_FROM, 'rename'), (IN_ATTRIB, 'chmod'))
while True:
    data = os.read(fd, 65536)
    i = 0
    while i < len(data):
        wd, m, _, n = struct.unpack_from('iIII', data, i)
        name = data[i + 16:i + 16 + n].rstrip(b'\0').decode('utf-8', 'replace')
        i += 16 + n
        base = wds.get(wd)
        if base is None or not name:
            continue
        full = os.path.join(base, name)
        if recursive and m & IN_ISDIR and m & (IN_CREATE | IN_MOVED_TO):
            add(full)
        for bit, kind in kinds:
            if m & bit:
                print(json.dumps({'t': kind, 'n': os.path.relpath(full, root)}), flush=True)
                break
`

/** argv that watches `dir`. */
export function watchArgv(dir: string, recursive: boolean): string[] {
  return ['/usr/bin/python3', '-c', watchScript, dir, recursive ? '1' : '0']
}
