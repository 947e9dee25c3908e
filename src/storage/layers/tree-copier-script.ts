/**
 * The resident tree copier (tree-copier.ts) as python3 source. Node's fs has no xattr calls (overlay
 * marks opaque dirs with one), no mknod (whiteouts are 0/0 character devices) and no `*at` calls;
 * Python's os module has all three, and one process started once copies every snapshot after it
 * without the spawn that a `cp -a` per snapshot costs.
 *
 * It also makes, limits and deletes btrfs subvolumes (the ioctls that `btrfs subvolume snapshot`,
 * `btrfs qgroup limit -e` and `btrfs subvolume delete` make), and turns on simple quotas (the ioctl
 * of `btrfs quota enable --simple`, which Debian 12's btrfs-progs lacks).
 *
 * Protocol, one line each way per request: `{"op": "copy", "src": ..., "dest": ...}`,
 * `{"op": "snapshot", "src": ..., "dest": ..., "readonly": true}` (absolute paths; `dest` must not
 * exist), `{"op": "limit", "path": ..., "bytes": N}` (an exclusive-bytes limit on the subvolume's own
 * qgroup), `{"op": "delete", "path": ...}` (a subvolume) or `{"op": "quota", "path": ...}` (simple
 * quotas on for the filesystem; a kernel without them answers EINVAL) or `{"op": "clear", "upper": ...,
 * "dest": ...}` (squash.ts: removes from the layer `dest` what the layer `upper` replaces rather than
 * merges with, and makes the opaque dirs it lays over files), the answer `{"ok": true}` or `{"ok": false, "errno": "ENOSPC", "fallback": <whether
 * cp -a may do what this could not: a tree too deep for its descriptors, a sparse file>}`; an entry that
 * changed between the walk's lstat and its open answers ESTALE.
 *
 * Every entry is reached through the file descriptor of its parent dir, with O_NOFOLLOW, and
 * checked against the lstat of the walk (same inode, same type), so no symlink in the tree is
 * followed and an entry swapped during the copy fails it. Links are copied as links; devices,
 * FIFOs and sockets are made afresh (mknod); hard links within the tree stay linked; owners,
 * modes (setuid included: set after chown, which clears it), xattrs of every namespace and
 * atime/mtime are kept. File data is reflinked where the filesystem can, else copied in the kernel.
 */
export const treeCopierScript = String.raw`
import contextlib, errno, fcntl, json, os, stat, struct, sys
FICLONE = 0x40049409
BTRFS_IOC_SNAP_CREATE_V2 = 0x50009417
BTRFS_SUBVOL_RDONLY = 1 << 1
BTRFS_IOC_QGROUP_LIMIT = 0x8030942b
BTRFS_QGROUP_LIMIT_MAX_EXCL = 1 << 1
BTRFS_IOC_SNAP_DESTROY = 0x5000940f
BTRFS_IOC_QUOTA_CTL = 0xc0109428
BTRFS_QUOTA_CTL_ENABLE_SIMPLE_QUOTA = 4
NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC
os.umask(0)

@contextlib.contextmanager
def directory(name, dir_fd=None):
    # A dir opened without following a link in its last component (and, through dir_fd, in none).
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | NOFOLLOW, dir_fd=dir_fd)
    try:
        yield fd
    finally:
        os.close(fd)

class Fallback(Exception):
    pass

class Changed(Exception):
    pass

def copy_xattrs(src, dest, follow):
    try:
        names = os.listxattr(src, follow_symlinks=follow)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return
        raise
    for name in names:
        os.setxattr(dest, name, os.getxattr(src, name, follow_symlinks=follow), follow_symlinks=follow)

def copy_data(src, dest, st):
    if st.st_size == 0:
        return
    try:
        fcntl.ioctl(dest, FICLONE, src)
        return
    except OSError:
        pass
    if st.st_blocks * 512 < st.st_size:
        # A sparse file (a sandbox's truncate -s 1T takes no space) would be copied whole: cp -a keeps its holes.
        raise Fallback()
    done = 0
    try:
        while True:
            n = os.copy_file_range(src, dest, 1 << 30)
            if n == 0:
                return
            done += n
    except OSError as e:
        if done or e.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    while True:
        chunk = os.read(src, 1 << 20)
        if not chunk:
            return
        view = memoryview(chunk)
        while view:
            view = view[os.write(dest, view):]

def same(st, fst):
    if st.st_ino != fst.st_ino or st.st_dev != fst.st_dev or stat.S_IFMT(st.st_mode) != stat.S_IFMT(fst.st_mode):
        raise Changed()

class Copy:
    def __init__(self, src, dest):
        self.links = {}
        self.src_root = os.open(src, os.O_RDONLY | os.O_DIRECTORY | NOFOLLOW)
        st = os.fstat(self.src_root)
        os.mkdir(dest, 0o700)
        self.dest_root = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | NOFOLLOW)
        try:
            self.tree(self.src_root, self.dest_root, '')
            self.finish_fd(self.src_root, self.dest_root, st)
        finally:
            os.close(self.src_root)
            os.close(self.dest_root)

    def tree(self, sdir, ddir, rel):
        with os.scandir(sdir) as it:
            names = [e.name for e in it]
        for name in names:
            path = rel + '/' + name if rel else name
            st = os.stat(name, dir_fd=sdir, follow_symlinks=False)
            kind = stat.S_IFMT(st.st_mode)
            if kind == stat.S_IFDIR:
                self.dir(sdir, ddir, name, path, st)
                continue
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self.links:
                os.link(self.links[key], name, src_dir_fd=self.dest_root, dst_dir_fd=ddir, follow_symlinks=False)
                continue
            if kind == stat.S_IFREG:
                self.file(sdir, ddir, name, st)
            elif kind == stat.S_IFLNK:
                os.symlink(os.readlink(name, dir_fd=sdir), name, dir_fd=ddir)
                self.finish_path(sdir, ddir, name, st)
            else:
                os.mknod(name, st.st_mode, st.st_rdev, dir_fd=ddir)
                self.finish_path(sdir, ddir, name, st)
            if st.st_nlink > 1:
                self.links[key] = path

    def dir(self, sdir, ddir, name, path, st):
        with directory(name, sdir) as fd:
            same(st, os.fstat(fd))
            os.mkdir(name, 0o700, dir_fd=ddir)
            with directory(name, ddir) as out:
                self.tree(fd, out, path)
                self.finish_fd(fd, out, st)

    def file(self, sdir, ddir, name, st):
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | NOFOLLOW, dir_fd=sdir)
        try:
            fst = os.fstat(fd)
            same(st, fst)
            out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o600, dir_fd=ddir)
            try:
                copy_data(fd, out, fst)
                self.finish_fd(fd, out, fst)
            finally:
                os.close(out)
        finally:
            os.close(fd)

    def finish_fd(self, src, dest, st):
        # chown first: it clears setuid bits and file capabilities, which the xattrs and the mode put back.
        os.fchown(dest, st.st_uid, st.st_gid)
        copy_xattrs(src, dest, True)
        os.fchmod(dest, stat.S_IMODE(st.st_mode))
        os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))

    def finish_path(self, sdir, ddir, name, st):
        # Links and device nodes cannot be opened: their xattrs are reached through the parents'
        # descriptors, the last component never followed.
        os.chown(name, st.st_uid, st.st_gid, dir_fd=ddir, follow_symlinks=False)
        copy_xattrs('/proc/self/fd/%d/%s' % (sdir, name), '/proc/self/fd/%d/%s' % (ddir, name), False)
        if not stat.S_ISLNK(st.st_mode):
            # A node this process just made in a dir that only it writes to: no link to follow.
            os.chmod(name, stat.S_IMODE(st.st_mode), dir_fd=ddir)
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=ddir, follow_symlinks=False)

OPAQUE = 'trusted.overlay.opaque'

def opaque(fd):
    try:
        return os.getxattr(fd, OPAQUE) == b'y'
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            return False
        raise

def remove_entry(dfd, name):
    st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dfd)
        return
    with directory(name, dfd) as fd:
        same(st, os.fstat(fd))
        with os.scandir(fd) as it:
            names = [e.name for e in it]
        for child in names:
            remove_entry(fd, child)
    os.rmdir(name, dir_fd=dfd)

def clear(ufd, dfd):
    with os.scandir(ufd) as it:
        names = [e.name for e in it]
    for name in names:
        try:
            below = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        st = os.stat(name, dir_fd=ufd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            remove_entry(dfd, name)
            continue
        with directory(name, ufd) as fd:
            same(st, os.fstat(fd))
            if opaque(fd):
                # The copy brings the dir with its mark.
                remove_entry(dfd, name)
            elif not stat.S_ISDIR(below.st_mode) or (stat.S_ISCHR(below.st_mode) and below.st_rdev == 0):
                # A plain dir over a file or a whiteout hides everything under it below: made here,
                # opaque, for the copy to fill.
                remove_entry(dfd, name)
                os.mkdir(name, 0o700, dir_fd=dfd)
                with directory(name, dfd) as made:
                    os.setxattr(made, OPAQUE, b'y')
            else:
                with directory(name, dfd) as out:
                    clear(fd, out)

def clear_under(upper, dest):
    with directory(upper) as u, directory(dest) as d:
        clear(u, d)

def snapshot(src, dest, readonly):
    parent, name = os.path.split(dest)
    with directory(src) as s, directory(parent) as d:
        # struct btrfs_ioctl_vol_args_v2: fd, transid, flags, a union of 32 bytes, name[4040].
        # A mutable buffer: fcntl passes an immutable one of more than 1024 bytes nowhere.
        args = bytearray(struct.pack('=qQQ32s4040s', s, 0, BTRFS_SUBVOL_RDONLY if readonly else 0, b'', os.fsencode(name)))
        fcntl.ioctl(d, BTRFS_IOC_SNAP_CREATE_V2, args, True)

def limit(path, nbytes):
    with directory(path) as d:
        # struct btrfs_ioctl_qgroup_limit_args: qgroupid (0: the subvolume's own), then flags,
        # max_rfer, max_excl, rsv_rfer, rsv_excl.
        fcntl.ioctl(d, BTRFS_IOC_QGROUP_LIMIT, struct.pack('=6Q', 0, BTRFS_QGROUP_LIMIT_MAX_EXCL, 0, nbytes, 0, 0))

def delete(path):
    parent, name = os.path.split(path)
    with directory(parent) as d:
        # struct btrfs_ioctl_vol_args: fd (unused here), name[4088].
        args = bytearray(struct.pack('=q4088s', 0, os.fsencode(name)))
        fcntl.ioctl(d, BTRFS_IOC_SNAP_DESTROY, args, True)

def simple_quotas(path):
    with directory(path) as d:
        # struct btrfs_ioctl_quota_ctl_args: cmd, status.
        fcntl.ioctl(d, BTRFS_IOC_QUOTA_CTL, bytearray(struct.pack('=2Q', BTRFS_QUOTA_CTL_ENABLE_SIMPLE_QUOTA, 0)), True)

def answer(value):
    sys.stdout.write(json.dumps(value) + '\n')
    sys.stdout.flush()

for line in sys.stdin:
    request = json.loads(line)
    try:
        if request['op'] == 'snapshot':
            snapshot(request['src'], request['dest'], request['readonly'])
        elif request['op'] == 'limit':
            limit(request['path'], request['bytes'])
        elif request['op'] == 'delete':
            delete(request['path'])
        elif request['op'] == 'quota':
            simple_quotas(request['path'])
        elif request['op'] == 'clear':
            clear_under(request['upper'], request['dest'])
        else:
            Copy(request['src'], request['dest'])
        answer({'ok': True})
    except Changed:
        answer({'ok': False, 'errno': 'ESTALE', 'fallback': False})
    except (RecursionError, Fallback):
        answer({'ok': False, 'errno': 'ELOOP', 'fallback': True})
    except OSError as e:
        name = errno.errorcode.get(e.errno, 'EIO')
        answer({'ok': False, 'errno': name, 'fallback': name in ('EMFILE', 'ENFILE', 'ENAMETOOLONG')})
`
