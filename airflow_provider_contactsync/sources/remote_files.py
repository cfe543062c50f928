"""SFTP and FTP(S) folders behind the :class:`~.files.FileSystem` protocol, on the official provider hooks.

Why it looks like this:

- **Host keys are verified, whatever the hook's default**: an SFTP connection needs the server's key
  in its ``host_key`` extra or in ``~/.ssh/known_hosts``. Only ``"no_host_key_check": "true"`` in the
  extra turns verification off (logged once per connection). An unknown key is refused *before*
  connecting, with a :class:`HostKeyError` that says how to fix it: the hook would otherwise retry
  the refused connection for seconds and end with paramiko's terse message.
- **Constant memory**: files stream. SFTP reads ahead a bounded window of pipelined requests
  (paramiko's ``readv``); a whole-file ``prefetch()`` would queue every request at once, and closing
  such a file early either drains the rest of the file into memory or leaves its request thread
  spinning. FTP reads the data connection of a ``RETR`` as it arrives.
- **One FTP transfer, one connection**: FTP allows one transfer per control connection, so each open
  FTP file has its own; listing, moving and the next open never wait for a reader that stopped
  early. Closing a file early closes its data connection (the portable abort: ``ABOR`` needs
  out-of-band data, which ftplib cannot send over TLS) and reads the server's 426 reply.
- **One listing per folder**: sizes and times come with the listing (SFTP ``listdir_attr``, FTP
  ``MLSD``), not one request per file; servers without MLSD (vsftpd) fall back to NLST + SIZE + MDTM,
  asked only for names the pattern wants.
- **Never outside the folder**: names from the server with ``/`` or ``..`` are dropped, and an SFTP
  symlink is followed only to a regular file whose real path is inside the folder's real path. FTP
  servers do not say where a link leads; they keep users inside their own root.

Patterns mean what they mean for local folders (:func:`.files.matches`): without ``/`` a pattern is
matched against the file name, in the folder only or, with ``recursive``, in subfolders too; with ``/``
against the path relative to the folder (subfolders are walked for it). Folders and move targets given
as relative paths are relative to the login folder, ``exclude`` ones to the listed folder; every path
returned is absolute.

Writing (export destinations, :mod:`airflow_provider_contactsync.exports.destinations`) uses the same
connections: :meth:`~SftpFileSystem.makedirs`, :meth:`~SftpFileSystem.upload` (a stream written in
blocks, constant memory), :meth:`~SftpFileSystem.file_size` and :meth:`~SftpFileSystem.rename` (which,
unlike ``move``, replaces an existing target), with ``open`` and ``delete`` above for reading back and
cleaning up.

Needs the ``sftp`` extra (apache-airflow-providers-sftp and -ftp); they are imported on first use.
"""

from __future__ import annotations

import datetime as dt
import ftplib
import io
import logging
import os
import posixpath
import socket
import ssl
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from airflow_provider_contactsync.core.errors import ConfigurationError
from airflow_provider_contactsync.sources.files import FileInfo, FileSystem, LocalFileSystem, matches

if TYPE_CHECKING:
    from airflow.providers.ftp.hooks.ftp import FTPHook
    from airflow.providers.sftp.hooks.sftp import SFTPHook
    from paramiko import SFTPClient, SFTPFile

__all__ = ["FtpFileSystem", "HostKeyError", "SftpFileSystem", "filesystem_for", "ftp_filesystem"]

log = logging.getLogger(__name__)

FTP_TIMEOUT = 60.0
"""Seconds an FTP control or data socket may stay silent; the FTP hooks set no timeout at all."""
_SFTP_BLOCK = 32768  # paramiko's largest read request
_SFTP_WINDOW = 64  # read requests in flight: 2 MiB ahead of the reader
_FTP_BUFFER = 65536
_MAX_LINE = 8192  # as ftplib: a listing line longer than this is a broken server
_warned_no_host_key_check: set[str] = set()


class HostKeyError(ConfigurationError):
    """The SFTP server's host key is unknown or not the expected one: refused before any login."""


class _SourceLocation(Protocol):
    """What :func:`filesystem_for` needs of a source definition (``FileSource`` has it)."""

    @property
    def type(self) -> str: ...

    @property
    def conn_id(self) -> str | None: ...


def filesystem_for(source: _SourceLocation) -> FileSystem:
    """The file system of a file source: local, SFTP, or FTP (FTPS for an ``ftps`` connection or ``tls`` extra)."""
    if source.type == "file":
        return LocalFileSystem()
    if source.type not in ("sftp", "ftp"):
        raise ConfigurationError(f"no file system for source type {source.type!r}", key_path="source.type")
    if not source.conn_id:
        raise ConfigurationError(f"conn_id is required for {source.type} sources", key_path="source.conn_id")
    if source.type == "sftp":
        return SftpFileSystem(source.conn_id)
    conn = _connection(source.conn_id)
    tls = conn.conn_type == "ftps" or _is_true(conn.extra_dejson.get("tls"))
    return FtpFileSystem(source.conn_id, tls=tls)


def ftp_filesystem(conn_id: str, *, tls: bool = False) -> FtpFileSystem:
    """An FTP file system, with TLS when asked or when the connection says so (``ftps`` type, ``tls`` extra).

    A connection that asks for TLS never gets clear text, whatever the caller asked.
    """
    conn = _connection(conn_id)
    tls = tls or conn.conn_type == "ftps" or _is_true(conn.extra_dejson.get("tls"))
    return FtpFileSystem(conn_id, tls=tls)


class SftpFileSystem:
    """A folder on an SFTP server, through ``SFTPHook``; host keys always verified unless opted out.

    :param conn_id: Airflow connection (type ``sftp`` or ``ssh``): password, ``key_file`` or
        ``private_key`` auth as the hook reads them; ``host_key`` extra or ``~/.ssh/known_hosts``.
    """

    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id
        self._hook: SFTPHook | None = None
        self._sftp: SFTPClient | None = None
        self._home = "/"

    def list_files(
        self, folder: str, pattern: str, *, recursive: bool = False, exclude: Sequence[str] = ()
    ) -> list[FileInfo]:
        """Regular files under ``folder`` ('' = login folder) matching ``pattern``, sorted by path.

        :param exclude: folders never searched (relative to ``folder``, or absolute), e.g. the archive.
        """
        sftp = self._client()
        base = self._absolute(folder)
        try:
            attrs = sftp.stat(base)
        except FileNotFoundError:
            raise FileNotFoundError(f"no folder {base!r} on SFTP connection {self.conn_id!r}") from None
        if not stat.S_ISDIR(attrs.st_mode or 0):
            raise FileNotFoundError(f"{base!r} on SFTP connection {self.conn_id!r} is not a folder")
        real_base: list[str] = []  # resolved once, on the first symlink

        def entries(path: str) -> Iterator[_Entry]:
            try:
                items = sftp.listdir_attr(path)
            except UnicodeDecodeError as exc:  # paramiko decodes every name of a listing as UTF-8
                bad = exc.object[max(exc.start - 20, 0) : exc.end + 20]
                raise ConfigurationError(
                    f"a file name in {path!r} on SFTP connection {self.conn_id!r} is not valid UTF-8 "
                    f"(...{bad!r}...): SFTP cannot list the folder until it is renamed",
                    key_path="source.path",
                ) from None
            for item in items:
                mode = item.st_mode or 0
                kind = "file" if stat.S_ISREG(mode) else "dir" if stat.S_ISDIR(mode) else ""
                kind = "link" if stat.S_ISLNK(mode) else kind
                yield _Entry(item.filename, kind, item.st_size or 0, float(item.st_mtime or 0))

        def follow(path: str) -> _Entry | None:
            """The link's target, if it is a regular file inside the folder (real paths compared)."""
            try:
                if not real_base:
                    real_base.append(sftp.normalize(base))
                target = sftp.normalize(path)
                attrs = sftp.stat(target)
            except OSError:  # dangling link, loop, no permission
                return None
            if not _inside(real_base[0], target) or not stat.S_ISREG(attrs.st_mode or 0):
                return None
            return _Entry(posixpath.basename(path), "file", attrs.st_size or 0, float(attrs.st_mtime or 0))

        return _walk(base, pattern, recursive=recursive, exclude=exclude, entries=entries, resolve=follow)

    def open(self, path: str) -> io.BufferedReader:
        """A binary stream of the file, read ahead in bounded windows; closed with its context."""
        remote = self._client().open(path, "rb")
        try:
            size = remote.stat().st_size or 0
        except BaseException:
            remote.close()
            raise
        return io.BufferedReader(_SftpStream(remote, size), buffer_size=_SFTP_BLOCK)

    def move(self, path: str, folder: str) -> str:
        """Move a file into ``folder`` (created if missing), never over an existing file; return its new path."""
        sftp = self._client()
        folder = self._absolute(folder)
        _makedirs(folder, is_folder=lambda p: _sftp_is_folder(sftp, p), mkdir=sftp.mkdir)
        target = _free_name(folder, posixpath.basename(path), exists=lambda p: _sftp_exists(sftp, p))
        sftp.rename(path, target)  # SFTP v3 rename refuses to overwrite, unlike posix_rename
        return target

    def delete(self, path: str) -> None:
        self._client().remove(path)

    def makedirs(self, folder: str) -> str:
        """Create ``folder`` ('' = login folder) and its missing parents; return its absolute path."""
        sftp = self._client()
        folder = self._absolute(folder)
        _makedirs(folder, is_folder=lambda p: _sftp_is_folder(sftp, p), mkdir=sftp.mkdir)
        return folder

    def upload(self, source: BinaryIO, path: str) -> int:
        """Write ``source`` to ``path`` (created, or truncated if it exists); return the bytes sent.

        Blocks are pipelined (sent without waiting for each reply, as ``putfo`` does); the server's
        replies are all checked when the file is closed, so a refused write raises here.
        """
        sent = 0
        with self._client().open(path, "wb") as remote:
            remote.set_pipelined(True)
            while block := source.read(_SFTP_BLOCK):
                remote.write(block)
                sent += len(block)
        return sent

    def file_size(self, path: str) -> int | None:
        """The size of the regular file at ``path``, or None when there is none (missing, or not a file)."""
        try:
            attrs = self._client().stat(path)
        except FileNotFoundError:
            return None
        return (attrs.st_size or 0) if stat.S_ISREG(attrs.st_mode or 0) else None

    def rename(self, path: str, target: str) -> None:
        """Rename ``path`` to ``target``, **replacing** ``target`` if it exists (``move`` never does).

        Atomic with OpenSSH's ``posix-rename@openssh.com`` extension: readers see the old file or the
        new one, never neither. A server without it gets the SFTP v3 rename (which refuses to
        overwrite) after the old target is removed: for that moment no file has the name.
        """
        sftp = self._client()
        try:
            sftp.posix_rename(path, target)
            return
        except OSError as exc:
            if exc.errno is not None:  # no such file, permission denied: the server understood
                raise
            log.info(
                "SFTP connection %r: posix-rename refused (%s); removing %r, then renaming", self.conn_id, exc, target
            )
        if _sftp_exists(sftp, target):
            sftp.remove(target)
        sftp.rename(path, target)

    def close(self) -> None:
        """Close the SFTP session and its SSH connection (``SFTPHook.close_conn`` leaves the SSH one open)."""
        self._sftp = None
        hook = self._hook
        if hook is None:
            return
        try:
            hook.close_conn()
        finally:
            client, hook.client = hook.client, None
            if client is not None:
                client.close()

    def __enter__(self) -> SftpFileSystem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _absolute(self, path: str) -> str:
        return posixpath.normpath(posixpath.join(self._home, path))

    def _client(self) -> SFTPClient:
        sftp = self._sftp
        if sftp is not None:
            transport = sftp.get_channel().get_transport()
            if transport is not None and transport.is_active():
                return sftp
            self.close()  # dropped: connect again
        import paramiko

        hook = self._get_hook()
        if not hook.no_host_key_check and hook.host_key is None and not _known_host(hook.remote_host, hook.port):
            raise HostKeyError(
                f"SFTP connection {self.conn_id!r}: the host key of {hook.remote_host}:{hook.port} is unknown "
                f"(no host_key extra, not in {_KNOWN_HOSTS}). Add the server's public key to the connection's "
                f'extra as "host_key": "<type> <base64>" (as in the server\'s ssh_host_*_key.pub; check what '
                f"`ssh-keyscan -p {hook.port} {hook.remote_host}` prints against it), or add the host to "
                "known_hosts."
            )
        try:
            sftp = hook.get_conn()
        except paramiko.BadHostKeyException as exc:
            self.close()
            raise HostKeyError(
                f"SFTP connection {self.conn_id!r}: {hook.remote_host}:{hook.port} presented the host key "
                f"{_fingerprint(exc.key)}, not the expected {_fingerprint(exc.expected_key)}. If the server's "
                'key really changed, update "host_key" in the connection extra (or known_hosts).'
            ) from None
        except paramiko.SSHException as exc:
            self.close()
            if "known_hosts" not in str(exc):
                raise
            raise HostKeyError(
                f"SFTP connection {self.conn_id!r}: {exc}. Add the server's public key to the connection's "
                'extra as "host_key": "<type> <base64>".'
            ) from None
        self._sftp = sftp
        self._home = sftp.normalize(".")
        return sftp

    def _get_hook(self) -> SFTPHook:
        """The hook, with verification forced on: older SSH providers default to not checking host keys."""
        if self._hook is not None:
            return self._hook
        from airflow.providers.sftp.hooks.sftp import SFTPHook

        extra = _connection(self.conn_id).extra_dejson
        try:
            hook = SFTPHook(ssh_conn_id=self.conn_id)
        except Exception as exc:  # it only reads the connection: no host, a bad key, host_key with no check
            raise ConfigurationError(f"SFTP connection {self.conn_id!r}: {exc}") from None
        if _is_true(extra.get("no_host_key_check")):
            if self.conn_id not in _warned_no_host_key_check:
                _warned_no_host_key_check.add(self.conn_id)
                log.warning(
                    "SFTP connection %r sets no_host_key_check: the server's identity is not verified, so "
                    "anyone on the network path can impersonate it. Set host_key in its extra instead.",
                    self.conn_id,
                )
        else:
            hook.no_host_key_check = False
            if hook.allow_host_key_change:
                log.warning(
                    "SFTP connection %r: allow_host_key_change is ignored; host keys are verified", self.conn_id
                )
            hook.allow_host_key_change = False  # the hook would accept any key of a host missing from known_hosts
        self._hook = hook
        return hook


class FtpFileSystem:
    """A folder on an FTP server, through ``FTPHook`` (``FTPSHook`` with ``tls``: TLS on data too).

    :param conn_id: Airflow connection of type ``ftp`` (or ``ftps``); the ``passive`` extra as the hook reads it.
    :param tls: explicit FTPS (``AUTH TLS``), the server certificate checked against the system CAs.
    """

    def __init__(self, conn_id: str, *, tls: bool = False) -> None:
        self.conn_id = conn_id
        self.tls = tls
        self._hook: FTPHook | None = None
        self._home = "/"
        self._mlsd: bool | None = None

    def list_files(
        self, folder: str, pattern: str, *, recursive: bool = False, exclude: Sequence[str] = ()
    ) -> list[FileInfo]:
        """Regular files under ``folder`` ('' = login folder) matching ``pattern``, sorted by path.

        :param exclude: folders never searched (relative to ``folder``, or absolute), e.g. the archive.
        """
        conn = self._conn()
        base = self._absolute(folder)
        if not _ftp_is_folder(conn, base):
            raise FileNotFoundError(f"no folder {base!r} on FTP connection {self.conn_id!r}")
        use_mlsd = self._supports_mlsd(conn)

        def entries(path: str) -> list[_Entry]:
            if use_mlsd:
                return [entry for line in _listing(conn, f"MLSD {path}") if (entry := _mlsd_entry(line))]
            return [_Entry(name, "") for name in _nlst(conn, path)]

        def probe(path: str) -> _Entry | None:
            """What NLST does not say: SIZE answers for files only, CWD for folders only."""
            name = posixpath.basename(path)
            if not _encodable(path, conn.encoding):  # ftplib could not send SIZE for it
                raise ConfigurationError(
                    f"FTP connection {self.conn_id!r}: the file name is not valid {conn.encoding}, so FTP "
                    "cannot ask for it: rename the file",
                    file=_shown_name(path, conn.encoding),
                )
            try:
                size = conn.size(path)
                modified = conn.sendcmd(f"MDTM {path}")
            except ftplib.error_perm:  # a folder, or a file gone since the listing
                return _Entry(name, "dir") if _ftp_is_folder(conn, path) else None
            try:
                return _Entry(name, "file", int(size or 0), _ftp_time(modified[4:]))
            except ValueError:
                raise ConfigurationError(
                    f"FTP connection {self.conn_id!r}: the server's size {size!r} or time {modified!r} of "
                    f"{ascii(path)} is not one",
                    key_path="source.path",
                ) from None

        try:
            return _walk(base, pattern, recursive=recursive, exclude=exclude, entries=entries, resolve=probe)
        except BaseException:
            self.close()  # a listing cut short leaves replies unread: start the next call afresh
            raise

    def open(self, path: str) -> io.BufferedReader:
        """A binary stream of one ``RETR`` on a connection of its own, finished properly when closed."""
        hook = self._new_hook()
        try:
            conn = self._connect(hook)
            if not _encodable(path, conn.encoding):
                raise ConfigurationError(
                    f"the file name is not valid {conn.encoding}, so FTP cannot ask for it: rename the file",
                    file=_shown_name(path, conn.encoding),
                )
            data = conn.transfercmd(f"RETR {path}")
        except ftplib.error_perm as exc:
            _quit(hook)
            raise _not_found(exc, path) from None
        except BaseException:
            _quit(hook)
            raise
        return io.BufferedReader(_FtpStream(hook, conn, data), buffer_size=_FTP_BUFFER)

    def move(self, path: str, folder: str) -> str:
        """Move a file into ``folder`` (created if missing), never over an existing file; return its new path."""
        conn = self._conn()
        folder = self._absolute(folder)
        _makedirs(folder, is_folder=lambda p: _ftp_is_folder(conn, p), mkdir=conn.mkd)
        taken = set(_nlst(conn, folder))  # a listing: SIZE's 550 may also mean "a folder" or "ASCII mode"
        target = _free_name(folder, posixpath.basename(path), exists=lambda p: posixpath.basename(p) in taken)
        try:
            conn.rename(path, target)  # RNFR/RNTO: many servers overwrite, hence the free name
        except ftplib.error_perm as exc:
            raise _not_found(exc, path) from None
        return target

    def delete(self, path: str) -> None:
        try:
            self._conn().delete(path)
        except ftplib.error_perm as exc:
            raise _not_found(exc, path) from None

    def makedirs(self, folder: str) -> str:
        """Create ``folder`` ('' = login folder) and its missing parents; return its absolute path."""
        conn = self._conn()
        folder = self._absolute(folder)
        _makedirs(folder, is_folder=lambda p: _ftp_is_folder(conn, p), mkdir=conn.mkd)
        return folder

    def upload(self, source: BinaryIO, path: str) -> int:
        """``STOR`` ``source`` to ``path`` in binary mode (created, or replaced); return the bytes sent.

        The server's final reply is checked: a 4xx/5xx after the data (disk full, quota) raises.
        """
        conn = self._conn()
        if not _encodable(path, conn.encoding):
            raise ConfigurationError(f"the file name is not valid {conn.encoding}: FTP cannot send it", file=path)
        sent = 0

        def count(block: bytes) -> None:
            nonlocal sent
            sent += len(block)

        try:
            conn.storbinary(f"STOR {path}", source, blocksize=_FTP_BUFFER, callback=count)
        except ftplib.error_perm:
            raise  # the server's refusal was read: the connection is still in step
        except BaseException:
            self.close()  # a transfer cut short leaves replies unread: start the next call afresh
            raise
        return sent

    def file_size(self, path: str) -> int | None:
        """The size of the file at ``path`` (``SIZE``, binary mode), or None when the server has no such file."""
        try:
            size = self._conn().size(path)
        except ftplib.error_perm as exc:
            if str(exc).startswith("550"):
                return None
            raise
        return None if size is None else int(size)

    def rename(self, path: str, target: str) -> None:
        """Rename ``path`` to ``target``, **replacing** ``target`` if it exists (``move`` never does).

        ``RNFR``/``RNTO`` replaces the target on most servers (vsftpd, ProFTPD, pyftpdlib: a POSIX
        rename, atomic). A server that refuses because the target exists gets the old target removed,
        then the rename again: for that moment no file has the name.
        """
        conn = self._conn()
        try:
            conn.rename(path, target)
            return
        except ftplib.error_perm as exc:
            if self.file_size(target) is None:
                raise _not_found(exc, path) from None
            log.info("FTP connection %r: RNTO %r refused (%s); removing it, then renaming", self.conn_id, target, exc)
        self.delete(target)
        conn.rename(path, target)

    def close(self) -> None:
        """Log out of the listing connection (open files close their own)."""
        hook, self._hook = self._hook, None
        if hook is not None:
            _quit(hook)

    def __enter__(self) -> FtpFileSystem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _absolute(self, path: str) -> str:
        return posixpath.normpath(posixpath.join(self._home, path))

    def _conn(self) -> ftplib.FTP:
        """The listing connection; a NOOP first, as servers drop idle ones (long reads happen elsewhere)."""
        if self._hook is not None and self._hook.conn is not None:
            try:
                self._hook.conn.voidcmd("NOOP")
                return self._hook.conn
            except (OSError, EOFError, ftplib.Error):
                self.close()
        self._hook = self._new_hook()
        self._mlsd = None
        try:
            conn = self._connect(self._hook)
        except BaseException:
            self.close()
            raise
        self._home = conn.pwd()
        return conn

    def _new_hook(self) -> FTPHook:
        from airflow.providers.ftp.hooks.ftp import FTPHook, FTPSHook

        return FTPSHook(ftp_conn_id=self.conn_id) if self.tls else FTPHook(ftp_conn_id=self.conn_id)

    def _connect(self, hook: FTPHook) -> ftplib.FTP:
        try:
            conn = hook.get_conn()
        except BaseException:
            hook.conn = None  # FTPHook keeps a half-made connection that its next get_conn would return
            raise
        if conn.sock is None:
            raise ConfigurationError(f"FTP connection {self.conn_id!r} has no host")
        conn.timeout = FTP_TIMEOUT  # data connections take it from here
        conn.sock.settimeout(FTP_TIMEOUT)
        if self.tls:
            conn.prot_p()  # type: ignore[attr-defined]  # older FTPSHooks left file data in clear text
        conn.voidcmd("TYPE I")
        return conn

    def _supports_mlsd(self, conn: ftplib.FTP) -> bool:
        if self._mlsd is None:
            try:
                features = conn.sendcmd("FEAT").splitlines()[1:]
            except ftplib.Error:
                features = []
            self._mlsd = any(line.strip().upper().startswith("MLST") for line in features)
        return self._mlsd


class _SftpStream(io.RawIOBase):
    """An SFTP file read in windows of :data:`_SFTP_WINDOW` pipelined requests: fast, bounded memory.

    :param size: the size at open; a file that grew since is read on, unpipelined, to its end.
    """

    def __init__(self, file: SFTPFile, size: int) -> None:
        super().__init__()
        self._file = file
        self._size = size
        self._offset = 0  # next byte to request
        self._blocks: Iterator[bytes] = iter(())
        self._pending = memoryview(b"")
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._pending and not self._eof:
            block = self._next_block()
            self._eof = not block
            self._pending = memoryview(block)
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

    def _next_block(self) -> bytes:
        block = next(self._blocks, None)
        if block is not None:
            return block
        if self._offset < self._size:
            end = min(self._size, self._offset + _SFTP_BLOCK * _SFTP_WINDOW)
            chunks = [(start, min(_SFTP_BLOCK, end - start)) for start in range(self._offset, end, _SFTP_BLOCK)]
            self._offset = end
            self._blocks = iter(self._file.readv(chunks))
            return next(self._blocks, b"")
        self._file.seek(self._offset)
        block = self._file.read(_SFTP_BLOCK)
        self._offset += len(block)
        return block

    def close(self) -> None:
        if not self.closed:
            try:
                self._file.close()  # waits for the current window's replies at most
            finally:
                super().close()


class _FtpStream(io.RawIOBase):
    """The data connection of one ``RETR``; its own control connection is logged out on close."""

    def __init__(self, hook: FTPHook, conn: ftplib.FTP, data: socket.socket) -> None:
        super().__init__()
        self._hook = hook
        self._conn = conn
        self._data: socket.socket | None = data

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._data is None:
            return 0
        count = self._data.recv_into(buffer)
        if count == 0:
            self._finish()
        return count

    def _finish(self) -> None:
        """All data arrived: shut TLS down, close, and check the 226 (a 4xx/5xx means the file is cut short)."""
        data, self._data = self._data, None
        assert data is not None
        _shut(data)
        self._conn.voidresp()

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self._data is not None:  # stopped early: abort by closing the data connection
                self._data.close()
                self._data = None
                try:
                    self._conn.getresp()  # 426 (aborted) or 226 (all was sent already)
                except Exception as exc:  # noqa: BLE001 - the connection is logged out next anyway
                    log.debug("FTP reply after an early close: %s", exc)
        finally:
            _quit(self._hook)
            super().close()


@dataclass(frozen=True)
class _Entry:
    """One name in a folder listing; ``kind`` is file, dir, link, or '' when the listing did not say."""

    name: str
    kind: str
    size: int = 0
    mtime: float = 0.0


def _walk(
    base: str,
    pattern: str,
    *,
    recursive: bool,
    exclude: Iterable[str],
    entries: Callable[[str], Iterable[_Entry]],
    resolve: Callable[[str], _Entry | None],
) -> list[FileInfo]:
    """Files under ``base`` matching ``pattern``: one listing per folder, ``resolve`` for links and unknowns."""
    descend = recursive or "/" in pattern  # as for local folders: a pattern with '/' names subfolders itself
    skipped = {posixpath.normpath(posixpath.join(base, folder)) for folder in exclude}
    found: list[FileInfo] = []
    pending = [""]
    while pending:
        folder = pending.pop()
        for entry in entries(posixpath.join(base, folder) if folder else base):
            if entry.name in ("", ".", "..") or "/" in entry.name or "\0" in entry.name:
                continue  # not a name in this folder: never let the server point elsewhere
            relpath = posixpath.join(folder, entry.name)
            path = posixpath.join(base, relpath)
            as_file = matches(relpath, pattern)
            as_folder = descend and path not in skipped
            if entry.kind == "link" and as_file or entry.kind == "" and (as_file or as_folder):
                resolved = resolve(path)
                if resolved is None:
                    continue
                entry = resolved
            if entry.kind == "dir" and as_folder:
                pending.append(relpath)
            elif entry.kind == "file" and as_file and _inside(base, path):
                found.append(FileInfo(path, entry.size, entry.mtime))
    return sorted(found, key=lambda info: info.path)


def _inside(folder: str, path: str) -> bool:
    folder, path = posixpath.normpath(folder), posixpath.normpath(path)
    return path.startswith(folder.rstrip("/") + "/")


def _free_name(folder: str, name: str, *, exists: Callable[[str], bool]) -> str:
    """``folder/name``, or with a UTC timestamp before the extension when taken (then a counter)."""
    target = posixpath.join(folder, name)
    if not exists(target):
        return target
    stem, extension = posixpath.splitext(name)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = posixpath.join(folder, f"{stem}.{stamp}{extension}")
    counter = 1
    while exists(target):
        counter += 1
        target = posixpath.join(folder, f"{stem}.{stamp}-{counter}{extension}")
    return target


def _makedirs(folder: str, *, is_folder: Callable[[str], bool], mkdir: Callable[[str], Any]) -> None:
    if is_folder(folder):
        return
    current = "/" if folder.startswith("/") else ""
    for part in folder.strip("/").split("/"):
        current = posixpath.join(current, part)
        if not is_folder(current):
            try:
                mkdir(current)
            except Exception:
                if not is_folder(current):  # made by someone else meanwhile is fine
                    raise


_KNOWN_HOSTS = "~/.ssh/known_hosts"


def _known_host(host: str, port: int | None) -> bool:
    """Whether ``~/.ssh/known_hosts`` (what the hook loads) has a key for the host, named as paramiko does."""
    import paramiko

    path = os.path.expanduser(_KNOWN_HOSTS)
    if not os.path.isfile(path):
        return False
    name = host if port in (None, 22) else f"[{host}]:{port}"
    try:
        return paramiko.HostKeys(path).lookup(name) is not None
    except (OSError, paramiko.SSHException):
        return False


def _fingerprint(key: Any) -> str:
    fingerprint = getattr(key, "fingerprint", None)  # "SHA256:..." since paramiko 3.2
    return f"{key.get_name()} {fingerprint or key.get_base64()[:24] + '...'}"


def _sftp_is_folder(sftp: SFTPClient, path: str) -> bool:
    try:
        return stat.S_ISDIR(sftp.stat(path).st_mode or 0)
    except FileNotFoundError:
        return False


def _sftp_exists(sftp: SFTPClient, path: str) -> bool:
    try:
        sftp.lstat(path)
    except FileNotFoundError:
        return False
    return True


def _ftp_is_folder(conn: ftplib.FTP, path: str) -> bool:
    try:
        conn.cwd(path)
    except ftplib.error_perm:
        return False
    return True


def _listing(conn: ftplib.FTP, command: str) -> list[str]:
    """The lines of an NLST or MLSD listing, read in binary mode (TYPE I).

    Not ftplib's ``nlst``/``mlsd``: they switch the session to ASCII, where servers refuse SIZE,
    and over TLS raise when an empty listing's data connection closes mid-shutdown, leaving the
    226 reply unread and the control connection out of step.
    """
    lines = []
    with conn.transfercmd(command) as data, data.makefile("rb") as stream:
        while line := stream.readline(_MAX_LINE + 1):
            if len(line) > _MAX_LINE:
                raise ftplib.error_proto(f"{command}: a line longer than {_MAX_LINE} bytes")
            # a name that is not valid in the session's encoding keeps its bytes (as lone surrogates)
            lines.append(line.rstrip(b"\r\n").decode(conn.encoding, "surrogateescape"))
        _shut(data)
    conn.voidresp()
    return lines


def _shut(data: socket.socket) -> None:
    """Close a data connection; TLS shut down if the server still takes part (its reply says if all came)."""
    try:
        if isinstance(data, ssl.SSLSocket):
            data.unwrap()
    except OSError:
        pass
    finally:
        data.close()


def _nlst(conn: ftplib.FTP, folder: str) -> list[str]:
    """Names in a folder; some servers answer 450 or 550 for an empty one rather than an empty list."""
    try:
        lines = _listing(conn, f"NLST {folder}")
    except (ftplib.error_perm, ftplib.error_temp) as exc:
        if str(exc)[:3] in ("450", "550"):
            return []
        raise
    return [posixpath.basename(line.rstrip("/")) for line in lines]


def _mlsd_entry(line: str) -> _Entry | None:
    """A file or folder of an MLSD line; links (``OS.unix=slink:...``) are skipped: FTP hides where they lead."""
    text, _, name = line.partition(" ")
    facts = {key.lower(): value for key, _, value in (fact.partition("=") for fact in text.split(";") if fact)}
    kind = facts.get("type", "").lower()
    if kind == "dir":
        return _Entry(name, "dir")
    if kind != "file":
        return None
    if "size" in facts and "modify" in facts:
        try:
            return _Entry(name, "file", int(facts["size"]), _ftp_time(facts["modify"]))
        except ValueError:
            pass  # facts that are not a size and a time: ask SIZE and MDTM, as when they are missing
    return _Entry(name, "")  # the server left the facts out: SIZE and MDTM tell


def _encodable(path: str, encoding: str) -> bool:
    try:
        path.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


def _shown_name(path: str, encoding: str) -> str:
    """A name read with ``surrogateescape`` shown with its bytes as ``\\xNN``."""
    return path.encode(encoding, "surrogateescape").decode(encoding, "backslashreplace")


def _ftp_time(value: str) -> float:
    """An RFC 3659 time (``YYYYMMDDHHMMSS[.sss]``, UTC) as POSIX seconds."""
    whole, _, fraction = value.strip().partition(".")
    moment = dt.datetime.strptime(whole, "%Y%m%d%H%M%S").replace(tzinfo=dt.timezone.utc)
    return moment.timestamp() + (float(f"0.{fraction}") if fraction else 0.0)


def _not_found(exc: ftplib.error_perm, path: str) -> Exception:
    """550 is FTP's reply for a missing file (or one the user may not see): FileNotFoundError, as for SFTP."""
    return FileNotFoundError(f"{path!r}: {exc}") if str(exc).startswith("550") else exc


def _quit(hook: FTPHook) -> None:
    """Log out politely, or just close when the connection is already broken."""
    conn, hook.conn = hook.conn, None
    if conn is None:
        return
    try:
        conn.quit()
    except Exception:  # noqa: BLE001 - closing anyway
        conn.close()


def _connection(conn_id: str) -> Any:
    from airflow.sdk import BaseHook

    try:
        return BaseHook.get_connection(conn_id)
    except Exception as exc:
        if type(exc).__name__ != "AirflowNotFoundException":
            raise
        raise ConfigurationError(f"connection {conn_id!r} is not defined", key_path="source.conn_id") from None


def _is_true(value: Any) -> bool:
    """A boolean extra the way the SSH hook reads it: true or "true" in any case."""
    return str(value).strip().lower() == "true"
