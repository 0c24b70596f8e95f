"""Safe, lazy access to NumPy ``.npz`` archives.

``numpy.load`` would either refuse object arrays or, with ``allow_pickle=True``,
run whatever code a file from elsewhere carries. It also trusts the shape in each
``.npy`` header. This module reads the zip directory and every ``.npy`` header
first, checks that the declared sizes agree with the archive before anything is
allocated, and then hands out small arrays whole and large ones as raw byte
offsets (stored members, for positioned reads) or streams (deflated members).
Nothing here ever unpickles, except the tightly restricted unpickler for
PtychoPINN's ``_metadata`` string.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import pickle
import struct
import tokenize
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np
import numpy.lib.format as npy_format

from ..facts.errors import InvalidInputError, OutputError
from ..safeio.atomic import make_fresh
from ..safeio.blocks import CORRUPT_ERRORS, crc32, pread_into, read_into
from ..safeio.untrusted import check_regular_file

logger = logging.getLogger(__name__)

#: Largest ``.npy`` header we parse (numpy's own default limit).
MAX_HEADER_BYTES = 10_000
#: Largest pickled ``_metadata`` member we are willing to look at.
MAX_METADATA_BYTES = 1 << 20
_LOCAL_HEADER = struct.Struct('<4sHHHHHIIIHH')
#: Deflate cannot expand data more than about 1032:1; a member claiming more lies.
MAX_DEFLATE_RATIO = 1100
#: More members than any PtychoPINN dataset has; guards against zip-bomb fan-out.
MAX_MEMBERS = 4096


def available_memory_bytes() -> int | None:
    """MemAvailable from the kernel, or None where it cannot be known."""
    try:
        with open('/proc/meminfo', encoding='ascii') as meminfo:
            for line in meminfo:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
    except (AttributeError, ValueError, OSError):
        return None


@dataclass(frozen=True)
class MemberInfo:
    """What one ``.npy`` member declares, checked against the zip directory."""

    key: str
    member: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    fortran_order: bool
    compressed: bool
    header_bytes: int
    member_bytes: int
    crc: int = 0

    @property
    def nbytes(self) -> int:
        # exact Python integers: a hostile shape must not wrap around to a small size
        return math.prod(self.shape) * self.dtype.itemsize

    @property
    def is_object(self) -> bool:
        return bool(self.dtype.hasobject)


class _MetadataUnpickler(pickle.Unpickler):
    """Rebuilds only a numpy object array; any other global is refused."""

    _ALLOWED = {
        ('numpy._core.multiarray', '_reconstruct'),
        ('numpy.core.multiarray', '_reconstruct'),
        ('numpy', 'ndarray'),
        ('numpy', 'dtype'),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f'refusing to load {module}.{name}')


#: Leading bytes of files that are mistaken for an NPZ, and what to do instead.
_LOOKALIKES = (
    (b'\x89HDF\r\n\x1a\n', 'looks like an HDF5 file, not an NPZ: for a product HDF5 use --input-product'),
    (b'BZh', 'is bzip2-compressed: decompress it first (bunzip2 -k FILE), then convert the .npz'),
    (b'\x1f\x8b', 'is gzip-compressed: decompress it first (gunzip -k FILE), then convert the .npz'),
    (b'\x93NUMPY', 'is a single NumPy array (.npy), not an NPZ archive of named arrays'),
)


def _not_zip_problem(path: Path, exc: BaseException) -> str:
    """Why a file is not a zip archive, from its first bytes (one line, with what to do)."""
    try:
        with open(path, 'rb') as handle:
            head = handle.read(8)
    except OSError:
        head = b''
    for magic, problem in _LOOKALIKES:
        if head.startswith(magic):
            return problem.replace('FILE', path.name)
    return f'not a readable NPZ (zip) archive, or truncated: {exc}'


class NpzArchive:
    """An open ``.npz`` file whose members have all been validated."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._offsets: dict[str, int] = {}
        check_regular_file(self.path, 'an NPZ file')
        try:
            self._zip = zipfile.ZipFile(self.path, 'r')
        except PermissionError as exc:
            raise InvalidInputError(self.path, 'permission denied') from exc
        except OSError as exc:
            raise InvalidInputError(self.path, f'cannot open: {exc.strerror or exc}') from exc
        except (*CORRUPT_ERRORS, zipfile.LargeZipFile) as exc:
            raise InvalidInputError(self.path, _not_zip_problem(self.path, exc)) from exc
        try:
            self.members = self._scan()
        except BaseException:
            self._zip.close()
            raise

    # -- context manager -------------------------------------------------
    def __enter__(self) -> NpzArchive:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()

    # -- directory ---------------------------------------------------------
    def _fail(self, problem: str) -> InvalidInputError:
        return InvalidInputError(self.path, problem)

    def _scan(self) -> dict[str, MemberInfo]:
        archive_bytes = self.path.stat().st_size
        members: dict[str, MemberInfo] = {}
        infolist = self._zip.infolist()
        if len(infolist) > MAX_MEMBERS:
            raise self._fail(f'has {len(infolist)} members; refusing more than {MAX_MEMBERS}')
        for zinfo in infolist:
            if zinfo.is_dir() or not zinfo.filename.endswith('.npy'):
                logger.debug('%s: ignoring non-array member %r', self.path, zinfo.filename)
                continue
            if zinfo.flag_bits & 0x1:
                raise self._fail(f'member {zinfo.filename!r} is encrypted')
            if zinfo.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise self._fail(
                    f'member {zinfo.filename!r} uses unsupported compression {zinfo.compress_type}'
                )
            if zinfo.header_offset + zinfo.compress_size > archive_bytes:
                raise self._fail(
                    f'member {zinfo.filename!r} declares {zinfo.compress_size} bytes '
                    'beyond the end of the file (truncated?)'
                )
            if zinfo.compress_type == zipfile.ZIP_STORED and zinfo.compress_size != zinfo.file_size:
                raise self._fail(f'member {zinfo.filename!r} has inconsistent stored sizes')
            if zinfo.file_size > MAX_DEFLATE_RATIO * max(zinfo.compress_size, 1) + 1024:
                raise self._fail(
                    f'member {zinfo.filename!r} claims to inflate {zinfo.compress_size} bytes to '
                    f'{zinfo.file_size} (impossible for deflate; a zip bomb or a corrupt directory)'
                )
            key = zinfo.filename[: -len('.npy')]
            members[key] = self._read_header(zinfo, key)
        if not members:
            raise self._fail('holds no NumPy arrays (not an NPZ dataset)')
        return members

    def _read_header(self, zinfo: zipfile.ZipInfo, key: str) -> MemberInfo:
        try:
            with self._zip.open(zinfo) as stream:
                version = npy_format.read_magic(stream)
                if version == (1, 0):
                    shape, fortran, dtype = npy_format.read_array_header_1_0(
                        stream, max_header_size=MAX_HEADER_BYTES
                    )
                elif version in ((2, 0), (3, 0)):
                    shape, fortran, dtype = npy_format.read_array_header_2_0(
                        stream, max_header_size=MAX_HEADER_BYTES
                    )
                else:
                    raise ValueError(f'unsupported .npy version {version}')
                header_bytes = stream.tell()
        except (*CORRUPT_ERRORS, SyntaxError, tokenize.TokenError, TypeError) as exc:
            raise self._fail(f'member {zinfo.filename!r} is not a valid .npy array: {exc}') from exc
        info = MemberInfo(
            key=key,
            member=zinfo.filename,
            shape=tuple(int(n) for n in shape),
            dtype=dtype,
            fortran_order=bool(fortran),
            compressed=zinfo.compress_type != zipfile.ZIP_STORED,
            header_bytes=header_bytes,
            member_bytes=zinfo.file_size,
            crc=zinfo.CRC,
        )
        if any(n < 0 for n in info.shape):
            raise self._fail(f'array {key!r} declares a negative dimension {info.shape}')
        if not info.is_object and header_bytes + info.nbytes != zinfo.file_size:
            raise self._fail(
                f'array {key!r} declares shape {info.shape} of {dtype} ({info.nbytes} bytes) '
                f'but its member holds {zinfo.file_size - header_bytes} bytes (corrupt or truncated)'
            )
        return info

    def __contains__(self, key: object) -> bool:
        return key in self.members

    def keys(self) -> list[str]:
        return list(self.members)

    def info(self, key: str) -> MemberInfo:
        try:
            return self.members[key]
        except KeyError:
            raise self._fail(f'has no array {key!r}') from None

    # -- data access ---------------------------------------------------------
    def _plain_info(self, key: str) -> MemberInfo:
        info = self.info(key)
        if info.is_object:
            raise self._fail(
                f'array {key!r} holds pickled Python objects; refusing to unpickle it'
            )
        return info

    def open_data(self, key: str) -> IO[bytes]:
        """A stream positioned at the first byte of the array's data."""
        return self._data_stream(self._plain_info(key))

    def _data_stream(self, info: MemberInfo) -> IO[bytes]:
        stream = self._zip.open(info.member)
        stream.read(info.header_bytes)
        return stream

    def read(self, key: str) -> np.ndarray:
        """Load a whole (non-object) array, after checking it fits in memory."""
        info = self._plain_info(key)
        available = available_memory_bytes()
        if available is not None and info.nbytes > available:
            raise self._fail(
                f'array {key!r} needs {info.nbytes / 2**30:.1f} GiB but only '
                f'{available / 2**30:.1f} GiB of memory is available'
            )
        out = np.empty(info.shape[::-1] if info.fortran_order else info.shape, dtype=info.dtype)
        try:
            with self._data_stream(info) as stream:
                read_into(stream, out)
        except CORRUPT_ERRORS as exc:
            raise self._fail(f'array {key!r} cannot be read (corrupt archive?): {exc}') from exc
        return out.T if info.fortran_order else out

    def data_offset(self, key: str) -> int | None:
        """Byte offset of a stored member's array data in the archive, else None."""
        info = self._plain_info(key)
        if info.compressed:
            return None
        if key not in self._offsets:
            zinfo = self._zip.getinfo(info.member)
            with open(self.path, 'rb') as raw:
                raw.seek(zinfo.header_offset)
                fields = _LOCAL_HEADER.unpack(raw.read(_LOCAL_HEADER.size))
            if fields[0] != b'PK\x03\x04':
                raise self._fail(f'member {info.member!r} has a corrupt local header')
            offset = zinfo.header_offset + _LOCAL_HEADER.size + fields[9] + fields[10] + info.header_bytes
            if offset + info.nbytes > self.path.stat().st_size:
                raise self._fail(f'array {key!r} extends beyond the end of the file (truncated?)')
            self._offsets[key] = offset
        return self._offsets[key]

    def header_crc(self, key: str) -> int:
        """CRC-32 of a stored member's ``.npy`` header, to continue over its data."""
        info = self._plain_info(key)
        offset = self.data_offset(key)
        if offset is None:
            raise self._fail(f'array {key!r} is compressed; its CRC is checked while inflating')
        with open(self.path, 'rb') as raw:
            raw.seek(offset - info.header_bytes)
            return zlib.crc32(raw.read(info.header_bytes))

    def verify_crc(self, key: str) -> None:
        """Check a member's CRC-32 in one sequential pass.

        A stored member is read in 8 MB positioned reads with zlib-ng's CRC
        (zipfile's own check, with zlib's, took 0.45 s of a 0.5 GB HWN conversion);
        a deflated one is read through zipfile, which checks it while inflating.
        """
        info = self.info(key)
        offset = None if info.compressed else self.data_offset(key)
        if offset is not None:
            crc = self.header_crc(key)
            buffer = memoryview(bytearray(8 << 20))
            try:
                with open(self.path, 'rb') as raw:
                    for done in range(0, info.nbytes, len(buffer)):
                        part = buffer[: min(len(buffer), info.nbytes - done)]
                        pread_into(raw.fileno(), offset + done, part)
                        crc = crc32(part, crc)
            except CORRUPT_ERRORS as exc:
                raise self._fail(f'array {key!r} is corrupt: {exc}') from exc
            if crc != info.crc:
                raise self._fail(f'array {key!r} fails its CRC-32 check (corrupt data)')
            return
        try:
            with self._zip.open(info.member) as stream:
                while stream.read(8 << 20):
                    pass
        except CORRUPT_ERRORS as exc:
            raise self._fail(f'array {key!r} is corrupt: {exc}') from exc

    def read_metadata(self, key: str = '_metadata') -> dict[str, Any] | None:
        """PtychoPINN's pickled JSON metadata, read without running any code.

        Only a plain string, or a numpy object array holding one ``str``, is
        accepted; anything else is skipped with a warning, never executed.
        """
        if key not in self.members:
            return None
        info = self.members[key]
        if info.dtype.kind == 'U' and info.shape == ():
            text: object = str(self.read(key)[()])
        elif info.is_object and info.member_bytes <= MAX_METADATA_BYTES:
            text = self._unpickle_string(info)
        else:
            text = None
        parsed = _json_object(text)
        if parsed is None:
            logger.warning('%s: skipping %r (not a plain JSON object string)', self.path, key)
        return parsed

    def _unpickle_string(self, info: MemberInfo) -> str | None:
        """The one string a restricted unpickler rebuilds from an object array, else None."""
        try:
            with self._zip.open(info.member) as stream:
                stream.read(info.header_bytes)
                payload = stream.read(MAX_METADATA_BYTES + 1)
        except CORRUPT_ERRORS as exc:
            raise self._fail(f'array {info.key!r} cannot be read (corrupt archive?): {exc}') from exc
        try:
            value = _MetadataUnpickler(io.BytesIO(payload)).load()
        except Exception as exc:  # noqa: BLE001 - hostile bytes: any failure of the unpickler means "skip"
            logger.debug('%s: %r does not unpickle: %s', self.path, info.key, exc)
            return None
        if isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
            text = value.reshape(()).item()
            return text if isinstance(text, str) else None
        return None


def _json_object(text: object) -> dict[str, Any] | None:
    if not isinstance(text, str):
        return None
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


@dataclass(frozen=True)
class StreamedArray:
    """An array written block by block: its full shape/dtype and (start, block) pairs."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    blocks: Iterator[tuple[int, np.ndarray]]


def write_npz(
    path: str | os.PathLike[str],
    arrays: dict[str, np.ndarray | StreamedArray],
    *,
    compress: bool = False,
) -> None:
    """Write an ``.npz`` that ``numpy.load`` reads without pickle.

    Members are stored uncompressed by default, like ``numpy.savez``, so that
    large stacks can be memory-mapped on the way back in. Streamed arrays are
    written block by block and never exist whole in memory; their header is
    written first, so a stream that does not fill it exactly (rows, pattern
    shape, dtype kind) raises :class:`OutputError` and the partly written file
    at ``path`` is removed: no caller can publish a header that lies.

    Parameters
    ----------
    path: the file to write (normally the temporary file of ``atomic_output``); replaced
        (see :func:`make_fresh`).
    arrays: member name (without ``.npy``) -> array, or a :class:`StreamedArray`.
    compress: deflate every member (default: stored, memory-mappable).
    """
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    try:
        with zipfile.ZipFile(make_fresh(path), 'x', compression=method, allowZip64=True) as archive:
            for key, value in arrays.items():
                with archive.open(f'{key}.npy', 'w', force_zip64=True) as member:
                    if isinstance(value, StreamedArray):
                        _write_streamed(member, value, path, key)
                    else:
                        array = np.asarray(value)
                        one_string = _is_one_string(array)
                        if array.dtype.hasobject and not one_string:
                            raise ValueError(f'refusing to write object array {key!r}')
                        npy_format.write_array(member, array, allow_pickle=one_string)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise


def metadata_array(text: str) -> np.ndarray:
    """``_metadata`` as PtychoPINN writes it (``ptycho/metadata.py``): a 0-d object array of one str.

    That pickles the string, so ``numpy.load(..., allow_pickle=True)`` in
    PtychoPINN's tools reads it; our own reader stays restricted
    (:meth:`NpzArchive.read_metadata` rebuilds only one ``str``).
    """
    array = np.empty((), dtype=object)
    array[()] = str(text)
    return array


def _is_one_string(array: np.ndarray) -> bool:
    """The only object array we write: one plain ``str`` (never anything that unpickles to code)."""
    return array.dtype == object and array.size == 1 and type(array.reshape(-1)[0]) is str


def _write_streamed(member: IO[bytes], value: StreamedArray, path: str | os.PathLike[str], key: str) -> None:
    """Header from the declared shape, then blocks that must fill it exactly."""
    shape = tuple(int(n) for n in value.shape)
    dtype = np.dtype(value.dtype)
    header = {'descr': npy_format.dtype_to_descr(dtype), 'fortran_order': False, 'shape': shape}
    npy_format.write_array_header_2_0(member, header)
    total = shape[0] if shape else 1
    written = 0
    for start, raw in value.blocks:
        block = np.asarray(raw)
        if start != written:
            raise OutputError(path, f'{key}: streamed block at row {start} out of order (expected {written})')
        if block.ndim != len(shape) or block.shape[1:] != shape[1:]:
            raise OutputError(
                path, f'{key}: block of shape {block.shape} does not fit the declared shape {shape}'
            )
        if not np.can_cast(block.dtype, dtype, casting='same_kind'):
            raise OutputError(path, f'{key}: block of dtype {block.dtype} does not fit the declared {dtype}')
        if written + block.shape[0] > total:
            raise OutputError(path, f'{key}: blocks run past the declared {total} rows')
        member.write(np.ascontiguousarray(block, dtype=dtype).tobytes())
        written += block.shape[0]
    if written != total:
        raise OutputError(path, f'{key}: streamed array ended after {written} of {total} rows')
