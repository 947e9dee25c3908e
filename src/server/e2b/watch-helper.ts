/**
 * Directory watching with inotify inside the sandbox: the host's busybox has no `inotifyd`, and
 * polling would miss short-lived files, so a python3 helper calls inotify through ctypes. It
 * prints `ready` once every watch is set (so the stream's start event means "watching"), then
 * one JSON line per event: `{"t": "create"|"write"|"remove"|"rename"|"chmod", "n": <path relative to the root>}`.
 * Recursive watches add subdirectories as they appear. Asked for entries, a create, write or chmod
 * event also carries `"e"`: the entry's record in the lister's fields (entry-info.ts), stat-ed by
 * the watcher itself (a remove or rename names a path whose entry is gone, so carries none, as envd).
 */

/** The helper, run as `python3 -c <script> <dir> <0|1 recursive> <0|1 entries>`. */
export const watchScript = String.raw`
import ctypes, os, struct, sys, json, stat, pwd, grp
libc = ctypes.CDLL(None, use_errno=True)
root, recursive, entries = sys.argv[1], sys.argv[2] == '1', sys.argv[3] == '1'
def letter(m):
    for test, l in ((stat.S_ISREG, 'f'), (stat.S_ISDIR, 'd'), (stat.S_ISLNK, 'l'), (stat.S_ISCHR, 'c'), (stat.S_ISBLK, 'b'), (stat.S_ISFIFO, 'p'), (stat.S_ISSOCK, 's')):
        if test(m):
            return l
    return 'U'
def named(lookup, i):
    try:
        return lookup(i)[0]
    except KeyError:
        return str(i)
def meta(p):
    out, total = [], 0
    try:
        names = os.listxattr(p)
    except OSError:
        return ''
    for name in names:
        if not name.startswith('user.e2b.'):
            continue
        try:
            value = os.getxattr(p, name)
        except OSError:
            continue
        key = os.fsencode(name)[9:]
        total += len(key) + len(value)
        if total > 65536:
            break
        out.append(key.hex() + ':' + value.hex())
    return ','.join(out)
def entry(p):
    try:
        s = os.lstat(p)
    except OSError:
        return None
    kind = letter(s.st_mode)
    through, target, tmode = kind, '', ''
    if kind == 'l':
        try:
            t = os.stat(p)
            through, tmode, target = letter(t.st_mode), '%o' % (t.st_mode & 0o7777), os.path.realpath(p, strict=True)
        except OSError:
            through, target = 'N', p
    sec, ns = divmod(s.st_mtime_ns, 10**9)
    return [kind, through, '%o' % (s.st_mode & 0o7777), str(s.st_size), '%d.%09d' % (sec, ns), named(pwd.getpwuid, s.st_uid), named(grp.getgrgid, s.st_gid), p, target, tmode, meta(p)]
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
                event = {'t': kind, 'n': os.path.relpath(full, root)}
                if entries and kind in ('create', 'write', 'chmod'):
                    found = entry(full)
                    if found:
                        event['e'] = found
                print(json.dumps(event), flush=True)
                break
`

/** argv that watches `dir`; with `entries`, events carry the entry they are about. */
export function watchArgv(dir: string, recursive: boolean, entries: boolean): string[] {
  return ['/usr/bin/python3', '-c', watchScript, dir, recursive ? '1' : '0', entries ? '1' : '0']
}
