"""Runs first inside a sandbox, before the untrusted program: shapes its world, then execs it.

`LocalSandbox` starts `unshare -U -r -n -p -f --kill-child --mount-proc -- python -I -S
_launcher.py SPEC` (or, with `isolation: none`, the launcher alone). The launcher is the new
PID namespace's first process and holds every capability of the new user namespace, which it
spends, then drops, in this order:

1. reads the files the parent wrote (the program, the call harness) before anything is hidden;
2. caps the namespace's PIDs (`/proc/sys/kernel/pid_max`, per PID namespace since Linux 6.14):
   RLIMIT_NPROC is not enforced for uid 0, so for a root parent this is the fork-bomb bound;
3. hides the parent's home and working directory, /root, /home, /run, /tmp, /var/tmp and
   any `hide_paths` behind empty tmpfs, binding back the interpreter's directories when they
   live there (opened as O_PATH fds first);
4. replaces /dev with a tmpfs holding null, zero, full, random and urandom only;
5. mounts a size-capped tmpfs at the work directory and puts the files there;
6. remounts every mount read-only except that tmpfs (the flags the kernel locked are kept,
   else the remount is refused), so nothing outside the scratch space can be written;
7. for assert-style tests (`hide_proc`), lays an empty read-only tmpfs over /proc, so the
   program cannot read the test harness's memory through /proc/self/mem;
8. sets the resource limits, then drops every capability: bounding set emptied, securebits
   NOROOT locked, no_new_privs, so the exec'd program holds none and cannot undo steps 6-7;
9. execs the program: it becomes PID 1, and when it exits every process it left dies. A
   harness named `inline` (the assert harness, itself Python under `-I -S`) runs in this
   process instead, which saves the start of a second interpreter.

The status pipe (close-on-exec) tells the parent how setup went: "+" means the program is
being exec'd, and starts its clock; "!" and a message, or EOF with nothing (unshare failed
before the launcher ran), mean the sandbox, not the program, failed (exit 127). EOF itself
says little: `unshare` holds the pipe open until it exits.

The spec comes as hex of `marshal` data (format 4): unlike `json`, whose import pulls in
`re` and `enum`, marshal is built in, which saves milliseconds on every test.

Standard library only: it runs before any site-packages are importable.
"""

from __future__ import annotations

import ctypes
import marshal
import os
import resource
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND = 32, 1024, 2048, 4096
MS_REC, MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 16384, 1 << 18, 1 << 21, 1 << 24
_KEPT_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC,
               "noatime": MS_NOATIME, "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME,
               "strictatime": MS_STRICTATIME}
PR_CAPBSET_DROP, PR_SET_SECUREBITS, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 24, 28, 38, 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
# NOROOT, NO_SETUID_FIXUP, KEEP_CAPS, NO_CAP_AMBIENT_RAISE: each with its lock bit
SECUREBITS_LOCKED = 0b1111_1111
DEVICES = ("null", "zero", "full", "random", "urandom")
SETUP_FAILED = 127

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong]


def _bytes(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(source: str | None, target: str, fstype: str | None, flags: int,
          data: str | None = None) -> None:
    """mount(2), raising OSError with the target in the message."""
    if _libc.mount(_bytes(source), _bytes(target), _bytes(fstype), flags, _bytes(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target}: {os.strerror(err)}")


def prctl(option: int, arg: int = 0, arg3: int = 0) -> None:
    """prctl(2), raising OSError."""
    if _libc.prctl(option, arg, arg3, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl {option}: {os.strerror(err)}")


def _unescape(field: str) -> str:
    """Mount points in mountinfo escape space, tab, newline and backslash as octal."""
    return field.encode().decode("unicode_escape").encode("latin-1").decode(
        sys.getfilesystemencoding(), "surrogateescape")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _visible(path: str, fd: int) -> bool:
    try:
        here, there = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _limit_pids(count: int) -> None:
    try:
        with open("/proc/sys/kernel/pid_max", "w") as f:
            f.write(str(count))
    except OSError:
        pass  # before Linux 6.14 pid_max is global: RLIMIT_NPROC and the wall limit remain


def _hide(paths: list[str], keep: list[str], workdir: str) -> None:
    """Empty tmpfs over each of `paths`; the `keep` directories bound back where they were."""
    fds = {}
    for path in keep:
        try:
            fds[path] = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            continue
    devices = {}
    for name in DEVICES:
        try:
            devices[name] = os.open(f"/dev/{name}", os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue
    for path in sorted(set(paths) | {"/dev"}, key=len):
        if path == "/" or not os.path.isdir(path) or os.path.islink(path):
            continue
        flags = MS_NOSUID | MS_NODEV | (MS_NOEXEC if path == "/dev" else 0)
        mount("tmpfs", path, "tmpfs", flags, "mode=0755,size=1m")
    for name, fd in devices.items():
        open(f"/dev/{name}", "w").close()
        mount(f"/proc/self/fd/{fd}", f"/dev/{name}", None, MS_BIND)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"/dev/{name}")
    for path in sorted(fds, key=len):
        if not _visible(path, fds[path]):
            os.makedirs(path, mode=0o755, exist_ok=True)
            mount(f"/proc/self/fd/{fds[path]}", path, None, MS_BIND | MS_REC)
    for fd in [*fds.values(), *devices.values()]:
        os.close(fd)
    os.makedirs(workdir, mode=0o700, exist_ok=True)


def _read_only_everywhere(writable: str) -> None:
    """Remount every mount read-only but `writable`, keeping the flags each mount has."""
    with open("/proc/self/mountinfo") as f:
        entries = [line.split() for line in f]
    for fields in entries:
        target, options = _unescape(fields[4]), fields[5].split(",")
        if target == writable:
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        for option in options:
            flags |= _KEPT_FLAGS.get(option, 0)
        try:
            mount(None, target, None, flags)
        except FileNotFoundError:
            continue  # shadowed by a tmpfs laid over a parent: unreachable anyway
        except NotADirectoryError:
            continue


def _set_limits(limits: dict[str, int]) -> None:
    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), (value, value))


def _last_cap() -> int:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


def _drop_privileges(last: int) -> None:
    """No capability survives the exec, and none can be regained (setuid files included)."""
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    for cap in range(last + 1):
        prctl(PR_CAPBSET_DROP, cap)
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    prctl(PR_SET_SECUREBITS, SECUREBITS_LOCKED)


def setup(spec: dict) -> dict[str, bytes]:
    """Everything before the exec (see the module docstring); raises on any failure.
    Returns the files the parent wrote, read before anything was hidden."""
    workdir = spec["workdir"]
    files = {}
    for name in spec["files"]:
        with open(os.path.join(workdir, name), "rb") as f:
            files[name] = f.read()
    if spec["isolate"]:
        mount(None, "/", None, MS_REC | MS_PRIVATE)
        _limit_pids(spec["pid_max"])
        _hide(spec["hide"], spec["keep"], workdir)
        mount("tmpfs", workdir, "tmpfs", MS_NOSUID | MS_NODEV,
              f"mode=0700,size={spec['scratch_bytes']}")
        for name, data in files.items():
            with open(os.path.join(workdir, name), "wb") as f:
                f.write(data)
        _read_only_everywhere(workdir)
        last_cap = _last_cap()
        if spec.get("hide_proc"):  # assert tests: no /proc/self/mem to read the harness from
            mount("tmpfs", "/proc", "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  "mode=0555,size=4k")
    os.chdir(workdir)
    _set_limits(spec["limits"])
    if spec["isolate"]:
        _drop_privileges(last_cap)
    return files


def _run_inline(name: str, code: object) -> None:
    """Run a harness in this process instead of exec'ing a second interpreter (one start
    fewer per test): as `__main__`, with bytecode writing off like `python -B`. The
    harness ends the process itself; an exception it lets through is exit status 1."""
    sys.dont_write_bytecode = True
    sys.argv = [name]
    try:
        exec(code, {"__name__": "__main__", "__file__": name, "__builtins__": __builtins__})
    except BaseException as exc:  # noqa: BLE001 - reported on stderr, as python would
        try:
            sys.stderr.write(f"{type(exc).__name__}: {exc}\n")
            sys.stderr.flush()
        finally:
            os._exit(1)
    os._exit(0)


def main() -> None:
    spec = marshal.loads(bytes.fromhex(sys.argv[1]))
    status = spec["status_fd"]
    try:
        files = setup(spec)
        inline = spec.get("inline")
        code = compile(files[inline], inline, "exec") if inline else None
        os.set_inheritable(status, False)
        os.write(status, b"+")  # then EOF at the exec: the program runs from here on
        if inline:
            os.close(status)
        else:
            os.execve(spec["argv"][0], spec["argv"], spec["env"])
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the parent
        try:
            message = f"!sandbox setup failed: {type(exc).__name__}: {exc}"
            os.write(status, message.encode(errors="replace")[:4000])
        finally:
            os._exit(SETUP_FAILED)
    if inline:
        _run_inline(inline, code)


if __name__ == "__main__":
    main()
