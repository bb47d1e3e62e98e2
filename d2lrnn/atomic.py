"""Atomic file writes for checkpoints (book/command-line.ipynb).

Files replaced atomically, for checkpoints that a crash cannot mix up.

Data goes to a temporary file beside its target, is synced to disk, and
only then takes the target's name (``os.replace``); the directory is synced
after, so the rename itself survives a crash. At every moment the name
holds the old bytes or the new ones, never a mixture.
"""
import os
import tempfile

# Temporary files start so: whoever cleans a directory can tell them apart.
TEMP_PREFIX = '.d2lrnn-tmp-'


def write(directory, name, data):
    """Put the bytes `data` at directory/name, atomically."""
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=directory)
    try:
        # mkstemp makes 0600; give the usual file mode.
        os.chmod(tmp, 0o666 & ~umask())
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            # The bytes are on disk before the name points at them.
            os.fsync(f.fileno())
        os.replace(tmp, directory / name)
    except BaseException:
        unlink_quietly(tmp)
        raise
    fsync_directory(directory)  # and the rename itself is on disk


def umask():
    """The process's umask (reading it means setting it: set back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_directory(directory):
    """Put a directory's entries (a rename, say) on disk."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink_quietly(path):
    """Remove `path` if it is there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
